from external.models.diffmm.diffmm import DiffMM

__all__ = ["DiffMM"]
