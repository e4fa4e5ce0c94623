from external.models.mbpr.mbpr import MBPR

__all__ = ["MBPR"]
