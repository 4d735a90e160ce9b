"""MAML as pure functions: meta-gradients against closed forms, batched against per-task loops,
and the episode losses' invariances."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.testing import assert_close

from nas_lightning.models import maml
from nas_lightning.models.predictors import GraphPredictor, MLPPredictor

DT = torch.float64


class Linear(nn.Module):
    """``y = x @ w + b``: its MSE loss is quadratic, so MAML has a closed form."""

    def __init__(self, d: int = 3) -> None:
        super().__init__()
        self.w = nn.Parameter(torch.zeros(d, dtype=DT))
        self.b = nn.Parameter(torch.zeros((), dtype=DT))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x @ self.w + self.b


# -- closed forms for the linear model (no autograd) ------------------------------------------
def _aug(x: torch.Tensor) -> torch.Tensor:
    return torch.cat([x, torch.ones(*x.shape[:-1], 1, dtype=x.dtype)], -1)


def _grad(theta: torch.Tensor, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Gradient of ``1/K ||X_a theta - y||^2``: ``2/K X_a^T (X_a theta - y)``."""
    xa = _aug(x)
    return 2.0 / len(y) * xa.T @ (xa @ theta - y)


def _hess(x: torch.Tensor) -> torch.Tensor:
    xa = _aug(x)
    return 2.0 / len(x) * xa.T @ xa


def _loss(theta: torch.Tensor, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return ((_aug(x) @ theta - y) ** 2).mean()


def _hand(theta, alpha, xs, ys, xq, yq, steps, first_order):
    """Per-task meta-loss, meta-gradient in theta and in alpha (Meta-SGD, vector alpha)."""
    a = torch.diag(alpha)
    eye = torch.eye(len(theta), dtype=DT)
    losses, g_theta, g_alpha = [], [], []
    for t in range(len(xs)):
        h = _hess(xs[t])
        th, inner_grads = theta.clone(), []
        for _ in range(steps):
            g = _grad(th, xs[t], ys[t])
            inner_grads.append(g)
            th = th - alpha * g
        gq = _grad(th, xq[t], yq[t])
        losses.append(_loss(th, xq[t], yq[t]))
        # theta_{j+1} = (I - A H) theta_j + const, so d theta_n / d theta = (I - A H)^n
        jac = eye if first_order else torch.linalg.matrix_power(eye - a @ h, steps)
        g_theta.append(jac.T @ gq)
        if steps == 1:  # d theta' / d alpha = -diag(g_support(theta)) in both orders
            g_alpha.append(-gq * inner_grads[0])
    mean = lambda xs_: torch.stack(xs_).mean(0)  # noqa: E731
    return mean(losses), mean(g_theta), (mean(g_alpha) if g_alpha else None)


@pytest.fixture
def linear_problem():
    g = torch.Generator().manual_seed(3)
    tasks, k, q, d = 2, 6, 5, 3
    model = Linear(d)
    theta = torch.randn(d + 1, generator=g, dtype=DT)
    with torch.no_grad():
        model.w.copy_(theta[:d])
        model.b.copy_(theta[d])
    xs = torch.randn(tasks, k, d, generator=g, dtype=DT)
    xq = torch.randn(tasks, q, d, generator=g, dtype=DT)
    true_w = torch.randn(tasks, d, generator=g, dtype=DT)
    ys = torch.einsum("tkd,td->tk", xs, true_w) + 0.1 * torch.randn(tasks, k, generator=g, dtype=DT)
    yq = torch.einsum("tkd,td->tk", xq, true_w) + 0.1 * torch.randn(tasks, q, generator=g, dtype=DT)
    # distinct per-entry learning rates, so a wrong elementwise product would show
    alpha = torch.tensor([0.05, 0.1, 0.02, 0.07], dtype=DT)
    return model, theta, alpha, xs, ys, xq, yq


def _meta(model, alpha, data, steps, first_order, lr_grad=False):
    xs, ys, xq, yq = data
    lrs = {"w": alpha[:-1].clone().requires_grad_(lr_grad), "b": alpha[-1].clone().requires_grad_(lr_grad)}
    params = dict(model.named_parameters())
    model.zero_grad()
    loss = maml.meta_loss(model, params, lrs, xs, ys, xq, yq, steps, first_order, "mse")
    wrt = [params["w"], params["b"]] + ([lrs["w"], lrs["b"]] if lr_grad else [])
    grads = torch.autograd.grad(loss, wrt)
    g_theta = torch.cat([grads[0], grads[1].reshape(1)])
    g_alpha = torch.cat([grads[2], grads[3].reshape(1)]) if lr_grad else None
    return loss, g_theta, g_alpha


@pytest.mark.parametrize("first_order", [False, True])
@pytest.mark.parametrize("steps", [1, 2])
def test_linear_meta_gradient_closed_form(linear_problem, steps: int, first_order: bool) -> None:
    model, theta, alpha, xs, ys, xq, yq = linear_problem
    loss, g_theta, _ = _meta(model, alpha, (xs, ys, xq, yq), steps, first_order)
    ref_loss, ref_g, _ = _hand(theta, alpha, xs, ys, xq, yq, steps, first_order)
    assert_close(loss, ref_loss)
    assert_close(g_theta, ref_g)


def test_second_order_differs_from_first_order(linear_problem) -> None:
    """The Hessian term is not negligible here, so the closed-form checks can tell the orders apart."""
    model, theta, alpha, xs, ys, xq, yq = linear_problem
    _, g2, _ = _meta(model, alpha, (xs, ys, xq, yq), 1, False)
    _, g1, _ = _meta(model, alpha, (xs, ys, xq, yq), 1, True)
    assert (g2 - g1).abs().max() > 1e-3


def test_two_steps_against_composed_function(linear_problem) -> None:
    """Second-order, 2 steps: the meta-gradient equals the gradient of the explicitly composed
    (closed-form) function, from torch.autograd.functional on pure tensor code."""
    model, theta, alpha, xs, ys, xq, yq = linear_problem

    def composed(th: torch.Tensor) -> torch.Tensor:
        out = []
        for t in range(len(xs)):
            cur = th
            for _ in range(2):
                cur = cur - alpha * _grad(cur, xs[t], ys[t])
            out.append(_loss(cur, xq[t], yq[t]))
        return torch.stack(out).mean()

    ref = torch.autograd.functional.vjp(composed, theta, torch.ones((), dtype=DT))[1]
    _, g_theta, _ = _meta(model, alpha, (xs, ys, xq, yq), 2, False)
    assert_close(g_theta, ref)


@pytest.mark.parametrize("first_order", [False, True])
def test_meta_sgd_learning_rate_gradient(linear_problem, first_order: bool) -> None:
    """d meta-loss / d alpha = -grad L_query(theta') * grad L_support(theta), elementwise."""
    model, theta, alpha, xs, ys, xq, yq = linear_problem
    _, _, g_alpha = _meta(model, alpha, (xs, ys, xq, yq), 1, first_order, lr_grad=True)
    _, _, ref = _hand(theta, alpha, xs, ys, xq, yq, 1, first_order)
    assert_close(g_alpha, ref)


def test_zero_steps_is_the_prior(linear_problem) -> None:
    model, theta, alpha, xs, ys, xq, yq = linear_problem
    lrs = {"w": alpha[:-1], "b": alpha[-1]}
    fast = maml.adapt(model, dict(model.named_parameters()), lrs, xs, ys, 0)
    assert fast["w"].shape == (len(xs), 3) and fast["b"].shape == (len(xs),)
    assert_close(fast["w"], theta[:3].expand(len(xs), 3))
    assert_close(fast["b"], theta[3].expand(len(xs)))


# -- batched inner loops equal the per-task loop -----------------------------------------------
def _predictor(kind: str, context: int) -> nn.Module:
    torch.manual_seed(0)
    net = MLPPredictor(16, 2, "onehot", context) if kind == "mlp" else GraphPredictor(8, 2, "graph", context)
    net = net.double()
    with torch.no_grad():  # FiLM starts at zero; randomise everything so the context matters
        for p in net.parameters():
            p.copy_(0.3 * torch.randn_like(p))
    return net


@pytest.mark.parametrize("loss", ["mse", "rank"])
@pytest.mark.parametrize("steps", [1, 3])
@pytest.mark.parametrize("first_order", [False, True])
@pytest.mark.parametrize("context", [0, 4])
@pytest.mark.parametrize("kind", ["mlp", "gcn"])
def test_batched_equals_loop(kind: str, context: int, first_order: bool, steps: int, loss: str) -> None:
    net = _predictor(kind, context)
    g = torch.Generator().manual_seed(1)
    tasks, k, q = 3, 5, 6
    idx = torch.randint(15625, (tasks, k + q), generator=g)
    x = net.encode(idx).to(DT)
    xs, xq = x[:, :k], x[:, k:]
    ys = torch.randn(tasks, k, generator=g, dtype=DT)
    yq = torch.randn(tasks, q, generator=g, dtype=DT)
    z = torch.randn(tasks, context, generator=g, dtype=DT, requires_grad=True) if context else None
    params = dict(net.named_parameters())
    lrs = {n: torch.full_like(p, 0.05).add_(0.05 * torch.rand(p.shape, generator=g, dtype=DT)).requires_grad_()
           for n, p in params.items()}
    wrt = list(params.values()) + list(lrs.values()) + ([z] if z is not None else [])

    batched = maml.meta_loss(net, params, lrs, xs, ys, xq, yq, steps, first_order, loss, z=z)
    looped = maml.meta_loss_loop(net, params, lrs, xs, ys, xq, yq, steps, first_order, loss, z=z)
    assert_close(batched, looped)
    gb = torch.autograd.grad(batched, wrt, allow_unused=True)
    gl = torch.autograd.grad(looped, wrt, allow_unused=True)
    for a, b in zip(gb, gl):
        assert (a is None) == (b is None)
        if a is not None:
            assert_close(a, b)
    assert any(a is not None and a.abs().sum() > 0 for a in gb)  # something was differentiated


def test_meta_loss_masks_equal_subsetting() -> None:
    """Masked support/query entries are ignored: same loss as the per-task loop on the valid part."""
    net = _predictor("mlp", 0)
    g = torch.Generator().manual_seed(2)
    k, q = 5, 6
    x = net.encode(torch.randint(15625, (1, k + q), generator=g)).to(DT)
    ys, yq = torch.randn(1, k, generator=g, dtype=DT), torch.randn(1, q, generator=g, dtype=DT)
    ms = torch.tensor([[True, True, False, True, True]])
    mq = torch.tensor([[True, False, True, True, False, True]])
    params = dict(net.named_parameters())
    lrs = {n: torch.full_like(p, 0.1) for n, p in params.items()}
    masked = maml.meta_loss(net, params, lrs, x[:, :k], ys, x[:, k:], yq, 2, False, "rank", ms, mq)
    sub = maml.meta_loss_loop(net, params, lrs, x[:, :k][ms][None], ys[ms][None], x[:, k:][mq][None], yq[mq][None], 2, False, "rank")
    assert_close(masked, sub)


# -- episode losses ------------------------------------------------------------------------------
def test_mse_mask_ignores_masked_entries() -> None:
    g = torch.Generator().manual_seed(0)
    pred, target = torch.randn(4, 7, generator=g, dtype=DT), torch.randn(4, 7, generator=g, dtype=DT)
    mask = torch.rand(4, 7, generator=g) > 0.4
    mask[:, 0] = True
    loss = maml.episode_loss(pred, target, "mse", mask)
    pred2 = torch.where(mask, pred, pred + 100.0)
    target2 = torch.where(mask, target, torch.full_like(target, float("1e6")))
    assert_close(maml.episode_loss(pred2, target2, "mse", mask), loss)
    for e in range(4):
        assert_close(loss[e], ((pred[e][mask[e]] - target[e][mask[e]]) ** 2).mean())


def test_rank_mask_ignores_masked_entries() -> None:
    g = torch.Generator().manual_seed(4)
    pred, target = torch.randn(3, 8, generator=g, dtype=DT), torch.randn(3, 8, generator=g, dtype=DT)
    mask = torch.ones(3, 8, dtype=torch.bool)
    mask[:, 5:] = False
    full = maml.episode_loss(pred[:, :5], target[:, :5], "rank")
    assert_close(maml.episode_loss(pred, target, "rank", mask), full)
    pred2, target2 = torch.where(mask, pred, 10 * pred + 3), torch.where(mask, target, -target - 50)
    assert_close(maml.episode_loss(pred2, target2, "rank", mask), full)


def test_rank_invariances() -> None:
    g = torch.Generator().manual_seed(5)
    pred, target = torch.randn(3, 9, generator=g, dtype=DT), torch.randn(3, 9, generator=g, dtype=DT)
    base = maml.episode_loss(pred, target, "rank")
    for f in (torch.exp, lambda t: t ** 3, lambda t: 7.0 * t - 2.0, torch.sigmoid):
        assert_close(maml.episode_loss(pred, f(target), "rank"), base)
    assert_close(maml.episode_loss(pred + 3.5, target, "rank"), base)
    # but not invariant to an order-reversing transformation of the targets
    assert (maml.episode_loss(pred, -target, "rank") - base).abs().max() > 1e-3


def test_rank_loss_values() -> None:
    g = torch.Generator().manual_seed(6)
    target = torch.randn(2, 10, generator=g, dtype=DT)
    ranks = target.argsort(-1).argsort(-1).to(DT)
    assert maml.episode_loss(100.0 * ranks, target, "rank").max() < 1e-10
    assert maml.episode_loss(-100.0 * ranks, target, "rank").min() > 50.0
    assert_close(maml.episode_loss(torch.zeros_like(target), target, "rank"),
                 torch.full((2,), float(torch.log(torch.tensor(2.0, dtype=DT))), dtype=DT))


def test_unknown_loss() -> None:
    with pytest.raises(ValueError, match="unknown loss"):
        maml.episode_loss(torch.zeros(3), torch.zeros(3), "hinge")
