from external.models.dlrm.dlrm import DLRM

__all__ = ["DLRM"]
