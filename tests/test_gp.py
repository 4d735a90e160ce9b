"""The GP head: exact posterior, calibration figures, expected improvement, kriging believer, options."""

from __future__ import annotations

import math

import pytest
import torch

from nas_lightning.commands import main
from nas_lightning.errors import UserError
from nas_lightning.models import gp
from nas_lightning.models.gp_fit import GPOptions, fit_hyper
from nas_lightning.models.module import MetaPredictor
from nas_lightning.oracles import TableOracle
from nas_lightning.rankers.calibration import coverage, half_width, nlpd
from nas_lightning.rankers.posterior import GPRanker, training_tasks
from nas_lightning.rankers.ranking import rank_with
from nas_lightning.search.driver import run_parallel
from nas_lightning.search.meta import MetaOptions
from nas_lightning.search.posterior import GPScorer, PosteriorSearch, PosteriorState, expected_improvement, upper_bound
from nas_lightning.tasks import load
from tests.conftest import GuardedTask, only_from


def _hyper(**kw: float) -> gp.GPHyper:
    return gp.GPHyper(**{"a0": 0.7, "tau2": 0.5, "c2": 0.2, "s2": 0.8, "length": 0.9, "noise2": 0.1, "nu0": 4.0, **kw})


def _toy(n: int, seed: int = 0) -> gp.Embedded:
    g = torch.Generator().manual_seed(seed)
    return gp.Embedded(torch.randn(n, generator=g, dtype=torch.float64), torch.randn(n, 3, generator=g, dtype=torch.float64))


def test_posterior_is_the_closed_form() -> None:
    hp, s, c = _hyper(), _toy(6, 0), _toy(9, 1)
    y = torch.linspace(-1, 1, 6, dtype=torch.float64)

    def k(a: gp.Embedded, b: gp.Embedded) -> torch.Tensor:  # written out entry by entry
        return torch.tensor([[0.5 * fa * fb + 0.2 + 0.8 * math.exp(-float(((ha - hb) ** 2).sum()) / (2 * 0.81))
                              for fb, hb in zip(b.f.tolist(), b.h)] for fa, ha in zip(a.f.tolist(), a.h)], dtype=torch.float64)

    inv = torch.linalg.inv(k(s, s) + 0.1 * torch.eye(6, dtype=torch.float64))
    want_mean = 0.7 * c.f + k(c, s) @ inv @ (y - 0.7 * s.f)
    r = float((y - 0.7 * s.f) @ inv @ (y - 0.7 * s.f))  # the support's squared Mahalanobis distance
    want_amp = (4.0 + r) / (4.0 + 6)
    want_var = want_amp * torch.diagonal(k(c, c) - k(c, s) @ inv @ k(s, c))
    with torch.no_grad():
        mean, var, amp = gp.posterior(hp, s, y, c)
    assert torch.allclose(mean, want_mean, atol=1e-5) and torch.allclose(var, want_var, atol=1e-5)
    assert float(amp) == pytest.approx(want_amp)
    batched, _, _ = gp.posterior(hp, gp.Embedded(s.f[None].repeat(2, 1), s.h[None].repeat(2, 1, 1)), y[None].repeat(2, 1),
                              gp.Embedded(c.f[None].repeat(2, 1), c.h[None].repeat(2, 1, 1)))
    assert torch.allclose(batched[1].detach(), mean, atol=1e-9)


def test_the_prior_loses_its_weight_where_the_measurements_disagree() -> None:
    hp, s, c = _hyper(a0=1.0, s2=0.05), _toy(30, 2), _toy(200, 3)
    with torch.no_grad():
        agree, _, _ = gp.posterior(hp, s, s.f.clone(), c)
        disagree, _, _ = gp.posterior(hp, s, -s.f, c)
    corr = lambda a, b: float(torch.corrcoef(torch.stack([a, b]))[0, 1])  # noqa: E731
    assert corr(agree, c.f) > 0.95 and corr(disagree, c.f) < -0.5


def test_the_amplitude_follows_how_far_the_measurements_sit_from_the_prior() -> None:
    """Measurements far from the prior mean widen every interval, ones on it narrow them; the
    posterior mean does not change; with nu0 infinite the amplitude stays 1."""
    s, c = _toy(10, 4), _toy(50, 5)
    y = 0.7 * s.f
    with torch.no_grad():
        m_near, v_near, a_near = gp.posterior(_hyper(), s, y, c)
        m_far, v_far, a_far = gp.posterior(_hyper(), s, y + 3 * _toy(10, 6).f, c)
        m_fixed, v_fixed, a_fixed = gp.posterior(_hyper(nu0=math.inf), s, y, c)
    assert float(a_near) < 1 < float(a_far) and bool((v_far > v_near).all()) and float(a_fixed) == 1.0
    assert torch.allclose(v_near / float(a_near), v_fixed) and torch.allclose(m_near, m_fixed)


def test_coverage_and_nlpd() -> None:
    mean, sd = torch.zeros(4), torch.ones(4)
    assert coverage(mean, sd, torch.tensor([0.0, 1.28, -1.28, 1.29])) == 0.75  # the 80 % half-width is 1.2816
    truth = torch.randn(20_000, generator=torch.Generator().manual_seed(0))
    assert abs(coverage(torch.zeros(20_000), torch.ones(20_000), truth) - 0.8) < 0.01
    t = torch.tensor([1.0, 3.0])
    dens = -torch.distributions.Normal(torch.tensor([1.5, 2.0]), torch.tensor([0.5, 2.0])).log_prob(t).mean()
    assert nlpd(torch.tensor([1.5, 2.0]), torch.tensor([0.5, 2.0]), t) == pytest.approx(float(dens) - math.log(float(t.std())))


def test_student_t_coverage_and_nlpd() -> None:
    """One degree of freedom is the Cauchy (closed forms); many are the normal."""
    assert half_width(0.8, 1.0) == pytest.approx(math.tan(0.4 * math.pi))
    assert half_width(0.8, 1e7) == pytest.approx(half_width(0.8), rel=1e-5) and half_width(0.8, 10.0) > half_width(0.8)
    loc, scale = torch.zeros(4), torch.full((4,), 2.0)
    assert coverage(loc, scale, torch.tensor([0.0, 6.1, -6.1, 6.2]), df=1.0) == 0.75  # 2 tan(0.4 pi) = 6.155
    t = torch.tensor([1.0, 3.0, -2.0])
    cauchy = -torch.log(1 / (math.pi * 2.0 * (1 + (t / 2.0).square()))).mean()
    assert nlpd(torch.zeros(3), torch.full((3,), 2.0), t, df=1.0) == pytest.approx(float(cauchy) - math.log(float(t.std())))
    assert nlpd(torch.zeros(3), torch.ones(3), t, df=1e8) == pytest.approx(nlpd(torch.zeros(3), torch.ones(3), t), rel=1e-6)


def test_cross_validated_residuals(tiny: MetaPredictor) -> None:
    """Each fold predicted without it: a batch of supports equals each alone, a support that the
    predictor cannot follow gets larger residuals, and below three measurements there are none."""
    task = load.load_task("nb201/cifar10/val_acc")
    hp = _hyper()
    rows = torch.randperm(task.size, generator=torch.Generator().manual_seed(3))[:14].reshape(2, 7)
    support, y = task.archs[rows], task.table[rows].double()
    both = gp.cv_scores(tiny, hp, support, y, True, 3)
    alone = gp.cv_scores(tiny, hp, support[1:], y[1:], True, 3)
    assert both.shape == (2, 7) and torch.allclose(both[1], alone[0], atol=1e-6) and torch.isfinite(both).all()
    scrambled = y[:1] + 5 * torch.randn(1, 7, generator=torch.Generator().manual_seed(4), dtype=torch.float64) * y.std()
    assert gp.cv_scores(tiny, hp, support[:1], scrambled, True, 7).square().mean() > both[0].square().mean()
    assert gp.cv_scores(tiny, hp, support[:, :2], y[:, :2], True, 5).shape == (2, 0)
    assert gp.cv_scores(tiny, hp, support, y, True, 0).shape == (2, 0)


def test_the_reported_intervals_are_cross_validated(tiny: MetaPredictor) -> None:
    """With folds a Student-t with a degree of freedom per measurement, the same location and the
    amplitude of the median squared residual; with none (or below three measurements) the normal
    of the in-sample amplitude."""
    task = load.load_task("nb201/cifar10/val_acc")
    support, cands = task.archs[:8], task.archs[100:140]
    y = task.table[:8].float()
    loc, scale, df = gp.gp_posterior(tiny, _hyper(), support, y, cands, True)
    loc0, scale0, df0 = gp.gp_posterior(tiny, _hyper(cv_folds=0), support, y, cands, True)
    assert df == 8.0 and df0 == math.inf and torch.allclose(loc, loc0) and not torch.allclose(scale, scale0)
    z = gp.cv_scores(tiny, _hyper(), support[None], y.double()[None], True, gp.CV_FOLDS)[0]
    sup, ys, emb, _, _ = gp.task_embedding(tiny, support, y, cands, True)
    with torch.no_grad():
        in_sample = float(gp.posterior(_hyper(), sup, ys, emb)[2])
    ratio = scale.square() / scale0.square()  # the amplitudes' ratio for every candidate
    cv = float(z.square().sort().values[3:5].mean()) / gp.CHI2_MEDIAN  # the median square of eight
    assert torch.allclose(ratio, torch.full_like(ratio, cv / in_sample), rtol=1e-5)
    assert gp.gp_posterior(tiny, _hyper(), support[:2], y[:2], cands, True)[2] == math.inf
    with pytest.raises(UserError, match="gp.folds"):
        GPOptions(folds=1)


def test_expected_improvement_matches_monte_carlo() -> None:
    mean, sd = torch.tensor([0.0, 1.0, -2.0], dtype=torch.float64), torch.tensor([1.0, 0.1, 3.0], dtype=torch.float64)
    draws = mean + sd * torch.randn(400_000, 3, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    mc = (draws - 0.5).clamp_min(0).mean(0)
    assert torch.allclose(expected_improvement(mean, sd, 0.5), mc, atol=5e-3)
    assert torch.equal(expected_improvement(mean, sd, -math.inf), mean + sd)


def test_kriging_believer_spreads_a_batch() -> None:
    """Two identical candidates with the best mean, a third a little lower: the batch takes one
    of the twins and then the third, as the believed twin leaves the other nothing to improve."""
    hp = _hyper(a0=1.0, tau2=0.01, c2=0.01, s2=1.0, length=0.5, noise2=1e-4)
    support = gp.Embedded(torch.tensor([0.0], dtype=torch.float64), torch.zeros(1, 2, dtype=torch.float64))
    cands = gp.Embedded(torch.tensor([1.0, 1.0, 0.9], dtype=torch.float64),
                        torch.tensor([[5.0, 0.0], [5.0, 0.0], [-5.0, 0.0]], dtype=torch.float64))
    for acquisition in ("ei", "ucb"):
        state = PosteriorState(hp, support, torch.zeros(1, dtype=torch.float64), cands)
        picks = PosteriorSearch(scorer=None, batch=2, acquisition=acquisition).acquire(state, 0.0, 2,
                                                                                      torch.Generator().manual_seed(0))
        assert sorted(picks)[1] == 2 and len(set(picks)) == 2, acquisition


def test_upper_bound_trades_mean_for_spread_by_beta() -> None:
    """beta 0 takes the best posterior mean; a large beta the most uncertain candidate."""
    hp = _hyper(a0=1.0, tau2=0.01, c2=0.01, s2=1.0, length=0.5, noise2=1e-4)
    support = gp.Embedded(torch.tensor([0.0], dtype=torch.float64), torch.zeros(1, 2, dtype=torch.float64))
    cands = gp.Embedded(torch.tensor([1.0, 0.5], dtype=torch.float64),
                        torch.tensor([[0.1, 0.0], [9.0, 0.0]], dtype=torch.float64))  # the second far from the support
    mean, sd = PosteriorState(hp, support, torch.tensor([0.8], dtype=torch.float64), cands).latent()
    assert torch.equal(upper_bound(mean, sd, 2.0), mean + 2.0 * sd) and mean[0] > mean[1] and sd[1] > sd[0]
    picks = {beta: PosteriorSearch(scorer=None, beta=beta).acquire(
        PosteriorState(hp, support, torch.tensor([0.8], dtype=torch.float64), cands), 0.8, 1,
        torch.Generator().manual_seed(0))[0] for beta in (0.0, 10.0)}
    assert picks == {0.0: 0, 10.0: 1}


@pytest.fixture(scope="module")
def tiny() -> MetaPredictor:
    torch.manual_seed(0)
    return MetaPredictor(hidden=16, context=4).eval()


def test_hyperparameters_are_seeded_and_rank_reports_calibration(tiny: MetaPredictor) -> None:
    task = load.load_task("nb201/cifar10/val_acc")
    opts = GPOptions(ks=(5,), episodes=2, query=20, steps=3)
    a, b = fit_hyper(tiny, [task], opts), fit_hyper(tiny, [task], opts)
    assert a.as_dict() == b.as_dict() and a.as_dict() != gp.GPHyper().as_dict()
    res = rank_with(task, [GPRanker(tiny, True, a)], 5, 2)
    assert 0.0 <= res["gp"]["coverage80_mean"] <= 1.0 and math.isfinite(res["gp"]["nlpd_mean"])
    assert len(res["gp"]["coverage80"]) == 2


def test_a_fixed_nu0_is_kept_and_infinity_keeps_the_amplitude_at_one(tiny: MetaPredictor) -> None:
    task = load.load_task("nb201/cifar10/val_acc")
    opts = GPOptions(ks=(5,), episodes=2, query=20, steps=3, nu0=math.inf)
    hp = fit_hyper(tiny, [task], opts)
    assert hp.as_dict()["nu0"] == math.inf and hp.as_dict()["s2"] != gp.GPHyper().as_dict()["s2"]
    s, c = _toy(10, 4), _toy(5, 5)
    with torch.no_grad():
        assert float(gp.posterior(hp, s, 3 * s.f, c)[2]) == 1.0
    assert fit_hyper(tiny, [task], GPOptions(ks=(5,), episodes=2, query=20, steps=3, nu0=2.0)).as_dict()["nu0"] == pytest.approx(2.0)
    assert GPOptions().nu0 == math.inf  # the default: amplitude 1; None meta-learns it
    learned = fit_hyper(tiny, [task], GPOptions(ks=(5,), episodes=2, query=20, steps=3, nu0=None)).as_dict()["nu0"]
    assert math.isfinite(learned) and learned != pytest.approx(gp.GPHyper().as_dict()["nu0"])
    with pytest.raises(UserError, match="gp.nu0"):
        GPOptions(nu0=0.0)


def test_posterior_search_is_deterministic_and_never_repeats(tiny: MetaPredictor) -> None:
    task = load.load_task("nb201/cifar10/val_acc")
    scorer = GPScorer(tiny, True, _hyper())

    def history(workers: int, batch: int) -> list[int]:
        oracle = TableOracle(task, 8, seed=0)
        strategy = PosteriorSearch(scorer, batch=batch)
        if workers > 1:
            run_parallel(strategy, oracle, 8, torch.Generator().manual_seed(3), workers)
        else:
            strategy.run(oracle, 8, torch.Generator().manual_seed(3))
        return oracle.history()[0].tolist()

    one = history(1, 1)
    assert one == history(1, 1) and len(set(one)) == 8
    for workers, batch in ((1, 3), (3, 1)):
        h = history(workers, batch)
        assert len(set(h)) == 8 and h == history(workers, batch)


def test_head_options_are_checked(capsys: pytest.CaptureFixture[str]) -> None:
    assert MetaOptions(head="gp").head == "gp"
    with pytest.raises(UserError, match="meta.head"):
        MetaOptions(head="bayes")
    with pytest.raises(UserError):
        GPOptions(ks=(1,))
    with pytest.raises(UserError, match="--head"):
        main(["rank", "--task", "nb201/cifar10/val_acc", "--ckpt", "x.ckpt", "--head", "bayes"])
    with pytest.raises(UserError, match="meta.head"):
        main(["compare", "--task", "nb201/cifar10/val_acc", "--ckpt", "x.ckpt", "--meta.head", "bayes"])
    assert MetaOptions(head="gp", acquisition="ei").acquisition == "ei"
    with pytest.raises(UserError, match="meta.acquisition"):
        MetaOptions(acquisition="ei")  # expected improvement needs the posterior of the gp head
    with pytest.raises(UserError, match="meta.acquisition"):
        main(["compare", "--task", "nb201/cifar10/val_acc", "--ckpt", "x.ckpt", "--meta.head", "gp",
              "--meta.acquisition", "pi"])
    with pytest.raises(UserError, match="acquisition"):
        PosteriorSearch(scorer=None, acquisition="pi")
    with pytest.raises(UserError, match="beta"):
        PosteriorSearch(scorer=None, beta=-1.0)


def test_posterior_search_reads_the_target_only_through_its_oracle(tiny: MetaPredictor) -> None:
    task = GuardedTask.wrap(load.load_task("nb201/cifar10/val_acc"), only_from("_evaluate", "oracles/table.py"))
    oracle = TableOracle(task, 6, seed=0)
    PosteriorSearch(GPScorer(tiny, True, _hyper()), batch=2).run(oracle, 6, torch.Generator().manual_seed(0))
    assert oracle.num_queries == 6


def test_the_target_is_never_a_training_table_of_the_head(tiny: MetaPredictor) -> None:
    tiny.trained_on = {"tasks": ["nb201/cifar10/val_acc", "nb201/cifar100/val_acc"]}
    target = load.load_task("nb201/cifar10/val_acc")
    assert [t.name for t in training_tasks(tiny, target)] == ["nb201/cifar100/val_acc"]
