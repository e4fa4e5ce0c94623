from external.models.dlrm.dlrm import DLRM, DLRM_CLIP

__all__ = ["DLRM", "DLRM_CLIP"]
