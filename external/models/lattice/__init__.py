from external.models.lattice.lattice import LATTICE

__all__ = ["LATTICE"]
