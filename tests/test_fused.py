"""The fused MLP path against autograd and the plain module: loss gradients, the update step,
and the inference forward used to score the whole NB201."""

from __future__ import annotations

import pytest
import torch
from torch.func import functional_call
from torch.testing import assert_close

from nas_lightning.spaces import NB201
from nas_lightning.models.scoring import score, standardise
from nas_lightning.models import fused, maml
from nas_lightning.models.module import MetaPredictor
from nas_lightning.models.predictors import GraphPredictor, MLPPredictor

DT = torch.float64


@pytest.mark.parametrize("kind", ["mse", "rank"])
@pytest.mark.parametrize("masked", [False, True])
def test_loss_grad_matches_autograd(kind: str, masked: bool) -> None:
    g = torch.Generator().manual_seed(0)
    pred = torch.randn(4, 9, generator=g, dtype=DT, requires_grad=True)
    target = torch.randn(4, 9, generator=g, dtype=DT)
    target[0, :3] = target[0, 3]  # ties count as neither better nor worse
    mask = (torch.rand(4, 9, generator=g) > 0.3) if masked else None
    (ref,) = torch.autograd.grad(maml.episode_loss(pred, target, kind, mask).sum(), pred)
    assert_close(fused.loss_grad(pred.detach(), target, kind, mask), ref)


def test_loss_grad_unknown() -> None:
    with pytest.raises(ValueError, match="unknown loss"):
        fused.loss_grad(torch.zeros(1, 3), torch.zeros(1, 3), "hinge")


@pytest.mark.parametrize("shared", [True, False])
def test_step_gradcheck(shared: bool) -> None:
    g = torch.Generator().manual_seed(1)
    shape = (3, 4) if shared else (2, 3, 4)
    p = torch.randn(*shape, generator=g, dtype=DT, requires_grad=True)
    lr = torch.rand(3, 4, generator=g, dtype=DT, requires_grad=True)
    grad = torch.randn(2, 3, 4, generator=g, dtype=DT, requires_grad=True)
    out = fused.step(p, lr, grad)
    assert_close(out, p - lr * grad)
    assert torch.autograd.gradcheck(fused.step, (p, lr, grad))
    assert torch.autograd.gradgradcheck(fused.step, (p, lr, grad))


def test_mlp_spec_only_for_plain_mlps() -> None:
    assert fused.mlp_spec(MLPPredictor(8, 3, "onehot", 4)) == fused.MLPSpec(("body.0", "body.2", "body.4"), "film.proj", "head")
    assert fused.mlp_spec(MLPPredictor(8, 1, "onehot", 0)).film is None
    assert fused.mlp_spec(GraphPredictor(8, 2)) is None

    class Custom(MLPPredictor):
        def forward(self, x, z=None):  # noqa: ANN001, ANN202
            return super().forward(x, z) * 2

    assert fused.mlp_spec(Custom(8, 2, "onehot")) is None


@pytest.mark.parametrize("context", [0, 6])
@pytest.mark.parametrize("sparse", [True, False])
def test_forward_single_matches_module(context: int, sparse: bool) -> None:
    torch.manual_seed(0)
    net = MLPPredictor(16, 2, "onehot+path", context).double()
    with torch.no_grad():
        for p in net.parameters():
            p.copy_(0.3 * torch.randn_like(p))
    codes = net.encode(NB201.all_indices()).to(DT)
    cand = torch.arange(5, NB201.size, 53)
    bags = codes.nonzero()[:, 1].view(len(codes), -1)[cand] if sparse else None
    z = torch.randn(context, dtype=DT) if context else None
    params = dict(net.named_parameters())
    got = fused.forward_single(fused.mlp_spec(net), params, z, None if sparse else codes[cand], bags)
    want = functional_call(net, params, (codes[cand], *([] if z is None else [z])))
    assert_close(got, want.detach())


def test_score_members_match_plain_forward() -> None:
    """score()'s fused member forward equals running the module with each member's weights."""
    torch.manual_seed(0)
    module = MetaPredictor(hidden=16, context=8).eval()
    with torch.no_grad():
        for p in module.net.parameters():
            p.add_(0.1 * torch.randn_like(p))
    g = torch.Generator().manual_seed(3)
    sup, y = torch.randperm(NB201.size, generator=g)[:12], torch.randn(12, generator=g)
    cand = torch.arange(0, NB201.size, 41)
    scores = score(module, sup, y, cand, True, members=3, generator=torch.Generator().manual_seed(0))
    # the same members by hand: the same bootstrap draws, adapted, then a plain forward each
    gen = torch.Generator().manual_seed(0)
    idx = torch.stack([torch.arange(12)] + [torch.randint(12, (12,), generator=gen) for _ in range(2)])
    ys, _ = standardise(y[idx], y[idx])
    with torch.enable_grad():
        fast, z = module.adapt(sup[idx], ys, torch.ones(3, dtype=torch.bool), meta_graph=False)
    for m in range(3):
        ref = functional_call(module.net, {k: v[m].detach() for k, v in fast.items()}, (module.codes[cand], z[m].detach()))
        assert_close(scores[m], ref, rtol=1e-4, atol=1e-4)


def test_score_shortlist() -> None:
    """Members beyond the first score only member 0's top candidates, and agree with it elsewhere."""
    torch.manual_seed(0)
    module = MetaPredictor(hidden=16).eval()
    g = torch.Generator().manual_seed(1)
    sup, y = torch.randperm(NB201.size, generator=g)[:12], torch.randn(12, generator=g)
    cand = torch.arange(0, NB201.size, 7)
    full = score(module, sup, y, cand, True, 4, torch.Generator().manual_seed(0), shortlist=None)
    short = score(module, sup, y, cand, True, 4, torch.Generator().manual_seed(0), shortlist=100)
    top = torch.topk(full[0], 100).indices
    assert_close(short[0], full[0])
    assert_close(short[:, top], full[:, top])
    rest = torch.ones(len(cand), dtype=torch.bool)
    rest[top] = False
    assert_close(short[1:, rest], full[0, rest].expand(3, -1))
    assert_close(score(module, sup, y, cand[:500], True, 4, torch.Generator().manual_seed(0)),  # under the default 1024
                 score(module, sup, y, cand[:500], True, 4, torch.Generator().manual_seed(0), shortlist=None))


def test_forward_mixes_shared_and_per_task_parameters() -> None:
    """Any mix of shared ``[...]`` and per-task ``[T, ...]`` parameters gives the module's scores."""
    torch.manual_seed(0)
    net = MLPPredictor(8, 2, "onehot", 3).double()
    x = net.encode(torch.arange(0, 60).view(3, 20)).to(DT)
    z = torch.randn(3, 3, dtype=DT)
    shared = dict(net.named_parameters())
    per_task = {k: v.detach() + 0.01 * torch.randn(3, *v.shape, dtype=DT) for k, v in shared.items()}
    for pick in ("weight", "bias"):  # per-task weights with shared biases, and the reverse
        params = {k: per_task[k] if k.endswith(pick) else shared[k] for k in shared}
        want = torch.stack([functional_call(net, {k: v if v.dim() == shared[k].dim() else v[t] for k, v in params.items()},
                                            (x[t], z[t])) for t in range(3)])
        assert_close(fused.forward(fused.mlp_spec(net), params, x, z)[0], want)
