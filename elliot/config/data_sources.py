"""Where a data config's inputs come from: ``side_information`` entries (feature files, features extracted
from raw images/texts, tabular attributes) and ``fetch`` (a catalogue dataset downloaded first).

A mixin of the loader's resolver (:class:`elliot.config.loader._Resolver`): it uses the resolver's
``path``, ``err``, ``base``, ``file``, ``dataset``, ``fetching`` and ``extract_device``."""
from __future__ import annotations

from pathlib import Path

from elliot.config.schema import LOADERS
from elliot.errors import unknown_name


class DataSourcesMixin:
    def side_information(self, entries) -> list:
        where = "experiment.data_config.side_information"
        if isinstance(entries, dict):
            entries = [entries]
        out, seen = [], set()
        for n, entry in enumerate(entries):
            loc = f"{where}[{n}]"
            if not isinstance(entry, dict) or "dataloader" not in entry:
                raise self.err(f"{loc} needs a 'dataloader' ({', '.join(LOADERS)})")
            loader = entry["dataloader"]
            if loader not in LOADERS:
                raise self.err(unknown_name("dataloader", loader, LOADERS, where=loc))
            key, modality = LOADERS[loader]
            if key == "attribute_file":  # ItemAttributes / UserAttributes: tabular, no modality
                if not entry.get(key):
                    raise self.err(f"{loc}: {loader} needs 'attribute_file' (Elliot's TSV id<TAB>attr<TAB>... or, "
                                   "with format: ml100k, u.item / u.user)")
                out.append({**{k: entry[k] for k in ("format", "name", "missing") if entry.get(k) is not None},
                            "dataloader": loader, key: self.path(entry[key], f"{loc}.{key}",
                                                                 must_exist=not self.fetching)})
                continue
            modality = str(entry.get("modality") or modality or "")
            if not modality:
                raise self.err(f"{loc}: FeatureAttribute needs a 'modality' name")
            if key not in entry:
                raise self.err(f"{loc}: {loader} needs '{key}' (a folder of <item>.npy files or one .npy matrix)")
            if modality in seen:
                raise self.err(f"{loc}: modality '{modality}' is given twice; name them with 'modality: <name>'")
            seen.add(modality)
            if entry.get("extract") is not None:
                out.append(self.extracted_entry(entry, loader, key, modality, loc))
                continue
            out.append({"dataloader": loader, "modality": modality,
                        "features": self.path(entry[key], f"{loc}.{key}", must_exist=not self.fetching),
                        "item_mapping": self.path(entry["item_mapping"], f"{loc}.item_mapping")
                        if entry.get("item_mapping") else None})
        return out

    def extracted_entry(self, entry: dict, loader: str, key: str, modality: str, loc: str) -> dict:
        """A side_information entry with ``extract:``: its features are written by elliot.features from raw
        images/texts when the data is loaded (a no-op when cached), so the features path need not exist
        yet.  The job is validated here (inputs, encoder, options) and kept in the entry as ``extract``."""
        from elliot.features import side_information_job
        from elliot.features.store import paths as feature_paths

        spec = entry["extract"]
        if not isinstance(spec, dict):
            raise self.err(f"{loc}.extract: expected a mapping with input_path and model, got {spec!r}")
        spec = dict(spec)
        threads = spec.pop("threads", None)
        if threads is not None and (isinstance(threads, bool) or not isinstance(threads, int) or threads < 1):
            raise self.err(f"{loc}.extract.threads: {threads!r} must be a positive integer")
        features = self.path(entry[key], f"{loc}.{key}", must_exist=False)
        job = side_information_job(spec, modality, features, self.base, where=f"{loc}.extract", file=self.file,
                                   dataset=self.dataset, device=self.extract_device)
        job.threads = threads
        written = feature_paths(job.output, job.layout)["mapping"] if job.layout == "matrix" else None
        if entry.get("item_mapping"):
            given = self.path(entry["item_mapping"], f"{loc}.item_mapping", must_exist=False)
            if written is None or Path(given) != Path(written):
                raise self.err(f"{loc}.item_mapping: {given}: with extract, the mapping is the one the extractor "
                               f"writes ({written or 'none for a folder of <item>.npy'}); remove item_mapping")
        return {"dataloader": loader, "modality": modality, "features": features,
                "item_mapping": None if written is None else str(written), "extract": job}

    def fetch_spec(self, value, where: str):
        """``data_config.fetch``: ``true`` (the catalogue dataset named like experiment.dataset), a name, or
        ``{name, root}``; the dataset is fetched into ``root`` (default ``../data`` from the config's folder)
        after the whole config is validated, before the data is read (a no-op when present)."""
        if value in (None, False):
            self.fetching = False
            return None
        if value is True:
            value = {"name": self.dataset}
        elif isinstance(value, str):
            value = {"name": value}
        if not isinstance(value, dict) or set(value) - {"name", "root"}:
            raise self.err(f"{where}.fetch: {value!r}: write true, a catalogue name, or {{name: ..., root: ...}}")
        from elliot.datasets.registry import load_registry

        registry = load_registry(None)
        name = str(value.get("name") or self.dataset)
        if name not in registry.names():
            raise self.err(f"{where}.fetch: {unknown_name('catalogue dataset', name, registry.names())}")
        root = self.path(value.get("root", "../data"), f"{where}.fetch.root", must_exist=False)
        self.fetching = True
        return {"name": name, "root": root}
