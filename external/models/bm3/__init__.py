from external.models.bm3.bm3 import BM3

__all__ = ["BM3"]
