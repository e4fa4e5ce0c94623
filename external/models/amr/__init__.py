"""AMR (Tang et al., TKDE 2019): VBPR-style scoring with adversarial training on item features."""
from external.models.amr.amr import AMR

__all__ = ["AMR"]
