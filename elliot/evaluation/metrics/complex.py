"""Elliot's ``complex_metrics``: metrics that take parameters or files.

YAML (Elliot's keys)::

    evaluation:
      complex_metrics:
      - {metric: UserMADrating, clustering_name: Happiness, clustering_file: ../data/{0}/u_clusters.tsv}
      - {metric: ItemMADranking, clustering_name: ItemPopularity, clustering_file: ../data/{0}/i_clusters.tsv}
      - {metric: REO, clustering_name: ItemPopularity, clustering_file: ../data/{0}/i_clusters.tsv}
      - {metric: BiasDisparityBD, user_clustering_name: Happiness, user_clustering_file: ...,
         item_clustering_name: ItemPopularity, item_clustering_file: ...}
      - {metric: SRecall, feature_data: ../data/{0}/item_features.tsv}
      - {metric: DSC, beta: 2, metric_0: Precision, metric_1: Recall}
      - {metric: ExtendedF1, metric_0: nDCG, metric_1: Recall}
      - {metric: ExtendedEPC, relevance: discounted}        # also ExtendedEFD; binary | discounted
      - {metric: ExtendedPopRSP, pop_ratio: 0.7}             # also ExtendedPopREO

File formats (tab separated, no header, raw ids as in the data files):
  clustering files ``id<TAB>cluster`` (user ids for User*/user_clustering_file, item ids otherwise);
  SRecall's feature file ``item<TAB>feature<TAB>feature...``.
Ids the dataset does not know are ignored; dataset users / items the file does not list belong to no
cluster and are left out of the cluster statistics (Elliot's ``dict.get(id, None)``).  Cluster labels
are sorted (numerically when they are all integers) and named by their label; Elliot uses labels
0..n-1 as indices, which gives the same names.

Result names (Elliot's): ``DSC``, ``ExtendedF1_m0:<m0>-m1:<m1>``, ``ExtendedEFD``, ``ExtendedEPC``,
``ExtendedPopRSP``, ``ExtendedPopREO``, ``SRecall``, ``UserMADrating_<name>`` (and the other three MADs),
``RSP_items:<name>`` + ``RSP-ProbToBeRanked_items:<name>-<cluster>`` per cluster (REO alike),
``BiasDisparityBR_users:<uname>-<g>_items:<iname>-<c>`` per (user group, item category) (BS, BD alike;
without a user / item clustering there is one group, named ``-0``).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np
import scipy.sparse as sp

from elliot.errors import ConfigError, DataError, unknown_name
from elliot.evaluation.metrics import bias as _bias
from elliot.evaluation.metrics import fairness as _fair
from elliot.evaluation.metrics import novelty as _nov
from elliot.evaluation.metrics.accuracy import dice
from elliot.evaluation.metrics.base import Metric, RankingContext, valid

_REQUIRED = object()
_CLUSTER = {"clustering_name": "", "clustering_file": _REQUIRED}
_BIAS_DISPARITY = {"user_clustering_name": "", "user_clustering_file": None, "item_clustering_name": "",
                   "item_clustering_file": None}

#: complex metric -> {parameter: default (_REQUIRED: must be given)}
COMPLEX_METRICS: Dict[str, Dict[str, object]] = {
    "DSC": {"beta": 1.0, "metric_0": "Precision", "metric_1": "Recall"},
    "ExtendedF1": {"metric_0": "Precision", "metric_1": "Recall"},
    "ExtendedEFD": {"relevance": "binary"},
    "ExtendedEPC": {"relevance": "binary"},
    "ExtendedPopRSP": {"pop_ratio": _bias.POP_RATIO},
    "ExtendedPopREO": {"pop_ratio": _bias.POP_RATIO},
    "SRecall": {"feature_data": _REQUIRED},
    "UserMADrating": _CLUSTER, "UserMADranking": _CLUSTER, "ItemMADrating": _CLUSTER, "ItemMADranking": _CLUSTER,
    "RSP": _CLUSTER, "REO": _CLUSTER,
    "BiasDisparityBR": _BIAS_DISPARITY, "BiasDisparityBS": _BIAS_DISPARITY, "BiasDisparityBD": _BIAS_DISPARITY,
}
#: the multimodal forks' per-user-cluster metrics (Formal-MultiMod-Rec, Graph-RSs-Reproducibility):
#: ``clustered_<M>`` = the mean of the per-user metric M over the evaluated users of each cluster of a
#: user clustering file, reported as ``<M>_users:<name>-<cluster>`` (the forks' names)
CLUSTERED = {"clustered_Recall": "Recall", "clustered_nDCG": "nDCG", "clustered_APLT": "APLT",
             "clustered_ACLT": "ACLT", "clustered_ARP": "ARP"}
COMPLEX_METRICS.update({name: {"user_clustering_name": "", "user_clustering_file": _REQUIRED} for name in CLUSTERED})
FILE_KEYS = ("clustering_file", "user_clustering_file", "item_clustering_file", "feature_data")
_USER_CLUSTERED = {"UserMADrating", "UserMADranking"}
_RELEVANCE = ("binary", "discounted")


# ---- parsing (the config loader calls this) -------------------------------------------------------
def parse_complex_metrics(entries, resolve_path: Callable[[str, str], str], where: str, file: str,
                          simple_metrics: Optional[Dict[str, Metric]] = None) -> List[dict]:
    """Validate Elliot's ``complex_metrics`` list and return one dict per entry, every parameter present
    (defaults filled), metric names canonical, file paths resolved by ``resolve_path(value, where)``.
    Raises :class:`ConfigError` (one line naming the key) on a bad entry."""
    if simple_metrics is None:
        from elliot.evaluation.metrics import METRICS as simple_metrics
    if entries is None:
        return []
    if isinstance(entries, dict):
        entries = [entries]
    if not isinstance(entries, list):
        raise ConfigError(f"{file}: {where} must be a list of mappings, each with a 'metric' key")
    lowered = {m.lower(): m for m in COMPLEX_METRICS}
    per_user = {m.lower(): m for m, spec in simple_metrics.items() if spec.per_user}
    out = []
    for n, entry in enumerate(entries):
        loc = f"{where}[{n}]"
        if not isinstance(entry, dict) or "metric" not in entry:
            raise ConfigError(f"{file}: {loc} must be a mapping with a 'metric' key, got {entry!r}")
        raw_name = str(entry["metric"])
        name = lowered.get(raw_name.lower())
        if name is None:
            simple = {m.lower(): m for m in simple_metrics}.get(raw_name.lower())
            if simple is not None:
                raise ConfigError(f"{file}: {loc}.metric: {simple} takes no parameters; list it in simple_metrics")
            message = unknown_name("complex metric", raw_name, COMPLEX_METRICS, where=f"{loc}.metric")
            raise ConfigError(f"{file}: {message}")
        spec = COMPLEX_METRICS[name]
        for key in entry:
            if key != "metric" and key not in spec:
                raise ConfigError(f"{file}: {unknown_name(f'key of {name}', key, ['metric', *spec], where=loc)}")
        parsed: Dict[str, object] = {"metric": name}
        for key, default in spec.items():
            value = entry.get(key, default)
            if value is _REQUIRED:
                raise ConfigError(f"{file}: {loc}: {name} needs '{key}' (a path to a tab-separated file)")
            parsed[key] = _check_param(name, key, value, f"{loc}.{key}", file, resolve_path, per_user)
        out.append(parsed)
    return out


def _check_param(metric, key, value, loc, file, resolve_path, per_user):
    if key in FILE_KEYS:
        return None if value is None else resolve_path(value, loc)
    if key.endswith("_name"):
        if not isinstance(value, (str, int)) or isinstance(value, bool):
            raise ConfigError(f"{file}: {loc}: expected a name, got {value!r}")
        return str(value)
    if key in ("metric_0", "metric_1"):
        canonical = per_user.get(str(value).lower())
        if canonical is None:
            raise ConfigError(f"{file}: {unknown_name('per-user metric', value, per_user.values(), where=loc)}")
        return canonical
    if key == "relevance":
        if str(value).lower() not in _RELEVANCE:
            raise ConfigError(f"{file}: {unknown_name('relevance', value, _RELEVANCE, where=loc)}")
        return str(value).lower()
    if key in ("beta", "pop_ratio"):
        if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0 or (
                key == "pop_ratio" and value > 1):
            valid_range = "in (0, 1]" if key == "pop_ratio" else "> 0"
            raise ConfigError(f"{file}: {loc}: {value!r} must be a number {valid_range}")
        return float(value)
    return value  # pragma: no cover - every key of COMPLEX_METRICS is handled above


# ---- files -> index arrays (once per Evaluator) ---------------------------------------------------
def _read_rows(path: str, min_fields: int) -> List[List[str]]:
    try:
        with open(path, encoding="utf-8") as fh:
            lines = fh.read().splitlines()
    except OSError as exc:
        raise DataError(f"{path}: cannot read ({exc.strerror or exc})") from None
    rows = []
    for n, line in enumerate(lines, 1):
        if not line.strip():
            continue
        parts = [p.strip() for p in line.split("\t")]
        if len(parts) < min_fields:
            raise DataError(f"{path}: line {n}: expected at least {min_fields} tab-separated fields, got {line!r}")
        rows.append(parts)
    return rows


def _label_order(labels: Sequence[str]) -> List[str]:
    unique = sorted(set(labels))
    try:
        return sorted(unique, key=lambda s: (float(s), s))
    except ValueError:
        return unique


def read_clustering(path: str, ids: np.ndarray) -> Tuple[np.ndarray, Tuple[str, ...]]:
    """(cluster index per id (-1: not listed), labels) from an ``id<TAB>cluster`` file."""
    rows = _read_rows(path, 2)
    index = {str(v): i for i, v in enumerate(ids)}
    known = [(index[r[0]], r[1]) for r in rows if r[0] in index]
    if not known:
        raise DataError(f"{path}: none of its {len(rows)} ids is in the dataset")
    labels = _label_order([c for _, c in known])
    position = {c: n for n, c in enumerate(labels)}
    cluster = np.full(len(ids), -1, dtype=np.int64)
    cluster[np.array([i for i, _ in known])] = np.array([position[c] for _, c in known])
    return cluster, tuple(labels)


def read_item_features(path: str, item_ids: np.ndarray) -> Tuple[sp.csr_matrix, int]:
    """(items x features bool CSR, number of distinct features of the dataset's items) from
    ``item<TAB>feature...`` lines."""
    rows = _read_rows(path, 1)
    index = {str(v): i for i, v in enumerate(item_ids)}
    r, c, vocab = [], [], {}
    for parts in rows:
        item = index.get(parts[0])
        if item is None:
            continue
        for f in parts[1:]:
            if f:
                r.append(item)
                c.append(vocab.setdefault(f, len(vocab)))
    m = sp.csr_matrix((np.ones(len(r), dtype=bool), (np.array(r, dtype=np.int64), np.array(c, dtype=np.int64))),
                      shape=(len(item_ids), max(len(vocab), 1)), dtype=bool)
    m.sum_duplicates()
    return m, len(vocab)


@dataclass(frozen=True)
class PreparedComplex:
    """A parsed complex metric with its files read into index arrays."""
    metric: str
    params: dict
    user_cluster: Optional[np.ndarray] = None
    user_labels: Tuple[str, ...] = ()
    item_cluster: Optional[np.ndarray] = None
    item_labels: Tuple[str, ...] = ()
    item_features: Optional[sp.csr_matrix] = None
    n_features: int = 0
    source_bias: Optional[np.ndarray] = None  # BS (G, C), from the training data

    @property
    def n_user_groups(self) -> int:
        return len(self.user_labels) if self.user_cluster is not None else 1

    @property
    def n_item_groups(self) -> int:
        return len(self.item_labels) if self.item_cluster is not None else 1

    def _group_names(self):
        un, iname = self.params.get("user_clustering_name", ""), self.params.get("item_clustering_name", "")
        ul = self.user_labels if self.user_cluster is not None else ("0",)
        il = self.item_labels if self.item_cluster is not None else ("0",)
        return [[f"users:{un}-{g}_items:{iname}-{c}" for c in il] for g in ul]

    def output_names(self) -> List[str]:
        m, p = self.metric, self.params
        if m == "ExtendedF1":
            return [f"ExtendedF1_m0:{p['metric_0']}-m1:{p['metric_1']}"]
        if m in CLUSTERED:
            return [f"{CLUSTERED[m]}_users:{p['user_clustering_name']}-{g}" for g in self.user_labels]
        if m in ("RSP", "REO"):
            return [f"{m}-ProbToBeRanked_items:{p['clustering_name']}-{c}" for c in self.item_labels] + [
                f"{m}_items:{p['clustering_name']}"]
        if m.startswith("BiasDisparity"):
            return [f"{m}_{cell}" for row in self._group_names() for cell in row]
        if "MAD" in m:
            return [f"{m}_{p['clustering_name']}"]
        return [m]

    def compute(self, ctx: RankingContext, k: int, simple: Dict[str, Metric]
                ) -> Tuple[Dict[str, float], Dict[str, np.ndarray]]:
        """({result name: value}, {result name: per-user values} for DSC / ExtendedF1)."""
        m, p = self.metric, self.params
        names = self.output_names()
        if m in ("DSC", "ExtendedF1"):
            per_user = dice(np.asarray(simple[p["metric_0"]].fn(ctx, k), dtype=np.float64),
                            np.asarray(simple[p["metric_1"]].fn(ctx, k), dtype=np.float64), p.get("beta", 1.0))
            return {names[0]: float(np.mean(per_user))}, {names[0]: per_user}
        if m in CLUSTERED:
            per_user = np.asarray(simple[CLUSTERED[m]].fn(ctx, k), dtype=np.float64)
            groups = self.user_cluster[ctx.user_index] if ctx.user_index is not None else np.full(len(per_user), -1)
            return dict(zip(names, map(float, _fair._cluster_means(per_user, groups, self.n_user_groups)))), {}
        if m in ("ExtendedEFD", "ExtendedEPC"):
            fn = _nov.extended_efd if m == "ExtendedEFD" else _nov.extended_epc
            per_user = fn(ctx, k, discounted=p["relevance"] == "discounted")
            return {names[0]: float(np.mean(per_user))}, {names[0]: per_user}
        if m == "ExtendedPopRSP":
            return {names[0]: _bias.extended_pop_rsp(ctx, k, p["pop_ratio"])}, {}
        if m == "ExtendedPopREO":
            return {names[0]: _bias.extended_pop_reo(ctx, k, p["pop_ratio"])}, {}
        if m == "SRecall":
            per_user = srecall(ctx, k, self.item_features, self.n_features)
            return {names[0]: float(np.mean(per_user))}, {names[0]: per_user}
        if m in ("RSP", "REO"):
            pr = (_bias.group_rsp(ctx, k, self.item_cluster, self.n_item_groups) if m == "RSP"
                  else _bias.group_reo(ctx, k, self.item_cluster, self.n_item_groups, m))
            return dict(zip(names, [*map(float, pr), _bias.std_over_mean(pr)])), {}
        if "MAD" in m:
            fn = {"UserMADrating": _fair.user_mad_rating, "UserMADranking": _fair.user_mad_ranking,
                  "ItemMADrating": _fair.item_mad_rating, "ItemMADranking": _fair.item_mad_ranking}[m]
            cluster, n = ((self.user_cluster, self.n_user_groups) if m in _USER_CLUSTERED
                          else (self.item_cluster, self.n_item_groups))
            return {names[0]: fn(ctx, k, cluster, n)}, {}
        # bias disparity
        bs = self.source_bias
        if m == "BiasDisparityBS":
            out = bs
        else:
            br = _fair.bias_recommended(ctx, k, self.user_cluster, self.n_user_groups, self.item_cluster,
                                        self.n_item_groups)
            with np.errstate(divide="ignore", invalid="ignore"):
                out = br if m == "BiasDisparityBR" else (br - bs) / bs
        return dict(zip(names, map(float, out.ravel()))), {}


def srecall(ctx: RankingContext, k: int, item_features: sp.csr_matrix, n_features: int) -> np.ndarray:
    """SRecall@k (subtopic recall, Zhai et al. 2003) per user:
    |∪_{i ∈ L_u ∩ Rel_u} features(i)| / |features of all items| (0 without features)."""
    rows, cols = np.nonzero(ctx.hits[:, :k] & valid(ctx, k))
    if n_features == 0 or len(rows) == 0:
        return np.zeros(ctx.n_users)
    sub = item_features[ctx.top_items[:, :k][rows, cols]]
    owner = np.repeat(rows, np.diff(sub.indptr))
    pairs = np.unique(owner.astype(np.int64) * n_features + sub.indices)
    return np.bincount(pairs // n_features, minlength=ctx.n_users) / n_features


def prepare_complex_metrics(entries: Sequence[dict], user_ids: np.ndarray, item_ids: np.ndarray,
                            train: sp.csr_matrix) -> List[PreparedComplex]:
    """Read every file of the parsed ``entries`` once (raw ids -> dataset indices)."""
    cache: Dict[Tuple[str, str], tuple] = {}

    def clusters(path, kind):
        if path is None:
            return None, ()
        key = (path, kind)
        if key not in cache:
            cache[key] = read_clustering(path, user_ids if kind == "user" else item_ids)
        return cache[key]

    out = []
    for entry in entries or []:
        m = entry.get("metric")
        if m not in COMPLEX_METRICS:
            raise ConfigError(unknown_name("complex metric", m, COMPLEX_METRICS))
        params = {key: entry.get(key, default) for key, default in COMPLEX_METRICS[m].items()}
        missing = [key for key, v in params.items() if v is _REQUIRED]
        if missing:
            raise ConfigError(f"complex metric {m} needs '{missing[0]}'")
        kw: Dict[str, object] = {}
        if m in ("UserMADrating", "UserMADranking"):
            kw["user_cluster"], kw["user_labels"] = clusters(params["clustering_file"], "user")
        elif "clustering_file" in params:
            kw["item_cluster"], kw["item_labels"] = clusters(params["clustering_file"], "item")
        elif m == "SRecall":
            key = (params["feature_data"], "features")
            if key not in cache:
                cache[key] = read_item_features(params["feature_data"], item_ids)
            kw["item_features"], kw["n_features"] = cache[key]
        elif m in CLUSTERED:
            kw["user_cluster"], kw["user_labels"] = clusters(params["user_clustering_file"], "user")
        elif m.startswith("BiasDisparity"):
            kw["user_cluster"], kw["user_labels"] = clusters(params["user_clustering_file"], "user")
            kw["item_cluster"], kw["item_labels"] = clusters(params["item_clustering_file"], "item")
        prepared = PreparedComplex(m, params, **kw)
        if m.startswith("BiasDisparity"):
            prepared = PreparedComplex(m, params, **kw, source_bias=_source_bias(prepared, train))
        out.append(prepared)
    return out


def _source_bias(p: PreparedComplex, train: sp.csr_matrix) -> np.ndarray:
    """BS (G, C): bias of every user's training interactions."""
    coo = train.tocoo()
    keep = coo.data != 0
    rows, cols = coo.row[keep].astype(np.int64), coo.col[keep].astype(np.int64)
    groups = np.zeros(len(rows), dtype=np.int64) if p.user_cluster is None else p.user_cluster[rows]
    categories = np.zeros(len(cols), dtype=np.int64) if p.item_cluster is None else p.item_cluster[cols]
    return _fair.bias(groups, categories, p.n_user_groups, p.n_item_groups,
                      _fair.category_share(p.item_cluster, p.n_item_groups))
