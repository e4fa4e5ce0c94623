"""Running one :class:`~elliot.features.config.Job`: cache check, batched encoding with a progress bar,
skip-and-report of bad items, atomic writes.

Bad items (an image that does not decode, an empty text, an output that is not finite) are skipped with
``on_error: skip`` (the default): the item gets no vector, it is listed in the report file and in the log,
and the recommender's ``data_config.missing_features`` policy (drop / mean / zeros) applies to it when the
features are loaded.  ``on_error: fail`` stops at the first one instead.
"""
from __future__ import annotations

import datetime
import time
from dataclasses import dataclass, field
from typing import Callable, List, Optional, Tuple

import numpy as np

from elliot.errors import DataError
from elliot.features import store
from elliot.features.config import Job
from elliot.features.inputs import image_error, list_images, read_texts


@dataclass
class Result:
    modality: str
    encoder: str
    features: str                   # the side_information 'features' path
    item_mapping: Optional[str]     # its 'item_mapping' (matrix layout), None for a folder
    report: str
    shape: Tuple[int, int]
    skipped: List[Tuple[str, str]] = field(default_factory=list)
    cached: bool = False
    seconds: float = 0.0

    def side_information(self) -> dict:
        entry = {"dataloader": {"visual": "VisualAttribute", "textual": "TextualAttribute"}[self.modality],
                 f"{self.modality}_features": self.features}
        if self.item_mapping:
            entry["item_mapping"] = self.item_mapping
        return entry


def _loc(job: Job) -> str:
    return job.where.rsplit(".model", 1)[0]


def _result(job: Job, manifest: dict, cached: bool, seconds: float) -> Result:
    p = store.paths(job.output, job.layout)
    return Result(job.modality, manifest["encoder"], str(job.output),
                  str(p["mapping"]) if job.layout == "matrix" else None, str(p["report"]),
                  tuple(manifest["shape"]), [tuple(s) for s in manifest.get("skipped", [])], cached, seconds)


def run_job(job: Job, *, force: bool = False, quiet: bool = False, log: Callable[[str], None] = print) -> Result:
    t0 = time.perf_counter()
    enc, loc = job.encoder, _loc(job)
    for note in job.notes:
        log(f"note: {note}")
    if job.modality == "visual":
        items, fingerprint = list_images(job.input, loc)
        skipped, info = [], {"images": len(items)}
        text_opts = None
    else:
        items, skipped, info, fingerprint = read_texts(job.input, job.item_column, job.text_column, job.sep, loc)
        text_opts = {"item_column": job.item_column, "text_column": job.text_column, "sep": job.sep}
    old = store.read_manifest(job.output, job.layout) or {}
    memo = dict(old.get("weights_memo", {}))
    parts = {"format": store.FORMAT, "modality": job.modality, "encoder": enc.name, "params": enc.params(),
             **enc.fingerprint(memo), "input": {"path": str(job.input), "fingerprint": fingerprint},
             "text": text_opts, "layout": job.layout, "on_error": job.on_error}
    key = store.cache_key(parts)
    hit = None if force else store.cache_hit(job.output, job.layout, key)
    if hit:
        res = _result(job, hit, True, time.perf_counter() - t0)
        log(f"{job.modality}: cache hit, nothing changed since {hit['created']} ({enc.name}, same weights, "
            f"preprocessing and inputs): {job.output} {res.shape[0]} x {res.shape[1]}, {len(res.skipped)} skipped; "
            "model not loaded")
        return res
    if job.on_error == "fail" and skipped:
        raise DataError(f"{loc}: item {skipped[0][0]}: {skipped[0][1]} (on_error: fail; {len(skipped)} in all)")
    if info.get("duplicate_ids"):
        log(f"{job.modality}: {info['duplicate_ids']} repeated ids in {job.input.name}: the first row of each is kept")
    import torch

    previous = torch.get_num_threads()
    if job.threads:
        torch.set_num_threads(job.threads)
    try:
        t_load = time.perf_counter()
        enc.load(job.device)
        t_load = time.perf_counter() - t_load
        vectors = _encode(job, items, skipped, quiet)
    finally:
        torch.set_num_threads(previous)
    ok = [i for i, _ in items if i in vectors]
    if not ok:
        raise DataError(f"{loc}: no item could be encoded ({len(skipped)} skipped, e.g. {skipped[0][0]}: "
                        f"{skipped[0][1]})" if skipped else f"{loc}: no items in {job.input}")
    mat = np.stack([vectors[i] for i in ok]).astype(np.float32)
    order = {i: k for k, (i, _) in enumerate(items)}
    skipped = sorted(skipped, key=lambda s: order.get(s[0], -1))
    seconds = time.perf_counter() - t0
    manifest = {"key": key, "key_parts": parts, "weights_memo": memo, "encoder": enc.name,
                "modality": job.modality, "shape": list(mat.shape), "skipped": [list(s) for s in skipped],
                "created": datetime.datetime.now().isoformat(timespec="seconds"), "seconds": round(seconds, 2),
                "model_load_seconds": round(t_load, 2), "device": job.device, "batch_size": job.batch_size,
                "threads": job.threads or previous,
                "input_info": info}
    manifest = store.write_outputs(job.output, job.layout, ok, mat, skipped, manifest)
    res = _result(job, manifest, False, seconds)
    _log_skips(job, res, log)
    log(f"{job.modality}: {len(ok)} items encoded with {enc.name} in {seconds:.1f} s -> {job.output} "
        f"({mat.shape[0]} x {mat.shape[1]} float32)")
    return res


def _log_skips(job: Job, res: Result, log) -> None:
    if not res.skipped:
        return
    for item, reason in res.skipped[:5]:
        log(f"{job.modality}: skipped item {item}: {reason}")
    more = f" ({len(res.skipped) - 5} more)" if len(res.skipped) > 5 else ""
    log(f"{job.modality}: {len(res.skipped)} items skipped, no vector{more}; listed in {res.report} "
        "(data_config.missing_features decides what they get)")


def _encode(job: Job, items, skipped, quiet: bool) -> dict:
    from tqdm.auto import tqdm

    enc, vectors = job.encoder, {}
    if job.modality == "textual":  # longest first, as sentence-transformers does: less padding per batch
        items = sorted(items, key=lambda it: -len(it[1]))
    bar = tqdm(total=len(items), desc=f"{job.modality} {enc.name}", unit="item", disable=quiet, leave=False)
    try:
        for start in range(0, len(items), job.batch_size):
            batch = items[start:start + job.batch_size]
            if job.modality == "visual":
                ready = []
                for item, path in batch:
                    try:
                        ready.append((item, enc.prepare(path)))
                    except Exception as e:  # noqa: BLE001 - any decoder failure is a bad image
                        if job.on_error == "fail":
                            raise DataError(f"{_loc(job)}: {path}: {image_error(e)} (on_error: fail)") from None
                        skipped.append((item, image_error(e)))
            else:
                ready = batch
            if ready:
                out = enc.encode([x for _, x in ready])
                for (item, _), vec in zip(ready, out):
                    if np.isfinite(vec).all():
                        vectors[item] = vec
                    elif job.on_error == "fail":
                        raise DataError(f"{_loc(job)}: item {item}: the encoder's output is not finite")
                    else:
                        skipped.append((item, "encoder output not finite"))
            bar.update(len(batch))
    finally:
        bar.close()
    return vectors
