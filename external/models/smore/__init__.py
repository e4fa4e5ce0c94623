from external.models.smore.smore import SMORE

__all__ = ["SMORE"]
