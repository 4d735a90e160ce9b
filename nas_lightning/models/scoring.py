"""Adapt on a support set, score candidates: the one home of inference with a meta-learned predictor.

Training episodes, few-shot ranking, the epoch-end search round and ``search.py`` all score
through :func:`score`; :class:`PredictorScorer` is the same call in the form a search strategy
takes (see :class:`~nas_lightning.search.meta.Scorer`).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch

from nas_lightning.models import fused, maml

if TYPE_CHECKING:
    from nas_lightning.models.module import MetaPredictor


def standardise(ys: torch.Tensor, yq: torch.Tensor, mask_s: torch.Tensor | None = None,
                eps: float = 1e-8) -> tuple[torch.Tensor, torch.Tensor]:
    """Standardise support and query targets ``[..., N]`` with the support's mean and std only."""
    w = torch.ones_like(ys) if mask_s is None else mask_s.to(ys.dtype)
    n = w.sum(-1, keepdim=True).clamp_min(1.0)
    mean = (ys * w).sum(-1, keepdim=True) / n
    std = (((ys - mean) ** 2 * w).sum(-1, keepdim=True) / n).sqrt()
    std = torch.where(std > eps, std, torch.ones_like(std))
    return (ys - mean) / std, (yq - mean) / std


@torch.no_grad()
def score(module: MetaPredictor, support_archs: torch.Tensor, targets: torch.Tensor, candidates: torch.Tensor,
          maximise: bool = True, members: int = 1, generator: torch.Generator | None = None,
          shortlist: int | None = 1024) -> torch.Tensor:
    """Adapt ``module`` on ``k`` evaluated architectures of a task and score ``candidates``.

    Args:
        module: the meta-learned predictor.
        support_archs: architecture indices ``[k]`` (k may be 0: the meta-learned prior).
        targets: their values with the direction folded in (higher is better), ``[k]``.
        candidates: architecture indices to score ``[C]`` (the full space in one call is fine).
        maximise: the raw metric's direction (task metadata for the context encoder).
        members: 1 for the adapted predictor; more adds bootstrap resamples of the support
            (member 0 always uses the whole support), whose spread is an uncertainty signal.
        generator: drives the bootstrap draws.
        shortlist: members beyond the first score only the ``shortlist`` candidates member
            0 ranks highest, and repeat member 0's scores elsewhere (no spread there): a
            search picks among the top anyway, at a fraction of the cost of scoring the
            whole space with every member. ``None`` scores every candidate with every member.

    Returns:
        Scores ``[members, C]``, higher is better.
    """
    dev = module.codes.device
    support_archs, candidates = support_archs.to(dev).long(), candidates.to(dev).long()
    k = len(support_archs)
    y = targets.to(dev).float()
    rows = [torch.arange(k, device=dev)]
    for _ in range(members - 1):
        rows.append(torch.randint(k, (k,), generator=generator).to(dev) if k else rows[0])
    idx = torch.stack(rows)
    sup, ys = support_archs[idx], y[idx]
    ys, _ = standardise(ys, ys)
    flag = torch.full((members,), bool(maximise), device=dev)
    if k >= 2:
        with torch.enable_grad():
            fast, z = module.adapt(sup, ys, flag, meta_graph=False)
        fast = {name: v.detach() for name, v in fast.items()}
        z = None if z is None else z.detach()
    else:
        xs = module.encode(sup) if k else torch.zeros(members, 0, module.codes.shape[1], device=dev)
        ys = ys if k else torch.zeros(members, 0, device=dev)
        z = module.context(xs, ys, torch.ones_like(ys, dtype=torch.bool), flag)
        fast = maml.broadcast(module.params(), members)
    if shortlist is None or members == 1 or len(candidates) <= shortlist:
        return forward_members(module, fast, z, candidates)
    first = forward_members(module, {n: v[:1] for n, v in fast.items()}, None if z is None else z[:1], candidates)
    top = torch.topk(first[0], shortlist).indices
    rest = forward_members(module, {n: v[1:] for n, v in fast.items()}, None if z is None else z[1:], candidates[top])
    others = first.repeat(members - 1, 1)
    others[:, top] = rest
    return torch.cat([first, others])


@torch.no_grad()
def score_sets(module: MetaPredictor, supports: torch.Tensor, targets: torch.Tensor, candidates: torch.Tensor,
               maximise: bool = True) -> torch.Tensor:
    """Adapt once per row of ``supports [M, k]`` (values ``targets [M, k]``, higher is better) in one
    batch and score ``candidates [C]`` with each: ``[M, C]`` in the units of ``targets`` (each row's
    standardisation undone), so rows fitted on different sets are comparable."""
    dev = module.codes.device
    sup, y = supports.to(dev).long(), targets.to(dev).float()
    mean, std = y.mean(-1, keepdim=True), y.std(-1, unbiased=False, keepdim=True)
    std = torch.where(std > 1e-8, std, torch.ones_like(std))
    ys = (y - mean) / std
    flag = torch.full((len(sup),), bool(maximise), device=dev)
    with torch.enable_grad():
        fast, z = module.adapt(sup, ys, flag, meta_graph=False)
    fast = {name: v.detach() for name, v in fast.items()}
    out = forward_members(module, fast, None if z is None else z.detach(), candidates.to(dev).long())
    return out * std + mean


def forward_members(module: MetaPredictor, fast: maml.Params, z: torch.Tensor | None,
                    candidates: torch.Tensor) -> torch.Tensor:
    """Scores ``[M, C]`` of candidate indices under per-member parameters ``{name: [M, ...]}``.

    Members share the inputs: one plain forward each, never an ``[M, C, D]`` copy. An MLP on
    a binary encoding (one-hot, path) takes its first layer as a sum of the weight columns
    of each candidate's set features (``embedding_bag``), not a dense product.
    """
    spec = fused.mlp_spec(module.net)
    active = _active_features(module) if spec is not None else None
    bags = active[candidates] if active is not None else None
    x = module.encode(candidates) if bags is None else None
    out = []
    for m in range(len(next(iter(fast.values())))):
        params, zm = {n: v[m] for n, v in fast.items()}, None if z is None else z[m]
        if spec is None:
            out.append(torch.func.functional_call(module.net, params, (x, *([] if zm is None else [zm]))))
        else:
            out.append(fused.forward_single(spec, params, zm, x, bags))
    return torch.stack(out)


def _active_features(module: MetaPredictor) -> torch.Tensor | None:
    """Positions ``[size, n]`` of the set features of every code, if all codes are binary
    with the same number ``n`` of ones (else ``None``); computed once per device."""
    cached = getattr(module, "_active_cache", None)
    if cached is not None and cached[0] == module.codes.device:
        return cached[1]
    ones = module.codes != 0
    counts = ones.sum(-1)
    binary = bool((module.codes[ones] == 1).all()) and bool((counts == counts[0]).all())
    active = ones.nonzero()[:, 1].view(len(module.codes), -1) if binary else None
    module._active_cache = (module.codes.device, active)
    return active


@dataclass(frozen=True)
class FineTuneOptions:
    """The ``pretrain`` baseline: a multi-task pretrained predictor fine-tuned on what was measured.

    Args:
        ckpt: a checkpoint of ``configs/pretrain.yaml`` (unset: no ``pretrain`` baseline).
        steps: SGD steps on the measured architectures.
        lr: SGD learning rate.
    """

    ckpt: str | None = None
    steps: int = 20
    lr: float = 0.03


def finetuned(module: MetaPredictor, steps: int, lr: float) -> MetaPredictor:
    """A copy of ``module`` that adapts by plain fine-tuning: ``steps`` first-order SGD steps of
    learning rate ``lr`` on the support, from its weights. With a checkpoint trained without an
    inner loop (``configs/pretrain.yaml``: multi-task pretraining on the same tables) this is the
    pretrain + fine-tune baseline that isolates what MAML adds."""
    out = copy.deepcopy(module)
    out.hparams.inner_steps, out.hparams.first_order = steps, True
    with torch.no_grad():
        for p in out.inner_lrs.values():
            p.fill_(lr)
    return out


class PredictorScorer:
    """A search strategy's scorer: adapts a :class:`MetaPredictor` on what the oracle answered
    and scores candidates (see :class:`~nas_lightning.search.meta.Scorer`).

    Args:
        module: the meta-learned predictor.
        maximise: the target's direction (metadata for the predictor's context).
        members: bootstrap members (their spread drives exploration).
    """

    def __init__(self, module: MetaPredictor, maximise: bool, members: int = 8) -> None:
        self.module, self.maximise, self.members = module, maximise, members

    def __call__(self, support_archs: torch.Tensor, targets: torch.Tensor, candidates: torch.Tensor,
                 generator: torch.Generator) -> torch.Tensor:
        return score(self.module, support_archs, targets, candidates, self.maximise, self.members, generator).cpu()
