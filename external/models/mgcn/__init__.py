from external.models.mgcn.mgcn import MGCN

__all__ = ["MGCN"]
