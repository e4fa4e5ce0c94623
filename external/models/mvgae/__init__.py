from external.models.mvgae.mvgae import MVGAE

__all__ = ["MVGAE"]
