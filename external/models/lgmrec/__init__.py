from external.models.lgmrec.lgmrec import LGMRec

__all__ = ["LGMRec"]
