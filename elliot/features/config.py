"""The extraction section of a YAML file -> a list of :class:`Job` (one per modality and model).

Ducho's shape (``dataset_path``, ``gpu list``, ``visual|textual: items: {input_path, output_path, item_column,
text_column, model: [{model_name, output_layers, reshape, backend, batch_size}]}``) is read as written; the
section may also sit under ``features:`` (top level or in an experiment file's ``experiment:``), ``items:``
may be left out, and ``input`` / ``output`` / ``id_column`` / ``encoder`` are accepted for ``input_path`` /
``output_path`` / ``item_column`` / ``model_name``.  Paths are relative to ``dataset_path``, itself relative to
the YAML file's folder (``{0}`` is ``experiment.dataset``).  See docs/features.md.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import List, Optional

import yaml

from elliot.errors import ConfigError, unknown_name
from elliot.features.encoders import make_encoder

SECTION_KEYS = {"dataset_path", "device", "gpu_list", "gpu list", "batch_size", "threads", "on_error", "visual",
                "textual", "audio", "visual_textual", "model_map", "model map"}
ITEMS_KEYS = {"input_path", "input", "output_path", "output", "item_column", "id_column", "text_column", "sep",
              "model", "model_name", "encoder", "batch_size", "layout", "on_error"}
MODEL_COMMON = ("model_name", "name", "encoder", "batch_size", "output_path", "output", "layout", "backend",
                "preprocessing", "clear_text")
BACKENDS = ("torch", "transformers", "sentence_transformers")


@dataclass
class Job:
    modality: str
    where: str                      # YAML location of the model entry, for messages
    input: Path
    output: Path
    layout: str                     # "matrix" (one .npy + .ids.tsv) or "folder" (<id>.npy files)
    encoder: object
    batch_size: int = 32
    device: str = "cpu"
    on_error: str = "skip"          # skip (report the item, no vector) | fail
    threads: Optional[int] = None   # torch CPU threads while encoding (None: torch's default)
    item_column: Optional[str] = None
    text_column: Optional[List[str]] = None
    sep: Optional[str] = None
    notes: List[str] = field(default_factory=list)


def read_yaml(path) -> dict:
    p = Path(path)
    try:
        doc = yaml.safe_load(p.read_text(encoding="utf-8"))
    except OSError as e:
        raise ConfigError(f"--config {path}: cannot read it ({e.strerror or e})") from None
    except yaml.YAMLError as e:
        raise ConfigError(f"{path}: not valid YAML ({str(e).splitlines()[0]})") from None
    if not isinstance(doc, dict):
        raise ConfigError(f"{path}: expected a mapping at the top level")
    return doc


def find_section(doc: dict, file: str):
    """(section, where, dataset name or None): ``features:``, ``experiment.features:`` or Ducho's top level."""
    if isinstance(doc.get("features"), dict):
        return doc["features"], "features", None
    exp = doc.get("experiment")
    if isinstance(exp, dict) and isinstance(exp.get("features"), dict):
        return exp["features"], "experiment.features", exp.get("dataset")
    if any(k in doc for k in ("visual", "textual", "audio", "dataset_path")):
        return doc, "", None
    raise ConfigError(f"{file}: no extraction section: expected 'features:' (or experiment.features:, or Ducho's "
                      "top-level 'visual:' / 'textual:')")


def load_jobs(path, only: Optional[str] = None, device: Optional[str] = None) -> List[Job]:
    file = str(path)
    section, where, dataset = find_section(read_yaml(path), file)
    return parse_section(section, Path(path).resolve().parent, file, where, dataset, only=only, device=device)


def _device(section: dict, where: str, file: str) -> str:
    if "device" in section:
        dev = str(section["device"])
        if dev != "cpu" and not dev.startswith("cuda"):
            raise ConfigError(f"{file}: {where}device: '{dev}' is not cpu, cuda or cuda:N")
        return dev
    gpus = section.get("gpu_list", section.get("gpu list", -1))
    gpus = gpus if isinstance(gpus, list) else [gpus]
    if not gpus or not all(isinstance(g, int) for g in gpus):
        raise ConfigError(f"{file}: {where}gpu_list: expected -1 (cpu) or GPU ids, got {gpus!r}")
    return "cpu" if gpus[0] < 0 else f"cuda:{gpus[0]}"


def _int(value, key: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigError(f"{key}: expected a positive integer, got {value!r}")
    return value


def parse_section(section: dict, base: Path, file: str, where: str = "", dataset: Optional[str] = None,
                  only: Optional[str] = None, device: Optional[str] = None) -> List[Job]:
    pre = f"{where}." if where else ""
    if not isinstance(section, dict):
        raise ConfigError(f"{file}: {where or 'the file'} must be a mapping")
    for key in section:
        if key not in SECTION_KEYS:
            raise ConfigError(f"{file}: {unknown_name('key', key, SECTION_KEYS, where=where or 'top level')}")
    for key in ("audio", "visual_textual"):
        if key in section:
            raise ConfigError(f"{file}: {pre}{key}: not supported here (extraction covers visual and textual "
                              "item features); valid modalities: visual, textual")

    root = base
    if section.get("dataset_path") is not None:
        root = _resolver(base, dataset, file)(section["dataset_path"], f"{pre}dataset_path")
    dev = device or _device(section, pre, file)
    batch = _int(section.get("batch_size", 32), f"{file}: {pre}batch_size")
    on_error = section.get("on_error", "skip")
    threads = None if section.get("threads") is None else _int(section["threads"], f"{file}: {pre}threads")
    jobs: List[Job] = []
    for modality in ("visual", "textual"):
        if modality not in section or (only and modality != only):
            continue
        block, loc = section[modality], f"{pre}{modality}"
        if not isinstance(block, dict):
            raise ConfigError(f"{file}: {loc}: expected a mapping (items: {{input_path, output_path, model}})")
        if "interactions" in block:
            raise ConfigError(f"{file}: {loc}.interactions: interaction (review) features are not supported; "
                              "valid: items")
        if "items" in block:
            extra = sorted(set(block) - {"items"})
            if extra:
                raise ConfigError(f"{file}: {unknown_name('key', extra[0], ['items'], where=loc)}")
            block, loc = block["items"], f"{loc}.items"
        for job in jobs_for_block(modality, block, loc, file, root, dataset, dev, batch, on_error):
            job.threads = threads
            jobs.append(job)
    if not jobs:
        raise ConfigError(f"{file}: {where or 'the file'}: nothing to extract; give visual: and/or textual:"
                          + (f" (--only {only})" if only else ""))
    return jobs


def _resolver(root: Path, dataset: Optional[str], file: str):
    def resolve(value, key: str) -> Path:
        if not isinstance(value, str) or not value:
            raise ConfigError(f"{file}: {key}: expected a path string, got {value!r}")
        p = Path(value.replace("{0}", str(dataset or ""))).expanduser()
        return p if p.is_absolute() else (root / p).resolve()
    return resolve


def jobs_for_block(modality: str, block, loc: str, file: str, root: Path, dataset: Optional[str] = None,
                   dev: str = "cpu", batch: int = 32, on_error: str = "skip") -> List[Job]:
    """The jobs of one modality's items block (``input_path``, ``output_path``, ``model``, ...) at YAML
    location ``loc``; paths relative to ``root``."""
    if not isinstance(block, dict):
        raise ConfigError(f"{file}: {loc}: expected a mapping with input_path, output_path, model")
    named = next((block[k] for k in ("model", "model_name", "encoder") if k in block), None)
    options = {k: v for k, v in block.items() if k not in ITEMS_KEYS}
    if options and not isinstance(named, str):  # the short form `encoder: NAME` takes its options beside it
        key = sorted(options)[0]
        raise ConfigError(f"{file}: {unknown_name('key', key, ITEMS_KEYS, where=loc)}")
    block = {k: v for k, v in block.items() if k in ITEMS_KEYS}
    if options:
        block["model"] = dict(options, model_name=named)
    resolve = _resolver(root, dataset, file)

    def get(*names, default=None):
        for n in names:
            if n in block:
                return block[n], n
        return default, names[0]

    inp, ikey = get("input_path", "input")
    if inp is None:
        raise ConfigError(f"{file}: {loc}.input_path is required ("
                          + ("a folder of <item_id>.jpg/.png images)" if modality == "visual"
                             else "a .csv/.tsv table with an id and a text column)"))
    inp_path = resolve(inp, f"{loc}.{ikey}")
    if modality == "visual" and not inp_path.is_dir():
        raise ConfigError(f"{file}: {loc}.{ikey}: folder not found: {inp_path} (a folder of <item_id>.jpg/.png)")
    if modality == "textual" and not inp_path.is_file():
        raise ConfigError(f"{file}: {loc}.{ikey}: file not found: {inp_path} (a .csv/.tsv table)")
    models, mkey = get("model", "model_name", "encoder")
    if models is None:
        raise ConfigError(f"{file}: {loc}.model is required, e.g. model: "
                          + ("efficientnet-lite0" if modality == "visual" else "all-minilm-l6-v2"))
    models = [models] if isinstance(models, (str, dict)) else models
    if not isinstance(models, list) or not models:
        raise ConfigError(f"{file}: {loc}.{mkey}: expected an encoder name, a mapping or a list of mappings")
    out_default, okey = get("output_path", "output")
    if modality == "visual" and any(k in block for k in ("item_column", "id_column", "text_column", "sep")):
        raise ConfigError(f"{file}: {loc}: item_column/text_column/sep are for textual; visual item ids are the "
                          "image file names")
    jobs = []
    for n, entry in enumerate(models):
        where = f"{loc}.model[{n}]" if isinstance(block.get("model"), list) else loc if options else f"{loc}.model"
        entry = {"model_name": entry} if isinstance(entry, str) else dict(entry) if isinstance(entry, dict) else None
        if entry is None:
            raise ConfigError(f"{file}: {where}: expected a mapping with model_name")
        name = entry.pop("model_name", entry.pop("name", entry.pop("encoder", None)))
        out = entry.pop("output_path", entry.pop("output", None))
        if out is None and len(models) > 1:
            raise ConfigError(f"{file}: {where}.output_path: several models share {loc}; give each its own "
                              "output_path")
        out = out if out is not None else out_default
        if out is None:
            raise ConfigError(f"{file}: {loc}.output_path is required (a .npy file, or a folder with layout: folder)")
        out_path = resolve(out, f"{loc}.output_path")
        layout = entry.pop("layout", block.get("layout"))
        if layout is None and out_path.suffix not in ("", ".npy"):
            raise ConfigError(f"{file}: {loc}.output_path: '{out_path.name}' is neither a .npy file (one matrix) "
                              "nor a folder name; or set layout: folder")
        layout = layout or ("matrix" if out_path.suffix == ".npy" else "folder")
        if layout not in ("matrix", "folder"):
            raise ConfigError(f"{file}: {loc}.layout: '{layout}' is not matrix or folder")
        if layout == "matrix" and out_path.suffix != ".npy":
            raise ConfigError(f"{file}: {loc}.output_path: layout matrix writes one .npy file; name it *.npy "
                              f"(got {out_path.name}) or use layout: folder")
        backend = entry.pop("backend", None)
        if backend is not None and backend not in BACKENDS:
            raise ConfigError(f"{file}: {where}.backend: '{backend}' is not available here; "
                              f"valid: {', '.join(BACKENDS)}")
        notes = []
        if entry.pop("preprocessing", None) is not None:
            notes.append(f"{where}.preprocessing is ignored: the encoder's own normalisation is used")
        if entry.pop("clear_text", False):
            raise ConfigError(f"{file}: {where}.clear_text: true is not supported (texts are encoded as given)")
        bsz = _int(entry.pop("batch_size", block.get("batch_size", batch)), f"{file}: {where}.batch_size")
        err = block.get("on_error", on_error)
        if err not in ("skip", "fail"):
            raise ConfigError(f"{file}: {loc}.on_error: '{err}' is not skip or fail")
        if modality == "textual" and isinstance(name, str):  # a local model folder, relative to dataset_path
            src = name[3:] if name.startswith("hf:") else name
            if src and not Path(src).expanduser().is_absolute() and (root / src).is_dir():
                name = f"hf:{(root / src).resolve()}"
        try:
            encoder = make_encoder(modality, name, entry, where, common=MODEL_COMMON)
        except ConfigError as e:
            raise ConfigError(f"{file}: {e}") from None
        job = Job(modality, where, inp_path, out_path, layout, encoder, bsz, dev, err, notes=notes)
        if modality == "textual":
            idc, _ = get("item_column", "id_column")
            txt, _ = get("text_column")
            for key, value in (("item_column", idc), ("text_column", txt)):
                names = value if isinstance(value, list) and key == "text_column" else [value]
                ok = value is None or (bool(names) and all(isinstance(v, str) and v for v in names))
                if not ok:
                    raise ConfigError(f"{file}: {loc}.{key}: expected a column name"
                                      + (" or a list of names" if key == "text_column" else "") + f", got {value!r}")
            job.item_column = idc
            job.text_column = [txt] if isinstance(txt, str) else txt
            job.sep = block.get("sep")
        jobs.append(job)
    return jobs
