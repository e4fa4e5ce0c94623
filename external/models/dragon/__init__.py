from external.models.dragon.dragon import DRAGON

__all__ = ["DRAGON"]
