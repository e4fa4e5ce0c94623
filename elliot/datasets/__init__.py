"""Catalogue and fetcher of the public datasets used by multimodal recommendation papers.

``python -m elliot.datasets list`` prints the catalogue; ``python -m elliot.datasets fetch NAME``
downloads, verifies, unpacks and lays out ``data/NAME/`` (see ``docs/datasets.md``).  From Python::

    from elliot.datasets import ensure_dataset
    path = ensure_dataset("tiktok", Path("data"))   # no-op when data/tiktok is already complete
"""
from elliot.datasets.fetch import MARKER, FetchResult, ensure_dataset, fetch_dataset
from elliot.datasets.registry import DatasetEntry, DatasetError, Registry, Source, load_registry

__all__ = ["MARKER", "DatasetEntry", "DatasetError", "FetchResult", "Registry", "Source", "ensure_dataset",
           "fetch_dataset", "load_registry"]
