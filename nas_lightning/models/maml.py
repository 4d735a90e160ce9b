"""MAML as pure functions over parameter dicts (after learn2learn's small API, in ``torch.func`` form).

The inner loops of a meta-batch run batched across tasks. For a plain :class:`MLPPredictor`
the fused path of :mod:`nas_lightning.models.fused` applies stacked per-task weights with
batched matrix products and writes the inner gradient out by hand. Any other predictor takes
the generic path: the meta-parameters are broadcast to ``[T, ...]`` and the predictor is applied
with ``torch.func.vmap(functional_call)``, so one autograd call yields every task's inner
gradient (tasks are independent, so the gradient of the summed loss with respect to the
broadcast parameters is exactly the per-task gradient).
"""

from __future__ import annotations

import torch
from torch import nn
from torch.func import functional_call, vmap

from nas_lightning.models import fused

Params = dict[str, torch.Tensor]
LOSSES = ("mse", "rank")


def episode_loss(pred: torch.Tensor, target: torch.Tensor, kind: str = "mse",
                 mask: torch.Tensor | None = None) -> torch.Tensor:
    """Per-episode loss over the last dimension.

    Args:
        pred: predictions ``[..., N]``.
        target: standardised targets ``[..., N]`` (higher is better).
        kind: ``"mse"`` or ``"rank"`` (pairwise logistic loss over ordered pairs).
        mask: optional ``[..., N]`` boolean of valid entries.

    Returns:
        Loss per episode, ``[...]``.
    """
    if kind == "mse":
        if mask is None:
            return ((pred - target) ** 2).mean(-1)
        w = mask.to(pred.dtype)
        return ((pred - target) ** 2 * w).sum(-1) / w.sum(-1).clamp_min(1.0)
    if kind == "rank":  # softplus(-(p_i - p_j)) over the pairs where i is better than j
        better = target.unsqueeze(-1) > target.unsqueeze(-2)
        if mask is not None:
            better = better & (mask.unsqueeze(-1) & mask.unsqueeze(-2))
        bw = better.to(pred.dtype)
        pairs = nn.functional.softplus(pred.unsqueeze(-2) - pred.unsqueeze(-1)) * bw
        return pairs.sum((-1, -2)) / bw.sum((-1, -2)).clamp_min(1.0)
    raise ValueError(f"unknown loss {kind!r}; choose one of {', '.join(LOSSES)}")


def batched_forward(model: nn.Module, params: Params, x: torch.Tensor,
                    z: torch.Tensor | None = None) -> torch.Tensor:
    """Apply ``model`` with per-task parameters ``{name: [T, ...]}`` to inputs ``[T, N, ...]``
    under optional per-task contexts ``z [T, C]``."""
    spec = fused.mlp_spec(model)
    if spec is not None:
        return fused.forward(spec, params, x, z)[0]
    if z is None:
        return vmap(lambda p, xi: functional_call(model, p, (xi,)))(params, x)
    return vmap(lambda p, xi, zi: functional_call(model, p, (xi, zi)))(params, x, z)


def broadcast(params: Params, tasks: int) -> Params:
    """Meta-parameters ``{name: [...]}`` broadcast to ``{name: [T, ...]}`` (still in the graph)."""
    return {k: v.unsqueeze(0).expand(tasks, *v.shape) for k, v in params.items()}


def adapt(model: nn.Module, params: Params, inner_lrs: Params, x: torch.Tensor, y: torch.Tensor,
          steps: int, first_order: bool = False, loss: str = "mse",
          mask: torch.Tensor | None = None, z: torch.Tensor | None = None) -> Params:
    """Inner loop: ``steps`` SGD steps on the support loss of every task at once.

    Args:
        model: the predictor (used only for its forward; its own parameters are ignored).
        params: meta-parameters ``{name: [...]}``.
        inner_lrs: per-parameter learning rates, same shapes as ``params`` (Meta-SGD) or scalars.
        x: encoded support sets ``[T, K, ...]``; y: targets ``[T, K]``.
        steps: number of inner steps (0 returns the broadcast meta-parameters).
        first_order: drop second-order terms (inner gradients are treated as constants).
        loss: inner loss kind; mask: optional ``[T, K]`` valid entries.
        z: optional task contexts ``[T, C]`` (held fixed in the inner loop).

    Returns:
        Adapted per-task parameters ``{name: [T, ...]}``.
    """
    spec = fused.mlp_spec(model)
    if spec is not None:
        return _adapt_fused(spec, params, inner_lrs, x, y, steps, first_order, loss, mask, z)
    names = list(params)
    fast = broadcast(params, x.shape[0])
    for _ in range(steps):
        needs = [not t.requires_grad for t in fast.values()]
        if any(needs):  # adapting without a meta-graph (evaluation): track gradients locally
            fast = {k: v.detach().requires_grad_() for k, v in fast.items()}
        total = episode_loss(batched_forward(model, fast, x, z), y, loss, mask).sum()
        grads = torch.autograd.grad(total, [fast[k] for k in names], create_graph=not first_order)
        fast = {k: fast[k] - inner_lrs[k] * g for k, g in zip(names, grads)}
    return fast


def _adapt_fused(spec: fused.MLPSpec, params: Params, inner_lrs: Params, x: torch.Tensor, y: torch.Tensor,
                 steps: int, first_order: bool, loss: str, mask: torch.Tensor | None,
                 z: torch.Tensor | None) -> Params:
    """:func:`adapt` for an :class:`MLPPredictor`; the first step uses the shared meta-parameters."""
    fast = params
    for _ in range(steps):
        second = not first_order and torch.is_grad_enabled()
        with torch.set_grad_enabled(second):
            cur = fast if second else {k: v.detach() for k, v in fast.items()}
            zc = z if second or z is None else z.detach()
            pred, cache = fused.forward(spec, cur, x, zc, keep=True)
            grads = fused.grads(spec, cur, zc, cache, fused.loss_grad(pred, y, loss, mask))
        fast = {k: fused.step(fast[k], inner_lrs[k], grads[k]) for k in params}
    return fast if steps else broadcast(params, x.shape[0])


def meta_loss(model: nn.Module, params: Params, inner_lrs: Params, xs: torch.Tensor, ys: torch.Tensor,
              xq: torch.Tensor, yq: torch.Tensor, steps: int, first_order: bool = False,
              loss: str = "mse", mask_s: torch.Tensor | None = None,
              mask_q: torch.Tensor | None = None, z: torch.Tensor | None = None) -> torch.Tensor:
    """Query loss after adaptation, averaged over the meta-batch (differentiable in ``params``)."""
    fast = adapt(model, params, inner_lrs, xs, ys, steps, first_order, loss, mask_s, z)
    return episode_loss(batched_forward(model, fast, xq, z), yq, loss, mask_q).mean()


def meta_loss_loop(model: nn.Module, params: Params, inner_lrs: Params, xs: torch.Tensor, ys: torch.Tensor,
                   xq: torch.Tensor, yq: torch.Tensor, steps: int, first_order: bool = False,
                   loss: str = "mse", z: torch.Tensor | None = None) -> torch.Tensor:
    """The same meta-loss as :func:`meta_loss`, by a plain per-task Python loop (learn2learn style).

    Kept simple on purpose: it is the reference the batched version is tested and benchmarked
    against.
    """
    losses = []
    for t in range(xs.shape[0]):
        ctx = () if z is None else (z[t],)
        fast = dict(params)
        for _ in range(steps):
            fast = {k: v if v.requires_grad else v.detach().requires_grad_() for k, v in fast.items()}
            inner = episode_loss(functional_call(model, fast, (xs[t], *ctx)), ys[t], loss)
            grads = torch.autograd.grad(inner, list(fast.values()), create_graph=not first_order)
            fast = {k: v - inner_lrs[k] * g for (k, v), g in zip(fast.items(), grads)}
        losses.append(episode_loss(functional_call(model, fast, (xq[t], *ctx)), yq[t], loss))
    return torch.stack(losses).mean()
