from external.models.pgl.pgl import PGL

__all__ = ["PGL"]
