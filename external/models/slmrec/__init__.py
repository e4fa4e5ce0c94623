from external.models.slmrec.slmrec import SLMRec

__all__ = ["SLMRec"]
