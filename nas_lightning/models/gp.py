"""A Gaussian-process head on the meta-learned predictor: exact posterior mean and variance.

The MAML-adapted predictor stays the encoder. For a task with support ``S`` (standardised
values ``y``), every architecture ``x`` has the adapted prediction ``f(x)`` and the adapted
network's last hidden features ``h(x)`` (the head's input). The head models

    y(x) = a f(x) + c + g(x) + noise,   a ~ N(a0, v tau^2),  c ~ N(0, v c^2),
    g ~ GP(0, v s^2 exp(-|h(x) - h(x')|^2 / (2 l^2))),  noise ~ N(0, v sigma^2),

so the prior mean is ``a0 f(x)`` and the kernel is ``v (tau^2 f f' + c^2 + s^2 rbf(h, h'))``. The
posterior over ``a`` shrinks the prior's weight where the measurements disagree with it, and
the RBF residual on the encoder's features takes over there (deep kernel transfer, Patacchiola
et al. 2020; few-shot Bayesian optimisation with deep kernel surrogates, Wistuba and Grabocka
2021). ``v`` is the task's own amplitude: 1 a priori, worth ``nu0`` pseudo-measurements (by
default infinitely many: ``v = 1``; see :class:`~nas_lightning.models.gp_fit.GPOptions`), and
estimated from how far the K measurements sit from the prior mean (``v = (nu0 + r) / (nu0 +
K)``, ``r`` their squared Mahalanobis distance); the posterior mean does not depend on ``v``.
The intervals that ranking reports take their amplitude from the support's cross-validated
residuals instead (:func:`cv_scores`, :func:`gp_posterior`): the adapted predictor has seen every
support value, so its in-sample residuals understate a new architecture's error by a factor
that differs from task to task. ``f`` and ``h`` are scaled per task on a fixed reference sample
of the space, so the hyperparameters mean the same on every task; they are meta-learned across
the checkpoint's training tasks (:mod:`~nas_lightning.models.gp_fit`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

from nas_lightning.models import maml
from nas_lightning.models.scoring import standardise

JITTER = 1e-6
REFERENCE = 512  # architectures of the fixed reference sample that scales f and h per task
CV_FOLDS = 5  # folds of the support's cross-validation that sets the reported intervals' amplitude
CHI2_MEDIAN = 0.454936423119572  # the median of chi-square with one degree of freedom


NAMES = ("a0", "tau2", "c2", "s2", "length", "noise2", "nu0")


class GPHyper(nn.Module):
    """The head's seven hyperparameters, stored unconstrained (the positive ones as logs).

    Args:
        cv_folds: folds of the cross-validation that sets the reported intervals' amplitude (0:
            they keep the in-sample amplitude; see :func:`gp_posterior`).
    """

    def __init__(self, a0: float = 1.0, tau2: float = 0.25, c2: float = 0.1, s2: float = 0.3,
                 length: float = 1.0, noise2: float = 0.3, nu0: float = 10.0, cv_folds: int = CV_FOLDS) -> None:
        super().__init__()
        self.a0 = nn.Parameter(torch.tensor(float(a0), dtype=torch.float64))
        self.log = nn.ParameterDict({k: nn.Parameter(torch.tensor(math.log(v), dtype=torch.float64))
                                     for k, v in (("tau2", tau2), ("c2", c2), ("s2", s2), ("length", length),
                                                  ("noise2", noise2), ("nu0", nu0))})
        self.cv_folds = cv_folds

    def value(self, name: str) -> torch.Tensor:
        """A hyperparameter on its natural scale (``a0`` as is, the others positive; ``nu0`` may be
        infinite: the amplitude then stays 1)."""
        return self.a0 if name == "a0" else self.log[name].exp()

    def as_dict(self) -> dict[str, float]:
        return {k: float(self.value(k).detach()) for k in NAMES}


@dataclass
class Embedded:
    """What the head needs of a set of architectures under one task's adapted predictor.

    Attributes:
        f: scaled adapted predictions ``[N]``.
        h: scaled last hidden features ``[N, H]``.
    """

    f: torch.Tensor
    h: torch.Tensor

    def take(self, idx: torch.Tensor) -> "Embedded":
        return Embedded(self.f[idx], self.h[idx])

    def cat(self, other: "Embedded") -> "Embedded":
        return Embedded(torch.cat([self.f, other.f]), torch.cat([self.h, other.h]))


def kernel(hp: GPHyper, a: Embedded, b: Embedded, sq: torch.Tensor | None = None) -> torch.Tensor:
    """The prior covariance ``[..., Na, Nb]`` (noise excluded); leading dimensions batch.
    ``sq``: the squared feature distances, when already computed (they do not depend on ``hp``)."""
    sq = torch.cdist(a.h, b.h).square() if sq is None else sq
    return (hp.value("tau2") * a.f[..., :, None] * b.f[..., None, :] + hp.value("c2")
            + hp.value("s2") * torch.exp(-0.5 * sq / hp.value("length").square()))


def prior_var(hp: GPHyper, a: Embedded) -> torch.Tensor:
    """The diagonal of :func:`kernel` ``(a, a)``, ``[..., Na]``."""
    return hp.value("tau2") * a.f.square() + hp.value("c2") + hp.value("s2")


def posterior(hp: GPHyper, support: Embedded, y: torch.Tensor, cands: Embedded,
              sq: tuple[torch.Tensor, torch.Tensor] | None = None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Exact posterior of the latent function at ``cands`` given ``y [..., K]`` at ``support``
    (leading dimensions batch independent tasks); ``sq``: the squared feature distances
    support-support and support-candidates, when already computed.

    Returns:
        Mean ``[..., C]``, latent variance ``[..., C]`` and the task's amplitude ``v [...]`` (a new
        measurement's variance adds ``v * noise2``).
    """
    prior = hp.value("a0") * cands.f
    k = y.shape[-1]
    if k == 0:
        return prior, prior_var(hp, cands), torch.ones(y.shape[:-1], dtype=prior.dtype)
    ss, sc = (None, None) if sq is None else sq
    eye = torch.eye(k, dtype=y.dtype)
    chol = torch.linalg.cholesky(kernel(hp, support, support, ss) + (hp.value("noise2") + JITTER) * eye)
    resid = (y - hp.value("a0") * support.f)[..., None]
    ksc = kernel(hp, support, cands, sc)
    alpha = torch.cholesky_solve(resid, chol)
    v = torch.linalg.solve_triangular(chol, ksc, upper=False)
    mean = prior + (ksc * alpha).sum(-2)
    amp = 1 + ((resid * alpha).sum((-2, -1)) - k) / (hp.value("nu0") + k)  # (nu0 + r) / (nu0 + K), finite at nu0 = inf
    var = amp[..., None] * (prior_var(hp, cands) - v.square().sum(-2)).clamp_min(1e-12)
    return mean, var, amp


def predictive_nll(hp: GPHyper, support: Embedded, y: torch.Tensor, query: Embedded, yq: torch.Tensor,
                   sq: tuple[torch.Tensor, torch.Tensor] | None = None) -> torch.Tensor:
    """Mean negative log predictive density of ``yq`` at ``query`` given the support (the
    meta-training objective: the few-shot predictive likelihood)."""
    mean, var, amp = posterior(hp, support, y, query, sq)
    var = var + amp[..., None] * hp.value("noise2")
    return 0.5 * ((yq - mean).square() / var + var.log() + math.log(2 * math.pi)).mean()


def _reference(module: nn.Module) -> torch.Tensor:
    """The fixed reference sample of the space (the same for every task and call)."""
    n = len(module.codes)
    g = torch.Generator().manual_seed(0)
    return torch.randperm(n, generator=g)[: min(REFERENCE, n)].to(module.codes.device)


def hidden_and_score(module: nn.Module, params: maml.Params, z: torch.Tensor | None,
                     archs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The predictor's scores ``[N]`` and its head's input features ``[N, H]`` under ``params``."""
    seen: list[torch.Tensor] = []
    hook = module.net.head.register_forward_hook(lambda _m, inp, _out: seen.append(inp[0]))
    try:
        x = module.encode(archs)
        out = torch.func.functional_call(module.net, params, (x, *([] if z is None else [z])))
    finally:
        hook.remove()
    return out, seen[-1]


@torch.no_grad()
def adapted(module: nn.Module, support: torch.Tensor, ys: torch.Tensor, maximise: bool) -> tuple[list[maml.Params], torch.Tensor | None]:
    """The predictor adapted on each row of ``support [M, K]`` (standardised ``ys [M, K]``):
    per-row parameters and contexts (``K < 2``: the meta-learned prior, as in ``score``)."""
    dev = module.codes.device
    m, k = support.shape
    flag = torch.full((m,), bool(maximise), device=dev)
    if k >= 2:
        with torch.enable_grad():
            fast, z = module.adapt(support.to(dev), ys.to(dev), flag, meta_graph=False)
        fast = {n: v.detach() for n, v in fast.items()}
        z = None if z is None else z.detach()
    else:
        xs = module.encode(support.to(dev)) if k else torch.zeros(m, 0, module.codes.shape[1], device=dev)
        yk = ys.to(dev) if k else torch.zeros(m, 0, device=dev)
        z = module.context(xs, yk, torch.ones_like(yk, dtype=torch.bool), flag)
        fast = maml.broadcast(module.params(), m)
    return [{n: v[i] for n, v in fast.items()} for i in range(m)], z


@torch.no_grad()
def embed(module: nn.Module, params: maml.Params, z: torch.Tensor | None, archs: torch.Tensor) -> Embedded:
    """``archs`` under one task's adapted predictor, scaled on the reference sample: ``f`` to
    zero mean and unit variance there, ``h`` to unit mean squared norm."""
    ref = _reference(module)
    f_ref, h_ref = hidden_and_score(module, params, z, ref)
    f, h = hidden_and_score(module, params, z, archs.to(module.codes.device).long())
    f_sd = f_ref.double().std().clamp_min(1e-8)
    h_mean = h_ref.double().mean(0)
    h_scale = (h_ref.double() - h_mean).square().sum(-1).mean().sqrt().clamp_min(1e-8)
    return Embedded(((f.double() - f_ref.double().mean()) / f_sd).cpu(), ((h.double() - h_mean) / h_scale).cpu())


@torch.no_grad()
def task_embedding(module: nn.Module, support: torch.Tensor, targets: torch.Tensor, archs: torch.Tensor,
                   maximise: bool) -> tuple[Embedded, torch.Tensor, Embedded, float, float]:
    """Adapt on ``support`` (values ``targets``, higher is better) and embed it and ``archs``.

    Returns:
        The support's embedding, its standardised values, the embedding of ``archs``, and the
        support's std and mean (standardised units times the std plus the mean: target units).
    """
    y = targets.double().cpu()
    ys, _ = standardise(y[None], y[None])
    params, z = adapted(module, support.long()[None], ys.float(), maximise)
    both = embed(module, params[0], None if z is None else z[0], torch.cat([support.long().cpu(), archs.long().cpu()]))
    k = len(support)
    scale, shift = _units(y)
    return both.take(torch.arange(k)), ys[0], both.take(torch.arange(k, len(both.f))), scale, shift


@torch.no_grad()
def cv_scores(module: nn.Module, hp: GPHyper, support: torch.Tensor, y: torch.Tensor, maximise: bool,
              folds: int) -> torch.Tensor:
    """Cross-validated residuals of the supports ``[E, K]`` (values ``y``, higher is better): the
    support is dealt into ``folds`` folds (position modulo the fold count), and each fold's values
    are predicted by the predictor adapted, and the posterior conditioned, on the other folds only,
    standardised by that prediction's unit-amplitude standard deviation (noise included).

    Returns:
        ``[E, K]`` residuals; ``[E, 0]`` below three measurements or two folds.
    """
    e, k = support.shape
    if k < 3 or folds < 2:
        return torch.zeros(e, 0, dtype=torch.float64)
    fold = torch.arange(k) % min(folds, k)
    z = torch.zeros(e, k, dtype=torch.float64)
    groups: dict[int, list[int]] = {}  # folds of the same size adapt in one batch
    for i in range(int(fold.max()) + 1):
        groups.setdefault(int((fold == i).sum()), []).append(i)
    for ids in groups.values():
        keep = torch.stack([torch.nonzero(fold != i).flatten() for i in ids])
        held = torch.stack([torch.nonzero(fold == i).flatten() for i in ids])
        g, kk = keep.shape
        sk, sh = support[:, keep].reshape(e * g, kk).long(), support[:, held].reshape(e * g, -1).long()
        ys, yh = standardise(y[:, keep].reshape(e * g, kk).double(), y[:, held].reshape(e * g, -1).double())
        params, ctx = adapted(module, sk, ys.float(), maximise)
        emb = [embed(module, p, None if ctx is None else ctx[r], torch.cat([sk[r].cpu(), sh[r].cpu()]))
               for r, p in enumerate(params)]
        both = Embedded(torch.stack([m.f for m in emb]), torch.stack([m.h for m in emb]))
        mean, var, amp = posterior(hp, Embedded(both.f[:, :kk], both.h[:, :kk]), ys,
                                   Embedded(both.f[:, kk:], both.h[:, kk:]))
        resid = (yh - mean) / (var / amp[:, None] + hp.value("noise2")).sqrt()
        z[torch.arange(e)[:, None, None], held[None]] = resid.reshape(e, g, -1)
    return z


def gp_posterior(module: nn.Module, hp: GPHyper, support: torch.Tensor, targets: torch.Tensor,
                 candidates: torch.Tensor, maximise: bool) -> tuple[torch.Tensor, torch.Tensor, float]:
    """The head's predictive distribution at ``candidates`` after adapting on ``support``.

    With ``hp.cv_folds`` (and at least three measurements) the task's amplitude comes from the
    support's cross-validated residuals (:func:`cv_scores`; cross-validation estimates a Gaussian
    process's variance where the model is misspecified, Bachoc 2013): their median square over
    chi-square's median, so that one failed architecture in the support does not widen every
    interval; with the amplitude unknown a priori the predictive is a Student-t with as many
    degrees of freedom as residuals. Otherwise the in-sample amplitude of :func:`posterior` and
    a normal predictive.

    Returns:
        Location ``[C]`` and scale ``[C]`` (noise included) in the units of ``targets``, and the
        degrees of freedom (``inf``: normal, the scale its standard deviation).
    """
    sup, ys, cands, scale, shift = task_embedding(module, support, targets, candidates, maximise)
    with torch.no_grad():
        mean, var, amp = posterior(hp, sup, ys, cands)
        z = cv_scores(module, hp, support[None], targets.double()[None], maximise, hp.cv_folds)[0]
        df = float(len(z)) if len(z) else math.inf
        if len(z):
            cv = torch.quantile(z.square(), 0.5) / CHI2_MEDIAN
            var, amp = var / amp * cv, cv
        sd = (var + amp * hp.value("noise2")).sqrt()
    return mean * scale + shift, sd * scale, df


def _units(y: torch.Tensor) -> tuple[float, float]:
    """The support's std and mean (what :func:`standardise` divides and subtracts)."""
    if len(y) == 0:
        return 1.0, 0.0
    std = float(y.std(unbiased=False))
    return (std if std > 1e-8 else 1.0), float(y.mean())
