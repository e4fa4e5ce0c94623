"""Options added for the robustness candidates: VBPR ``feature_norm`` and ``visual_bias``, AMR ``perturbation: catalogue``,
Modality Balancing ``roles`` (config errors)."""
import pytest
import torch
from torch.nn import functional as F

from elliot.config.params import coerce_params, expand_grid
from elliot.errors import ConfigError
from elliot.evaluation.attacks.perturb import FeatureAttack, fgsm, sample_triples
from elliot.recommender.base import TripletBatch
from elliot.training.defenses import build_addons, validate_defense
from external.models.amr import AMR
from external.models.vbpr import VBPR
from tests.helpers import random_dataset
from tests.robustness_helpers import TinyVBPR, make_model

DS = random_dataset(n_users=40, n_items=50, density=0.2, seed=6, dims=(8, 6))


def _build(cls, seed=0, **raw):
    raw = {"epochs": 4, "batch_size": 32, "factors": 8, "factors_d": 4, "lr": 0.01, **raw}
    hp = expand_grid(coerce_params(cls.declared_params(), raw, cls.name))[0]
    torch.manual_seed(seed)
    return cls(DS, hp, torch.device("cpu"))


@pytest.mark.parametrize("fusion", ["concat", "per_modality"])
def test_vbpr_feature_norm_reads_unit_feature_rows(fusion):
    model = _build(VBPR, fusion=fusion, feature_norm=True)
    users, items = torch.arange(10), torch.arange(10, 20)
    with torch.no_grad():
        s = model.score_pairs(users, items)
        # rescaling an item's raw features changes nothing: the model reads f / ||f||
        scaled = {m: model.feature(m) * torch.linspace(0.5, 3.0, DS.n_items).unsqueeze(1) for m in model.modalities}
        with model.features_replaced(scaled):
            assert torch.allclose(model.score_pairs(users, items), s, atol=1e-5)
        unit = {m: F.normalize(model.feature(m), dim=1) for m in model.modalities}
        plain = _build(VBPR, fusion=fusion)
        plain.load_state_dict(model.state_dict())
        with plain.features_replaced(unit):
            assert torch.allclose(plain.score_pairs(users, items), s, atol=1e-5)
            assert torch.allclose(plain.score(users[:3]), model.score(users[:3]), atol=1e-5)
    off = _build(VBPR, fusion=fusion)
    with torch.no_grad():
        assert not torch.allclose(off.score_pairs(users, items),
                                  _build(VBPR, fusion=fusion, feature_norm=True).score_pairs(users, items))


@pytest.mark.parametrize("fusion", ["concat", "per_modality"])
def test_vbpr_without_visual_bias_is_blind_to_feature_shifts_along_nothing_but_the_projection(fusion):
    model = _build(VBPR, fusion=fusion, visual_bias=False)
    assert all(float(E[:, -1].abs().max()) == 0.0 for E in model.E)
    opt = torch.optim.Adam(model.parameters(), lr=0.05)
    g = torch.Generator().manual_seed(1)
    for _ in range(3):
        batch = TripletBatch(users=torch.randint(0, DS.n_users, (24,), generator=g),
                             pos_items=torch.randint(0, DS.n_items, (24,), generator=g),
                             neg_items=torch.randint(0, DS.n_items, (24,), generator=g))
        opt.zero_grad()
        model.loss(batch).backward()
        opt.step()
    assert all(float(E[:, -1].abs().max()) == 0.0 for E in model.E)  # β' is never trained
    assert float(model.E[0][:, :-1].abs().sum()) > 0
    users, items = torch.arange(10), torch.arange(10, 20)
    with torch.no_grad():
        s = model.score_pairs(users, items)
        # the score is s = β_i + γ_u·γ_i + θ_u·n(E f_i): a model with the same weights and a visual bias
        # that happens to be zero scores the same, and one with a non-zero β' does not
        plain = _build(VBPR, fusion=fusion)
        plain.load_state_dict(model.state_dict())
        assert torch.allclose(plain.score_pairs(users, items), s, atol=1e-6)
        assert torch.allclose(plain.score(users[:3]), model.score(users[:3]), atol=1e-6)
        for E in plain.E:
            E[:, -1] = 1.0
        assert not torch.allclose(plain.score_pairs(users, items), s, atol=1e-3)
        # and rescaling an item's features moves nothing (n(E f) is scale invariant)
        scaled = {m: model.feature(m) * 2.5 for m in model.modalities}
        with model.features_replaced(scaled):
            assert torch.allclose(model.score_pairs(users, items), s, atol=1e-5)


def test_amr_catalogue_perturbation_is_the_evaluation_attack():
    model = _build(AMR, perturbation="catalogue", eps=0.05, eps_relative=True, l_adv=1.0, adversarial_epochs=4)
    model.on_epoch_start(0)
    assert model.adversarial and model._catalogue is not None
    attack = FeatureAttack(model, model.modalities, sample_triples(DS, None, 42))
    expected = fgsm(attack, "ratio", [0.05], "l2")[0]
    for m, d in zip(model.modalities, model._catalogue):
        assert torch.allclose(d, expected[m], atol=1e-6)
        assert torch.allclose(d.norm(dim=1), 0.05 * model.feature(m).norm(dim=1), atol=1e-5)
    g = torch.Generator().manual_seed(0)
    batch = TripletBatch(users=torch.randint(0, DS.n_users, (24,), generator=g),
                         pos_items=torch.randint(0, DS.n_items, (24,), generator=g),
                         neg_items=torch.randint(0, DS.n_items, (24,), generator=g))
    loss = model.loss(batch)
    assert torch.isfinite(loss) and model.last_adv_loss is not None
    loss.backward()
    batch_model = _build(AMR, eps=0.05, eps_relative=True, l_adv=1.0, adversarial_epochs=4)
    batch_model.on_epoch_start(0)
    assert batch_model._catalogue is None  # the default keeps the paper's per-batch perturbation
    msap_model = _build(AMR, perturbation="catalogue", attack="msap", nb_iter=2, eps=0.05, eps_relative=True,
                        adversarial_epochs=4)
    msap_model.on_epoch_start(0)
    assert all(torch.isfinite(d).all() for d in msap_model._catalogue)


def test_amr_perturbation_choice_error():
    with pytest.raises(ConfigError) as info:
        coerce_params(AMR.declared_params(), {"perturbation": "catalog"}, "AMR")
    assert "\n" not in str(info.value)


def test_modality_balancing_roles_config():
    defenses, _ = validate_defense({"method": "modality_balancing", "roles": "both"}, None, TinyVBPR, "m")
    assert defenses[0]["roles"] == "both"
    with pytest.raises(ConfigError, match="did you mean 'alternate'") as info:
        validate_defense({"method": "modality_balancing", "roles": "alternat"}, None, TinyVBPR, "m")
    assert "\n" not in str(info.value)
    model = make_model(DS, seed=0)
    (mb,) = build_addons(model, DS, defense={"method": "modality_balancing", "roles": "alternate", "N": 8,
                                             "pgd_steps": 2}, seed=0)
    assert mb.roles == "alternate"
