from external.models.freedom.freedom import FREEDOM

__all__ = ["FREEDOM"]
