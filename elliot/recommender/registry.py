"""One registry for built-in models and ``external.Name`` packages (Elliot's naming)."""
from __future__ import annotations

import importlib
import importlib.util
import inspect
import sys
from pathlib import Path
from types import ModuleType
from typing import Dict, Optional, Type

from elliot.errors import ConfigError, did_you_mean, unknown_name
from elliot.recommender.base import Recommender
from elliot.recommender.baselines import BPRMF, LightGCN, MostPop
from elliot.recommender.layergcn import LayerGCN
from elliot.recommender.ngcf import NGCF
from elliot.recommender.recfolder import RecommendationFile, RecommendationFolder
from elliot.recommender.rating import BiasBaseline, BiasedMF, GlobalMean
from elliot.recommender.selfcf import SelfCF
from elliot.recommender.sgl import SGL

BUILTINS: Dict[str, Type[Recommender]] = {cls.name: cls for cls in (
    MostPop, BPRMF, LightGCN, NGCF, LayerGCN, SelfCF, SGL, RecommendationFile, RecommendationFolder)}
BUILTINS.update({cls.name: cls for cls in (GlobalMean, BiasBaseline, BiasedMF)})  # rating task
BUILTINS["ProxyRecommender"] = RecommendationFile  # Elliot's name for one stored recommendation file
BUILTINS["SELFCFED_LGN"] = SelfCF  # MMRec's name

_REPO_EXTERNAL = Path(__file__).resolve().parents[2] / "external" / "models"


def _load_external_module(external_path: Optional[str]) -> Optional[ModuleType]:
    """Import the external models package: the repo's ``external.models`` unless a path is given."""
    if external_path is None:
        try:
            return importlib.import_module("external.models")
        except ModuleNotFoundError:
            return None
    path = Path(external_path)
    if path.name == "__init__.py":
        path = path.parent
    if path.resolve() == _REPO_EXTERNAL.resolve():
        return importlib.import_module("external.models")
    init = path / "__init__.py"
    if not init.exists():
        raise ConfigError(f"experiment.external_models_path: '{path}' is not a Python package (no __init__.py)")
    module_name = f"elliot_external_{abs(hash(str(path.resolve())))}"
    if module_name in sys.modules:
        return sys.modules[module_name]
    spec = importlib.util.spec_from_file_location(module_name, init, submodule_search_locations=[str(path)])
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module
    try:
        spec.loader.exec_module(module)
    except Exception as exc:  # an external package that does not import is a user error, say where
        del sys.modules[module_name]
        raise ConfigError(f"experiment.external_models_path: importing '{init}' failed: {exc!r}") from exc
    return module


def external_models(external_path: Optional[str] = None) -> Dict[str, Type[Recommender]]:
    module = _load_external_module(external_path)
    if module is None:
        return {}
    return {
        name: obj for name, obj in vars(module).items()
        if inspect.isclass(obj) and issubclass(obj, Recommender) and obj is not Recommender and not inspect.isabstract(obj)
        and not name.startswith("_")
    }


def available_models(external_path: Optional[str] = None) -> Dict[str, Type[Recommender]]:
    """All model names accepted in ``experiment.models``."""
    names: Dict[str, Type[Recommender]] = dict(BUILTINS)
    names.update({f"external.{n}": cls for n, cls in external_models(external_path).items()})
    return names


#: Models Elliot 0.3.1, its multimodal forks or MMRec ship that this project does not have (yet): named, so
#: their configs fail with a reason instead of a bare "unknown model"
NOT_HERE = {
    **{n: "an Elliot 0.3.1 built-in" for n in (
        "BPRMF_batch", "WRMF", "PureSVD", "MF", "FunkSVD", "PMF", "LMF", "NonNegMF", "FM", "LogisticMF", "Random",
        "MultiDAE", "MultiVAE", "EASER", "KaHFM", "KaHFMBatch", "KaHFMEmbeddings", "RP3beta",
        "DeepStyle", "ACF", "DVBPR", "VNPR", "ItemKNN", "UserKNN", "AttributeItemKNN", "AttributeUserKNN",
        "DeepFM", "DMF", "NeuMF", "NFM", "GMF", "NAIS", "UserAutoRec", "ItemAutoRec", "ConvNeuMF", "WideAndDeep",
        "ConvMF", "NPR", "VSM", "SlopeOne", "AMF", "IRGAN", "CFGAN")},
    **{n: "a model of Elliot's multimodal forks (Formal-MultiMod-Rec, Multimodal-RSs-Reproducibility, "
          "Ducho-meets-Elliot)" for n in ("SimGCL",)},
    **{n: "an MMRec model" for n in ("DRAGON", "MGCN", "LGMRec")},
}


def resolve_model(name: str, external_path: Optional[str] = None) -> Type[Recommender]:
    """The class of ``experiment.models.<name>``.

    Elliot's spellings resolve too: Elliot ships AMR and VBPR as built-ins (``AMR:``), which live in
    ``external`` here, and the multimodal forks ship their own ``external.BPRMF`` / ``external.LightGCN``,
    which are our built-ins."""
    models = available_models(external_path)
    if name in models:
        return models[name]
    bare = name.split(".", 1)[1] if name.startswith("external.") else name
    if name.startswith("external.") and bare in BUILTINS:
        return BUILTINS[bare]
    if not name.startswith("external.") and f"external.{name}" in models:
        return models[f"external.{name}"]
    if bare in NOT_HERE:
        close = did_you_mean(bare, [m.split(".")[-1] for m in models])
        raise ConfigError(f"experiment.models: '{name}' is {NOT_HERE[bare]} not implemented in this framework"
                          f"{close}; available: {', '.join(sorted(models))}")
    raise ConfigError(unknown_name("model", name, models, where="experiment.models"))
