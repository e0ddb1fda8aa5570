from domains.nmt.domain import NMTDomain

__all__ = ["NMTDomain"]
