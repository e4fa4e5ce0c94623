from external.models.dualgnn.dualgnn import DualGNN

__all__ = ["DualGNN"]
