"""The admin pages of the catalog; Django's admin autodiscovery imports this package."""

from .options import ObjectRecordAdmin

__all__ = ["ObjectRecordAdmin"]
