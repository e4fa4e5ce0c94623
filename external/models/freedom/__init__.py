from external.models.freedom.freedom import FREEDOM
from external.models.freedom.knn import knn_graph

__all__ = ["FREEDOM", "knn_graph"]
