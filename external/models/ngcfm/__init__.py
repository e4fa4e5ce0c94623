from external.models.ngcfm.ngcfm import NGCFM

__all__ = ["NGCFM"]
