r"""Targeted item promotion: a seller perturbs the features of their own items to push them up everyone's list.

Threat model (TAaMR, Di Noia et al., DSN-W 2020; Anelli et al., "A study of defensive methods to
protect visual recommendation against adversarial manipulation of images", SIGIR 2021; Liu & Larson,
"Adversarial item promotion", WWW 2021): the attacker controls the uploaded image / description of a
set T of *target* items and nothing else.  Here: additive perturbations δ_t of the raw features
x_t^m of the target rows only (every other row of δ is zero, by masking the gradient and the
perturbation), each target within its own budget as in the untargeted attacks (L2: ||δ_t||_2 <=
eps_ratio·||x_t||_2; L∞: ||δ_t||_∞ <= eps_ratio·||x_t||_2/sqrt(d)), through the same hooks
(``features_replaced`` + ``score_pairs``), with FGSM (one step) or MSAP / PGD (iterations).

Objective (maximised).  For every user u of the audience (every user with a training interaction) and
every target t that u has not interacted with, the margin m(u,t) = s(u,t; x+δ) − s(u,r_u; x+δ), r_u
the item at rank K of u's *clean* ranking among non-target candidates (K = ``cutoff``, by default the
largest evaluation cutoff): the score t has to beat to enter u's top-K.  Then

    J(δ) = mean_t log Σ_u σ(m(u,t)),

the log of a smooth count of the users whose top-K list t enters (σ(m) ≈ 1[t ∈ top-K(u)]), averaged
over targets.  Why this surrogate: exposure counts top-K slots, i.e. the events m(u,t) > 0.  Its
gradient for target t is Σ_u w_ut ∇m(u,t) with w_ut ∝ σ(m)σ(−m) normalised over users, so each
target's budget goes to the users it can win (those nearest the threshold, a softmax over the
margins when all are far), not to users it cannot reach or has already won; computed in log space
it does not vanish for long-tail targets far below every threshold.  Because s(u,r_u) is recomputed
under the perturbation, raising every item's score (possible in graph models, where a target's features
reach the users' embeddings) earns nothing. The alternatives measured on the test suite's tiny VBPR-
like model (70 items, 5 long-tail targets, FGSM-L2 on all modalities at eps_ratio 1; top-10 exposure
clean 0.068): this J 0.116; the mean target score mean_u s(u,t) (the objective of Liu & Larson's
insider attack; TAaMR itself steers an image classifier towards a popular class) 0.100; mean log σ(m)
0.068 - both spend the budget on users far below the threshold, which exposure does not count.

Targets are sampled from the long tail (items outside the short head, Elliot's definition: the most
popular items that hold 80% of the training interactions; cold items are in the tail) with the seed, or
given as a list of original item ids.

Reported, clean vs attacked, per cutoff k (the evaluator's cutoffs): ``target_exposure`` = share of
all top-k slots of the audience held by targets, Σ_u |L_u^k ∩ T| / (|U| k); ``target_hr`` = share of
candidate (u,t) pairs with t in u's top-k; ``target_mean_rank`` = mean rank of t among u's
candidates (1 = first; training items, and validation items at test, are masked as by the
evaluator; full ranking, no negative sampling), and the evaluator's metrics on the split (the
collateral change).
"""
from __future__ import annotations

import time
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
import scipy.sparse as sp
import torch
from torch import Tensor
from torch.nn import functional as F

from elliot.errors import ConfigError, did_you_mean
from elliot.evaluation.attacks.perturb import FeatureAttack, fgsm, msap

#: which tensor a promotion perturbs (recorded with every result)
TARGET_ROWS = "raw item features read through model.feature(m) (x_m + δ_m), target items' rows only"


def long_tail_items(dataset) -> np.ndarray:
    """int64 indices of the items outside the short head (Elliot's 80% of training interactions)."""
    from elliot.evaluation.metrics import short_head_items

    return np.flatnonzero(~short_head_items(dataset.item_popularity())).astype(np.int64)


def resolve_targets(targets, dataset, seed: int, where: str) -> np.ndarray:
    """Sorted int64 item indices: ``targets`` items drawn from the long tail with ``seed`` (a count),
    or the items of a list of original ids."""
    if isinstance(targets, int):
        tail = long_tail_items(dataset)
        if targets > len(tail):
            raise ConfigError(f"{where}.targets: {targets} targets asked, but the long tail has only {len(tail)} "
                              "items; ask for fewer or list item ids")
        return np.sort(np.random.default_rng(seed).choice(tail, size=targets, replace=False)).astype(np.int64)
    index = {str(i): n for n, i in enumerate(dataset.item_ids)}
    unknown = [t for t in targets if t not in index]
    if unknown:
        raise ConfigError(f"{where}.targets: item id '{unknown[0]}' is not in the dataset"
                          f"{did_you_mean(unknown[0], index)} ({len(unknown)} of {len(targets)} unknown; "
                          f"ids as in the data files, e.g. {', '.join(map(str, dataset.item_ids[:3]))})")
    return np.sort(np.array([index[t] for t in targets], dtype=np.int64))


def _masks(dataset, evaluator, split: str) -> sp.csr_matrix:
    """Items never ranked for a user: training items, plus validation items at test (as the evaluator)."""
    mask = dataset.train.astype(bool)
    if split == "test" and getattr(evaluator, "mask_validation_in_test", True) and dataset.validation is not None:
        mask = mask + dataset.validation.astype(bool)
    return sp.csr_matrix(mask)


@torch.no_grad()
def target_exposure(model, dataset, evaluator, targets: np.ndarray, split: str, cutoffs: Sequence[int],
                    reference_k: Optional[int] = None, batch_size: int = 1024) -> Tuple[dict, Optional[np.ndarray]]:
    """Exposure statistics of ``targets`` over the audience (users with training data), and, with
    ``reference_k``, each audience user's item at rank ``reference_k`` among non-target candidates
    (-1 for a user with no candidate).  Returns ({"exposure": {k: v}, "hr": {k: v}, "mean_rank": v,
    "users": n, "pairs": n}, references)."""
    users = np.flatnonzero(np.diff(dataset.train.indptr) > 0).astype(np.int64)
    mask = _masks(dataset, evaluator, split)
    n_items, device = dataset.n_items, model.device
    cutoffs = sorted(int(k) for k in cutoffs)
    k_max = min(max(cutoffs), n_items)
    t_dev = torch.as_tensor(targets, device=device)
    is_target = torch.zeros(n_items, dtype=torch.bool, device=device)
    is_target[t_dev] = True
    in_lists = {k: 0 for k in cutoffs}  # (u, t) with t in u's top-k
    rank_sum, pairs = 0.0, 0
    refs = np.full(len(users), -1, dtype=np.int64) if reference_k else None
    was_training = model.training
    model.eval()
    model.prepare_scoring()
    try:
        for start in range(0, len(users), batch_size):
            batch = users[start:start + batch_size]
            scores = model.score(torch.as_tensor(batch, device=device)).float().clone()
            sub = mask[batch].tocoo()
            scores[torch.as_tensor(sub.row, device=device), torch.as_tensor(sub.col, device=device)] = -torch.inf
            ts = scores.index_select(1, t_dev)  # (B, T)
            cand = torch.isfinite(ts)
            ascending = _sorted_rows(scores)
            above = n_items - torch.searchsorted(ascending, ts.contiguous(), right=True)  # candidates strictly above
            rank_sum += float((above + 1).to(torch.float64)[cand].sum())
            pairs += int(cand.sum())
            top_scores, top = torch.topk(scores, k=k_max, dim=1)
            in_top = is_target[top] & torch.isfinite(top_scores)
            for k in cutoffs:
                in_lists[k] += int(in_top[:, :k].sum())
            if refs is not None:
                others = scores.clone()
                others[:, t_dev] = -torch.inf
                k_ref = min(int(reference_k), n_items)
                o_scores, o_top = torch.topk(others, k=k_ref, dim=1)
                n_finite = torch.isfinite(o_scores).sum(1)
                pos = (n_finite.clamp(max=k_ref) - 1).clamp(min=0)
                chosen = o_top.gather(1, pos[:, None]).squeeze(1)
                chosen = torch.where(n_finite > 0, chosen, torch.full_like(chosen, -1))
                refs[start:start + len(batch)] = chosen.cpu().numpy()
    finally:
        model.end_scoring()
        model.train(was_training)
    n_users = len(users)
    stats = {"exposure": {k: in_lists[k] / (n_users * k) if n_users else float("nan") for k in cutoffs},
             "hr": {k: in_lists[k] / pairs if pairs else float("nan") for k in cutoffs},
             "mean_rank": rank_sum / pairs if pairs else float("nan"), "users": n_users, "pairs": pairs}
    return stats, refs


def _sorted_rows(scores: Tensor) -> Tensor:
    """Each row sorted ascending (numpy's sort on CPU: several times faster there than torch.sort)."""
    if scores.device.type == "cpu":
        return torch.from_numpy(np.sort(scores.numpy(), axis=1))
    return torch.sort(scores, dim=1).values


def promotion_pairs(dataset, evaluator, targets: np.ndarray, refs: np.ndarray, split: str) -> Tuple[np.ndarray, ...]:
    """(users, targets, references) of every audience user and target the user has not interacted with."""
    users = np.flatnonzero(np.diff(dataset.train.indptr) > 0).astype(np.int64)
    keep = refs >= 0
    users, refs = users[keep], refs[keep]
    mask = _masks(dataset, evaluator, split)[users][:, targets].toarray()  # (U, T) interacted
    uu, tt = np.nonzero(~mask)
    return users[uu], targets[tt], refs[uu]


class PromotionAttack(FeatureAttack):
    """The gradient of J (module docstring) w.r.t. perturbations of the target rows of ``modalities``;
    ``loss_and_grad`` returns J (the attack *increases* it) and gradients that are zero off the targets,
    so :func:`~elliot.evaluation.attacks.perturb.fgsm` / ``msap`` perturb only target rows."""

    def __init__(self, model, modalities: Sequence[str], targets: np.ndarray, pairs: Tuple[np.ndarray, ...],
                 batch_size: int = 1 << 18):
        super().__init__(model, modalities, pairs, batch_size=batch_size)
        self.targets = torch.as_tensor(targets, device=self.device)
        # every pair's target as a slot 0..R-1 of the R targets that have pairs
        reached, slots = torch.unique(self.triples[1], return_inverse=True)
        self.n_reached, self.slots = len(reached), slots
        self.row_mask = {}
        for m, x in self.clean.items():
            keep = torch.zeros(x.shape[0], 1, dtype=x.dtype, device=x.device)
            keep[self.targets] = 1
            self.row_mask[m] = keep

    def confine(self, deltas: Dict[str, Tensor]) -> Dict[str, Tensor]:
        """δ with every non-target row set to zero."""
        return {m: d * self.row_mask[m] for m, d in deltas.items()}

    def _margins(self, sl: slice, deltas: Dict[str, Tensor]) -> Tensor:
        """m(u,t) = s(u,t) − s(u,r_u) for the pairs of ``sl`` at x + δ (δ confined to the targets)."""
        users, items, refs = self.triples
        u, t, r = users[sl], items[sl], refs[sl]
        replaced = {m: self.clean[m] + deltas[m] * self.row_mask[m] for m in self.modalities}
        with self.model.features_replaced(replaced):
            s = self.model.score_pairs(torch.cat([u, u]), torch.cat([t, r]))
        return s[: len(u)] - s[len(u):]

    def _log_counts(self, deltas: Dict[str, Tensor]) -> Tensor:
        """log S_t = log Σ_u σ(m(u,t)) per reached target slot, no gradient."""
        out = torch.full((self.n_reached,), -torch.inf, device=self.device)
        with torch.no_grad():
            for start in range(0, len(self.slots), self.batch_size):
                sl = slice(start, start + self.batch_size)
                out = _logaddexp_rows(out, self.slots[sl], F.logsigmoid(self._margins(sl, deltas)))
        return out

    def loss_and_grad(self, deltas: Dict[str, Tensor]) -> Tuple[float, Dict[str, Tensor]]:
        """J = mean_t log Σ_u σ(m(u,t)) at x + δ and its gradient w.r.t. every δ_m (target rows only).

        Chunked in two passes (log S_t first, then the gradient of Σ σ(m)/S_t, which equals ∇J); one
        pass when every pair fits in ``batch_size``."""
        n = len(self.slots)
        grads = {m: torch.zeros_like(self.clean[m]) for m in self.modalities}
        if n == 0:
            return 0.0, grads
        was_training = self.model.training
        self.model.eval()
        try:
            log_s = None if n <= self.batch_size else self._log_counts(deltas)
            value = 0.0
            for start in range(0, n, self.batch_size):
                sl = slice(start, start + self.batch_size)
                leaves = {m: deltas[m].detach().clone().requires_grad_(True) for m in self.modalities}
                with torch.enable_grad():
                    log_sig = F.logsigmoid(self._margins(sl, leaves))
                    if log_s is None:  # every pair in this chunk: J directly
                        objective = _logaddexp_rows(torch.full((self.n_reached,), -torch.inf, device=self.device),
                                                    self.slots[sl], log_sig).mean()
                        value = float(objective.detach())
                    else:
                        objective = torch.exp(log_sig - log_s[self.slots[sl]]).sum() / self.n_reached
                    found = torch.autograd.grad(objective, [leaves[m] for m in self.modalities], allow_unused=True)
                for m, g in zip(self.modalities, found):
                    if g is not None:
                        grads[m] += g
            if log_s is not None:
                value = float(log_s.mean())
        finally:
            self.model.train(was_training)
        return value, self.confine(grads)


def _logaddexp_rows(acc: Tensor, rows: Tensor, values: Tensor) -> Tensor:
    """acc[r] = log(exp(acc[r]) + Σ_{k: rows_k = r} exp(values_k)), stable, differentiable in ``values``
    (every row of ``acc`` must end up with at least one term)."""
    peak = torch.full_like(acc, -torch.inf).scatter_reduce(0, rows, values.detach(), reduce="amax")
    peak = torch.maximum(peak, acc.detach())
    safe = torch.where(torch.isfinite(peak), peak, torch.zeros_like(peak))
    total = torch.exp(acc - safe).index_add(0, rows, torch.exp(values - safe[rows]))
    return torch.log(total) + safe


def _stats_cells(clean: dict, attacked: dict, k: int) -> Dict[str, float]:
    """``target_<stat>_clean`` / ``_attacked`` / ``_drop`` ((clean - attacked) / clean: negative = rose)."""
    from elliot.evaluation.attacks.evaluate import relative_drop

    out = {}
    for stat, c, a in (("exposure", clean["exposure"][k], attacked["exposure"][k]),
                       ("hr", clean["hr"][k], attacked["hr"][k]),
                       ("mean_rank", clean["mean_rank"], attacked["mean_rank"])):
        out.update({f"target_{stat}_clean": c, f"target_{stat}_attacked": a,
                    f"target_{stat}_drop": relative_drop(c, a)})
    return out


def evaluate_promotion(model, dataset, evaluator, spec: dict, clean, seed: int, groups: List[List[str]],
                       where: str, label_of) -> List[dict]:
    """Records of one ``promotion`` entry (one per modality group, budget and cutoff); ``label_of(group)``
    names the group, ``clean`` is the clean evaluation of the split."""
    from elliot.evaluation.attacks.evaluate import attacked_records, skipped
    from elliot.evaluation.attacks.spec import attack_label, budget_label

    split = spec["split"]
    targets = resolve_targets(spec["targets"], dataset, seed, where)
    k_ref = spec["cutoff"] or max(evaluator.cutoffs)
    clean_stats, refs = target_exposure(model, dataset, evaluator, targets, split, evaluator.cutoffs, k_ref)
    pairs = promotion_pairs(dataset, evaluator, targets, refs, split)
    label = f"{attack_label(spec)}"
    records: List[dict] = []
    for group in groups:
        mod_label = label_of(group)
        missing = [m for m in group if m not in model.modalities]
        if missing:
            records.append(skipped(spec, f"model {model.name} does not use modality {missing}; it uses "
                                         f"{model.modalities}", name=f"{label}-{mod_label}"))
            continue
        attack = PromotionAttack(model, group, targets, pairs, batch_size=spec["batch_size"])
        start = time.perf_counter()
        if spec["attack"] in ("fgsm_l2", "fgsm"):
            sweep = fgsm(attack, spec["budget_kind"], spec["budgets"], "l2" if spec["attack"] == "fgsm_l2" else "linf")
        else:
            sweep = [msap(attack, spec["budget_kind"], v, spec["projection"], spec["step"], spec["nb_iter"],
                          spec["eps_iter"]) for v in spec["budgets"]]
        seconds = (time.perf_counter() - start) / max(len(sweep), 1)
        for value, deltas in zip(spec["budgets"], sweep):
            deltas = attack.confine(deltas)
            suffix = f"{mod_label}-{budget_label(spec['budget_kind'], value)}-t{len(targets)}"
            name = f"{spec['name']}-{suffix}" if spec.get("name") else f"{label}-{suffix}"
            base = {"name": name, "method": label, "modality": mod_label,
                    "budget": {"kind": "eps_ratio" if spec["budget_kind"] == "ratio" else "eps", "value": value},
                    "targets": [str(dataset.item_ids[t]) for t in targets], "reference_cutoff": k_ref,
                    "audience_pairs": int(len(pairs[0])), "target": TARGET_ROWS}
            if spec["attack"] == "msap":
                base.update(nb_iter=spec["nb_iter"], projection=spec["projection"], step=spec["step"])
            replaced = {m: attack.clean[m] + deltas[m] for m in deltas}
            with model.features_replaced(replaced):
                attacked_stats, _ = target_exposure(model, dataset, evaluator, targets, split, evaluator.cutoffs)
            out = attacked_records(model, evaluator, split, clean, replaced, base, seconds,
                                   perturbation=_perturbation(attack, deltas))
            for rec in out:
                rec["promotion"] = _stats_cells(clean_stats, attacked_stats, rec["cutoff"])
            records.extend(out)
    return records


def _perturbation(attack: PromotionAttack, deltas: Dict[str, Tensor]) -> Dict[str, dict]:
    out = {}
    for m, d in deltas.items():
        rows = d[attack.targets]
        x_norm = attack.clean[m][attack.targets].norm(dim=1)
        ok = x_norm > 0
        out[m] = {"mean_l2": float(rows.norm(dim=1).mean()) if len(rows) else 0.0,
                  "max_linf": float(d.abs().max()) if d.numel() else 0.0,
                  "mean_rel_l2": float((rows.norm(dim=1)[ok] / x_norm[ok]).mean()) if ok.any() else float("nan"),
                  "items_perturbed": int((d.norm(dim=1) > 0).sum())}
    return out
