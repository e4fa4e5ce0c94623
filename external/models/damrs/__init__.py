from external.models.damrs.damrs import DAMRS

__all__ = ["DAMRS"]
