"""A fused MAML path for :class:`MLPPredictor`: no ``vmap``, no ``functional_call``.

Per-task parameters carry a leading task dimension ``[T, ...]``; parameters shared by every
task (the meta-parameters before the first inner step, or a stride-0 broadcast of them) keep
their own shape, so the first forward is one plain GEMM over all tasks' rows. Per-task layers
are ``torch.baddbmm`` calls. The inner gradient is written out by hand (backpropagation through
the linear layers, ReLUs, FiLM and head), which yields every task's gradient from one batched
pass; for second-order MAML those expressions are themselves differentiated by autograd, so the
meta-gradient is exactly MAML's (the tests compare it with a per-task autograd loop).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
from torch.nn import functional as F

from nas_lightning.models.predictors import MLPPredictor

Params = dict[str, torch.Tensor]


@dataclass(frozen=True)
class MLPSpec:
    """Parameter names of an :class:`MLPPredictor`, in forward order."""

    linears: tuple[str, ...]  # the body's Linear layers, each followed by a ReLU
    film: str | None  # the FiLM projection (None: no context conditioning)
    head: str


def mlp_spec(model: nn.Module) -> MLPSpec | None:
    """The fused layout of ``model`` if it is a plain :class:`MLPPredictor`, else ``None``."""
    if type(model) is not MLPPredictor:  # a subclass may change the forward
        return None
    blocks = list(model.body)
    linears = tuple(f"body.{i}" for i in range(0, len(blocks), 2))
    for i, b in enumerate(blocks):
        if not isinstance(b, nn.Linear if i % 2 == 0 else nn.ReLU):
            return None
    if len(blocks) % 2:
        return None
    return MLPSpec(linears, "film.proj" if model.film is not None else None, "head")


def _shared(t: torch.Tensor, ndim: int) -> torch.Tensor:
    """A per-task tensor that is a stride-0 broadcast of one tensor becomes that tensor."""
    if t.dim() == ndim + 1 and t.stride(0) == 0:
        return t.select(0, 0)
    return t


def _linear(h: torch.Tensor, w: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """``h [T, N, in]`` through a shared (``[out, in]``) or per-task (``[T, out, in]``) weight and a
    shared (``[out]``) or per-task (``[T, out]``) bias."""
    if w.dim() == 2:
        return F.linear(h, w, b) if b.dim() == 1 else F.linear(h, w) + b.unsqueeze(1)
    return torch.baddbmm(b if b.dim() == 1 else b.unsqueeze(1), h, w.transpose(1, 2))


def _params(spec: MLPSpec, params: Params) -> list[tuple[str, torch.Tensor, torch.Tensor]]:
    names = [*spec.linears, *([spec.film] if spec.film else []), spec.head]
    return [(n, _shared(params[f"{n}.weight"], 2), _shared(params[f"{n}.bias"], 1)) for n in names]


def forward(spec: MLPSpec, params: Params, x: torch.Tensor, z: torch.Tensor | None = None,
            keep: bool = False) -> tuple[torch.Tensor, list | None]:
    """Scores ``[T, N]`` of inputs ``x [T, N, D]`` (contexts ``z [T, C]``).

    Returns:
        The scores and, with ``keep``, what :func:`grads` needs.
    """
    layers = _params(spec, params)
    cache: list = []
    h = x
    for _, w, b in layers[: len(spec.linears)]:
        a = _linear(h, w, b)
        cache.append((h, a))
        h = torch.relu(a)
    film = None
    if spec.film is not None and z is not None:
        _, w, b = layers[len(spec.linears)]
        gamma, beta = _linear(z.unsqueeze(1), w, b).squeeze(1).chunk(2, -1)
        film = (h, gamma)
        h = torch.addcmul(beta.unsqueeze(1), h, 1 + gamma.unsqueeze(1))
    _, w, b = layers[-1]
    pred = _linear(h, w, b).squeeze(-1)
    return pred, ([cache, film, h] if keep else None)


class _Step(torch.autograd.Function):
    """``p - lr * g`` (``p``, ``lr`` shared or per task, ``g`` per task) in one pass, with a
    backward that makes the fewest passes over the per-task tensors. Its backward is built from
    differentiable operations, so it can itself be differentiated."""

    @staticmethod
    def forward(ctx, p: torch.Tensor, lr: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
        ctx.save_for_backward(lr, g)
        ctx.shapes = (p.shape, lr.shape)
        return torch.addcmul(p, lr, g, value=-1.0)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        lr, g = ctx.saved_tensors
        p_shape, lr_shape = ctx.shapes
        need_p, need_lr, need_g = ctx.needs_input_grad
        gp = grad.sum_to_size(p_shape) if need_p else None
        glr = (grad * g).sum_to_size(lr_shape).neg() if need_lr else None
        gg = grad * lr.neg() if need_g else None
        return gp, glr, gg


def step(p: torch.Tensor, lr: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
    """One inner SGD step ``p - lr * g`` for per-task gradients ``g [T, ...]`` (any layout:
    matrices are updated input-major when ``g`` is, see :func:`_outer`)."""
    if g.dim() >= 3 and p.dim() >= 2:
        pt, gt = p.transpose(-1, -2), g.transpose(-1, -2)
        pt = pt.contiguous() if p.dim() == 2 else pt
        lrt = lr.transpose(-1, -2).contiguous() if lr.dim() == 2 else lr
        return _Step.apply(pt, lrt, gt).transpose(-1, -2)
    return _Step.apply(p, lr, g)


def _outer(d: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
    """Per-task weight gradient ``d^T h`` ``[T, out, in]``, stored input-major (a transposed
    view of a contiguous ``[T, in, out]``, the layout the batched products read and write)."""
    return torch.bmm(h.transpose(1, 2), d).transpose(1, 2)


def loss_grad(pred: torch.Tensor, target: torch.Tensor, kind: str,
              mask: torch.Tensor | None = None) -> torch.Tensor:
    """Gradient in ``pred [T, N]`` of the summed per-episode losses of ``maml.episode_loss``.

    Written out (no autograd), so that second-order MAML needs no double backward.
    """
    w = None if mask is None else mask.to(pred.dtype)
    if kind == "mse":
        n = float(pred.shape[-1]) if w is None else w.sum(-1, keepdim=True).clamp_min(1.0)
        diff = pred - target
        return 2.0 * (diff if w is None else diff * w) / n
    if kind == "rank":
        better = target.unsqueeze(-1) > target.unsqueeze(-2)
        if mask is not None:
            better = better & (mask.unsqueeze(-1) & mask.unsqueeze(-2))
        bw = better.to(pred.dtype)
        s = torch.sigmoid(pred.unsqueeze(-2) - pred.unsqueeze(-1)) * bw  # d softplus(-(p_i - p_j)) / d p_j
        return (s.sum(-2) - s.sum(-1)) / bw.sum((-1, -2)).clamp_min(1.0).unsqueeze(-1)
    raise ValueError(f"unknown loss {kind!r}")


def grads(spec: MLPSpec, params: Params, z: torch.Tensor | None, cache: list,
          dpred: torch.Tensor) -> Params:
    """Per-task gradients ``{name: [T, ...]}`` of a loss whose gradient in the scores is ``dpred``."""
    layers = {n: (w, b) for n, w, b in _params(spec, params)}
    acts, film, h = cache
    out: Params = {}
    d = dpred.unsqueeze(-1)  # [T, N, 1]
    out[f"{spec.head}.weight"] = _outer(d, h)
    out[f"{spec.head}.bias"] = d.sum(1)
    dh = d * layers[spec.head][0]  # [T, N, 1] * [(T,) 1, H]
    if film is not None:
        h_in, gamma = film
        dgb = torch.cat([(dh * h_in).sum(1), dh.sum(1)], -1)  # d gamma, d beta: [T, 2H]
        out[f"{spec.film}.weight"] = (z.unsqueeze(2) * dgb.unsqueeze(1)).transpose(1, 2)
        out[f"{spec.film}.bias"] = dgb
        dh = dh * (1 + gamma.unsqueeze(1))
    for i in reversed(range(len(spec.linears))):
        name = spec.linears[i]
        h_in, a = acts[i]
        da = torch.ops.aten.threshold_backward(dh, a, 0.0)
        out[f"{name}.weight"] = _outer(da, h_in)
        out[f"{name}.bias"] = da.sum(1)
        if i:
            w = layers[name][0]
            dh = da @ w if w.dim() == 2 else torch.bmm(da, w)
    return out


@torch.no_grad()
def forward_single(spec: MLPSpec, params: Params, z: torch.Tensor | None, x: torch.Tensor | None = None,
                   bags: torch.Tensor | None = None) -> torch.Tensor:
    """Scores ``[C]`` under one set of parameters (no task dimension; inference only).

    The FiLM scale and shift are folded into the head, and the ReLUs run in place.

    Args:
        x: encoded candidates ``[C, D]``; or
        bags: for binary encodings, the positions ``[C, n]`` of each candidate's ones: the first
            layer is then a sum of ``n`` weight columns (``embedding_bag``), not a dense product.
    """
    first, *rest = spec.linears
    w, b = params[f"{first}.weight"], params[f"{first}.bias"]
    h = F.embedding_bag(bags, w.t().contiguous(), mode="sum").add_(b) if bags is not None else F.linear(x, w, b)
    h.relu_()
    for name in rest:
        h = torch.addmm(params[f"{name}.bias"], h, params[f"{name}.weight"].t()).relu_()
    head, bias = params[f"{spec.head}.weight"][0], params[f"{spec.head}.bias"]
    if spec.film is not None and z is not None:  # (h (1 + g) + s) . v = h . (v (1 + g)) + s . v
        gamma, beta = F.linear(z, params[f"{spec.film}.weight"], params[f"{spec.film}.bias"]).chunk(2, -1)
        head, bias = head * (1 + gamma), bias + beta @ head
    return torch.mv(h, head).add_(bias)
