from external.models.mmgcf.mmgcf import MMGCF

__all__ = ["MMGCF"]
