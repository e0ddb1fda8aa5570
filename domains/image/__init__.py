from domains.image.domain import ImageDomain

__all__ = ["ImageDomain"]
