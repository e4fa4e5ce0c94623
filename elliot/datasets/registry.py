"""The dataset catalogue's data model: entries, sources, checksums, and user registry files.

An entry says where a public dataset comes from (one or more sources: a URL, a Google Drive file
id, a Google Drive folder id, or ``manual`` when there is no link a program may follow), how each
source is checked (``sha256:<hex>``, or ``md5:<hex>`` where that is what the publisher gives; ``None``
when nobody has recorded one: the fetcher then prints the sha256 it computed and says the file was
not verified), how it is unpacked, and which files must appear under ``<root>/<name>/`` (the layout
the experiment configs read).  The built-in entries are in :mod:`elliot.datasets.catalogue`; a
user YAML/JSON file (``--registry``) adds entries or replaces built-in ones by name.
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Dict, Mapping, Optional, Tuple

from elliot.errors import DataError, unknown_name

KINDS = ("url", "gdrive", "gdrive_folder", "manual")
UNPACK = ("auto", "zip", "tar.gz", "file")
_HEX = {"sha256": 64, "md5": 32}


class DatasetError(DataError):
    """A dataset could not be fetched, verified, unpacked or found (one line, names the URL / id / file)."""


def parse_checksum(value: Optional[str], where: str = "checksum") -> Optional[Tuple[str, str]]:
    """``'sha256:<hex>'`` / ``'md5:<hex>'`` -> (algorithm, lowercase hex); ``None`` stays ``None``."""
    if value is None:
        return None
    algo, _, digest = str(value).partition(":")
    algo, digest = algo.strip().lower(), digest.strip().lower()
    if algo not in _HEX or not re.fullmatch(rf"[0-9a-f]{{{_HEX[algo]}}}", digest):
        raise DatasetError(f"{where}: '{value}' is not 'sha256:<64 hex>' or 'md5:<32 hex>'")
    return algo, digest


@dataclass(frozen=True)
class Source:
    """One thing to download.

    kind: ``url`` | ``gdrive`` (file id) | ``gdrive_folder`` (folder id; ``subfolder`` picks one child
    folder) | ``manual`` (``location`` is where a person gets it).  unpack: ``zip`` | ``tar.gz`` |
    ``file`` (stored as ``dest``) | ``auto`` (from the file's first bytes).  dest: for ``file`` the
    path under the dataset folder; for an archive the sub-folder it is unpacked into ("" = the root).
    """

    kind: str
    location: str
    checksum: Optional[str] = None
    unpack: str = "auto"
    dest: str = ""
    subfolder: Optional[str] = None

    def __post_init__(self):
        if self.kind not in KINDS:
            raise DatasetError(unknown_name("source kind", self.kind, KINDS))
        if self.unpack not in UNPACK:
            raise DatasetError(unknown_name("unpack", self.unpack, UNPACK))
        if self.unpack == "file" and not self.dest:
            raise DatasetError(f"source {self.location}: unpack 'file' needs 'dest' "
                               "(its name under the dataset folder)")
        parse_checksum(self.checksum, f"source {self.location}")

    @property
    def label(self) -> str:
        """How errors name this source: the URL, or the Google Drive id."""
        if self.kind == "gdrive":
            return f"Google Drive id {self.location}"
        if self.kind == "gdrive_folder":
            sub = f" (sub-folder '{self.subfolder}')" if self.subfolder else ""
            return f"Google Drive folder {self.location}{sub}"
        return self.location


@dataclass(frozen=True)
class DatasetEntry:
    """A catalogue entry.  ``layout`` maps each path that must exist under ``<root>/<name>/`` (a
    trailing ``/`` marks a folder) to its sha256 when it is known, else ``None``."""

    name: str
    title: str
    sources: Tuple[Source, ...]
    layout: Mapping[str, Optional[str]]
    licence: str
    citation: str
    homepage: str = ""
    notes: str = ""
    postprocess: Tuple[str, ...] = ()
    local: Optional[str] = None
    config_hint: str = ""

    def __post_init__(self):
        if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]*", self.name):
            raise DatasetError(f"dataset name '{self.name}' must be letters, digits, '_', '-', '.'")
        if not self.sources:
            raise DatasetError(f"dataset '{self.name}' has no sources")
        if not self.layout:
            raise DatasetError(f"dataset '{self.name}' declares no expected layout")
        for path, digest in self.layout.items():
            if Path(path).is_absolute() or ".." in Path(path).parts:
                raise DatasetError(f"dataset '{self.name}': layout path '{path}' must be relative, without '..'")
            if digest is not None:
                parse_checksum(digest, f"dataset '{self.name}' layout '{path}'")
        from elliot.datasets.convert import STEPS  # late: convert imports this module
        for step in self.postprocess:
            if step not in STEPS:
                raise DatasetError(f"dataset '{self.name}': {unknown_name('postprocess step', step, STEPS)}")

    @property
    def manual(self) -> bool:
        return any(s.kind == "manual" for s in self.sources)

    @property
    def verified(self) -> bool:
        """True when every downloaded source has a recorded checksum."""
        return all(s.checksum for s in self.sources if s.kind != "manual")

    def checksums(self) -> list:
        return [s.checksum for s in self.sources]


def entry_from_dict(name: str, raw: Mapping, where: str) -> DatasetEntry:
    """Build an entry from a user registry mapping (same field names as :class:`DatasetEntry`)."""
    if not isinstance(raw, Mapping):
        raise DatasetError(f"{where}: entry '{name}' must be a mapping")
    allowed = {f.name for f in fields(DatasetEntry)} - {"name"}
    for key in raw:
        if key not in allowed:
            raise DatasetError(f"{where}: entry '{name}': {unknown_name('key', key, allowed)}")
    src_keys = {f.name for f in fields(Source)}
    sources = []
    for n, s in enumerate(raw.get("sources") or []):
        if not isinstance(s, Mapping) or not {"kind", "location"} <= set(s):
            raise DatasetError(f"{where}: entry '{name}' sources[{n}] needs 'kind' and 'location'")
        for key in s:
            if key not in src_keys:
                raise DatasetError(f"{where}: entry '{name}' sources[{n}]: {unknown_name('key', key, src_keys)}")
        sources.append(Source(**dict(s)))
    layout = raw.get("layout") or {}
    if isinstance(layout, (list, tuple)):
        layout = {p: None for p in layout}
    return DatasetEntry(
        name=name, title=str(raw.get("title", name)), sources=tuple(sources), layout=dict(layout),
        licence=str(raw.get("licence", "unknown: check the source's terms")),
        citation=str(raw.get("citation", "")), homepage=str(raw.get("homepage", "")),
        notes=str(raw.get("notes", "")), postprocess=tuple(raw.get("postprocess") or ()),
        local=raw.get("local"), config_hint=str(raw.get("config_hint", "")))


def load_registry_file(path) -> Dict[str, DatasetEntry]:
    """Read a YAML or JSON file ``{datasets: {name: {...}}}`` (or just ``{name: {...}}``)."""
    path = Path(path)
    if not path.is_file():
        raise DatasetError(f"registry file not found: {path}")
    text = path.read_text()
    try:
        if path.suffix.lower() == ".json":
            doc = json.loads(text)
        else:
            import yaml
            doc = yaml.safe_load(text)
    except Exception as exc:  # yaml.YAMLError / json.JSONDecodeError
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise DatasetError(f"registry file {path}: cannot be parsed: {first}") from None
    if isinstance(doc, Mapping) and "datasets" in doc:
        doc = doc["datasets"]
    if not isinstance(doc, Mapping):
        raise DatasetError(f"registry file {path}: expected a mapping of dataset name -> entry")
    return {str(k): entry_from_dict(str(k), v, str(path)) for k, v in doc.items()}


@dataclass
class Registry:
    entries: Dict[str, DatasetEntry] = field(default_factory=dict)

    def get(self, name: str) -> DatasetEntry:
        if name not in self.entries:
            raise DatasetError(unknown_name("dataset", name, self.entries))
        return self.entries[name]

    def names(self):
        return sorted(self.entries)


def load_registry(extra=None) -> Registry:
    """The built-in catalogue, updated with the entries of the file ``extra`` (path) or mapping ``extra``."""
    from elliot.datasets.catalogue import builtin_entries

    entries = builtin_entries()
    if isinstance(extra, Registry):
        entries.update(extra.entries)
    elif isinstance(extra, Mapping):
        entries.update({k: v if isinstance(v, DatasetEntry) else entry_from_dict(k, v, "registry")
                        for k, v in extra.items()})
    elif extra is not None:
        entries.update(load_registry_file(extra))
    return Registry(entries)
