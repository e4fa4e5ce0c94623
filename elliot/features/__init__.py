"""Item features from raw images and texts, written in the layouts ``data_config.side_information`` reads.

``python -m elliot.features --config FILE`` runs the extraction section of a YAML file (Ducho's shape; see
docs/features.md).  From Python::

    from elliot.features import extract
    results = extract("config_files/features_ml100k.yml")      # one Result per modality/model
    results[0].side_information()   # {'dataloader': 'VisualAttribute', 'visual_features': ..., 'item_mapping': ...}

A second run with nothing changed (encoder, weights, preprocessing, inputs) is a cache hit: no model is loaded.
"""
from __future__ import annotations

from pathlib import Path
from typing import Callable, List, Optional

from elliot.features.config import Job, load_jobs, parse_section
from elliot.features.extract import Result, run_job

__all__ = ["Job", "Result", "extract", "load_jobs", "parse_section", "run_job", "side_information_job"]


def extract(config, *, only: Optional[str] = None, device: Optional[str] = None, force: bool = False,
            quiet: bool = False, log: Callable[[str], None] = print) -> List[Result]:
    """Run every job of the YAML file ``config`` (validated first, all of them, before any work)."""
    jobs = load_jobs(config, only=only, device=device)
    return [run_job(job, force=force, quiet=quiet, log=log) for job in jobs]


def side_information_job(extract_spec: dict, modality: str, features_path: str, base_dir, *, where: str,
                         file: str, dataset: Optional[str] = None, device: Optional[str] = None) -> Job:
    """The job behind a side_information entry's ``extract:`` mapping (validation only, no work).

    ``extract_spec`` holds the items keys (``input_path``, ``model``, ``item_column``, ``text_column``,
    ``batch_size``, ...); its output is the entry's own features path (``features_path``, already resolved).
    ``run_job(job)`` then writes it (a no-op when cached) and ``Result.item_mapping`` is the entry's
    ``item_mapping`` (None for a folder)."""
    from elliot.errors import ConfigError

    if modality not in ("visual", "textual"):
        raise ConfigError(f"{file}: {where}: extraction covers visual and textual features, not '{modality}'")
    if not isinstance(extract_spec, dict):
        raise ConfigError(f"{file}: {where}: expected a mapping with input_path and model")
    if "output_path" in extract_spec or "output" in extract_spec:
        raise ConfigError(f"{file}: {where}.output_path: the output is the entry's features path; remove it")
    from elliot.features.config import jobs_for_block

    spec = dict(extract_spec, output_path=str(features_path))
    jobs = jobs_for_block(modality, spec, where, file, Path(base_dir), dataset, dev=device or "cpu")
    if len(jobs) != 1:
        raise ConfigError(f"{file}: {where}.model: one model per side_information entry")
    return jobs[0]
