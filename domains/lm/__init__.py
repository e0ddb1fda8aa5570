from domains.lm.domain import LMDomain

__all__ = ["LMDomain"]
