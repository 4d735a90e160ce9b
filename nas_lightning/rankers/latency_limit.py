"""Hardware-aware search: the most accurate architecture under a latency limit, measuring few latencies.

Accuracy is the user's knowledge (a table, read through an unbudgeted oracle); latency is
measured through an oracle that counts every measurement. A :class:`LatencyModel` predicts the
latency of every architecture from the measured ones: a ranking (the meta-learned predictor
adapted on the measurements, or the parameter count) mapped to milliseconds by a monotone fit of
log-latency on the ranking score, with an uncertainty ``sigma`` (log scale) from leave-one-out
residuals. :func:`propose` is one step (what is known, what to measure next); :func:`constrained_search`
loops it: measure ``first``, then one at a time up to ``more``:

* no measured architecture meets the limit yet: measure the most accurate one predicted to meet
  it (probability >= 0.5), or the likeliest to meet it when none is;
* else: measure the one of highest ``P(meets the limit) x (accuracy - the pick's accuracy)``
  (constrained expected improvement with a known objective); "sure" when no unmeasured
  architecture more accurate than the pick has ``P >= stop`` (the search then stops early).

The pick is always a *measured* architecture that meets the limit, so it is named with its
measured latency.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field

import numpy as np
import torch
from sklearn.isotonic import IsotonicRegression

from nas_lightning.errors import UserError
from nas_lightning.models.module import MetaPredictor
from nas_lightning.models.scoring import score_sets
from nas_lightning.rankers.bounded import bounded_score
from nas_lightning.oracles import Oracle
from nas_lightning.tasks.task import Task

log = logging.getLogger(__name__)
SIGMA_MIN, SIGMA_PRIOR = 0.02, 0.5  # log-latency uncertainty: a floor, and the value below 3 measurements
SIGMA_ROWS = 200  # leave-one-out residuals from at most this many measurements (n adaptations on n - 1 rows each)


class LatencyModel:
    """Predicted log-latency of candidates from measured ``(arch, latency)`` pairs: a ranking
    (:meth:`ranking`, higher is faster) calibrated to log-latency. Subclasses say how they rank:
    :class:`MetaLatency` and :class:`ParamsLatency`."""

    name = "latency"

    def ranking(self, archs: torch.Tensor, latency: torch.Tensor, candidates: torch.Tensor) -> torch.Tensor:
        """Scores of ``candidates`` (higher is faster) given the measurements."""
        raise NotImplementedError

    def loo_scores(self, archs: torch.Tensor, latency: torch.Tensor) -> torch.Tensor:
        """``[n, n]``: row ``i`` scores every measured architecture from all measurements but ``i``."""
        raise NotImplementedError

    def predict(self, archs: torch.Tensor, latency: torch.Tensor, candidates: torch.Tensor) -> torch.Tensor:
        """Predicted log-latency of ``candidates`` (the fit also sees the measured ones)."""
        s = self.ranking(archs, latency, torch.cat([archs, candidates]))
        return calibrate(s[: len(archs)], latency.double().log(), s[len(archs):])

    def sigma(self, archs: torch.Tensor, latency: torch.Tensor) -> float:
        """Root mean square leave-one-out residual of :meth:`predict` (log scale), over the
        measurements inside the others' score range (a floor of ``SIGMA_MIN``)."""
        n = len(archs)
        if n < 3:
            return SIGMA_PRIOR
        if n > SIGMA_ROWS:  # a table measured in full: a fixed draw of rows estimates the residuals as well
            keep = torch.randperm(n, generator=torch.Generator().manual_seed(0))[:SIGMA_ROWS].sort().values
            archs, latency, n = archs[keep], latency[keep], SIGMA_ROWS
        scores = self.loo_scores(archs, latency)
        res, inside = [], []
        for i in range(n):
            keep = torch.arange(n) != i
            pred = calibrate(scores[i][keep], latency[keep].double().log(), scores[i][i:i + 1])
            res.append(float(pred[0] - math.log(float(latency[i]))))
            inside.append(bool(scores[i][keep].min() <= scores[i][i] <= scores[i][keep].max()))
        r = np.array(res)
        r = r[np.array(inside)] if sum(inside) >= 3 else r
        return max(SIGMA_MIN, float(np.sqrt(np.mean(r ** 2))))


class MetaLatency(LatencyModel):
    """The meta-learned latency predictor, adapted on the measurements, ranks."""

    name = "meta"

    def __init__(self, module: MetaPredictor) -> None:
        self.module = module

    def ranking(self, archs: torch.Tensor, latency: torch.Tensor, candidates: torch.Tensor) -> torch.Tensor:
        # many measurements: adapted in bounded chunks (one adaptation, as before, up to SUPPORT_BOUND rows)
        return bounded_score(self.module, archs, -latency.float(), candidates, maximise=False).double().cpu()

    def loo_scores(self, archs: torch.Tensor, latency: torch.Tensor) -> torch.Tensor:
        # the n leave-one-out adaptations in one batch (each row in its own units: ranks suffice)
        n = len(archs)
        rest = torch.stack([torch.cat([torch.arange(i), torch.arange(i + 1, n)]) for i in range(n)])
        return score_sets(self.module, archs[rest], -latency[rest].float(), archs, maximise=False).double().cpu()


class ParamsLatency(LatencyModel):
    """Fewer parameters rank faster (a device-free proxy)."""

    name = "params"

    def __init__(self, params: Task) -> None:
        self.params = params

    def ranking(self, archs: torch.Tensor, latency: torch.Tensor, candidates: torch.Tensor) -> torch.Tensor:
        return -self.params.lookup(candidates).double()

    def loo_scores(self, archs: torch.Tensor, latency: torch.Tensor) -> torch.Tensor:
        n = len(archs)
        return self.ranking(archs, latency, archs).expand(n, n)


def calibrate(s_measured: torch.Tensor, y_measured: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
    """Log-latency at scores ``s`` from measured ``(score, log-latency)`` pairs: a decreasing isotonic
    fit, interpolated inside the measured scores; outside, the end value continued with the slope of
    a least-squares line (never increasing)."""
    if not len(s):  # every architecture measured: nothing left to predict
        return torch.zeros(0, dtype=torch.float64)
    x, y = s_measured.double().numpy(), y_measured.double().numpy()
    iso = IsotonicRegression(increasing=False, out_of_bounds="clip").fit(x, y)
    out = iso.predict(s.double().numpy())
    slope = min(0.0, float(np.polyfit(x, y, 1)[0])) if np.ptp(x) > 0 else 0.0
    lo, hi = x.min(), x.max()
    q = s.double().numpy()
    out = np.where(q > hi, iso.predict([hi])[0] + slope * (q - hi), out)
    out = np.where(q < lo, iso.predict([lo])[0] + slope * (q - lo), out)
    return torch.from_numpy(out)


@dataclass
class Proposal:
    """What is known after the measurements so far, and what to measure next.

    ``pick`` is the most accurate measured architecture that meets the limit (``None``: none does);
    ``candidates`` are unmeasured architectures predicted to meet it, most accurate first;
    ``next`` are the ones to measure next, best first (empty when ``sure``).
    """

    limit: float
    pick: int | None
    measured: dict[int, float]
    accuracy: dict[int, float]
    candidates: list[tuple[int, float, float, float]]  # (arch, accuracy, predicted latency, P(meets))
    next: list[int]
    sure: bool
    sigma: float
    fastest_measured: tuple[int, float]
    fastest_predicted: tuple[int, float]

    @property
    def pick_accuracy(self) -> float | None:
        return None if self.pick is None else self.accuracy[self.pick]

    @property
    def pick_latency(self) -> float | None:
        return None if self.pick is None else self.measured[self.pick]

    @property
    def reachable(self) -> bool:
        """Whether some architecture is measured or predicted to meet the limit."""
        return min(self.fastest_measured[1], self.fastest_predicted[1]) <= self.limit


def propose(model: LatencyModel, archs: torch.Tensor, latency: torch.Tensor, acc_archs: torch.Tensor,
            acc_values: torch.Tensor, limit: float, ask: int = 1, stop: float = 0.01, show: int = 10) -> Proposal:
    """One step: the pick so far, the predicted-feasible candidates and what to measure next.

    Args:
        model: predicts latency from the measurements.
        archs, latency: measured architectures and their latencies (positive).
        acc_archs, acc_values: every architecture with a known accuracy (higher is better).
        limit: the latency limit, in the measurements' unit.
        ask: how many architectures to propose for measuring next.
        stop: with a pick, "sure" when no unmeasured more accurate architecture meets the limit
            with probability ``>= stop``.
        show: how many candidates to list.
    """
    acc = dict(zip(acc_archs.tolist(), acc_values.tolist()))
    measured = dict(zip(archs.tolist(), latency.tolist()))
    ok = [a for a, v in measured.items() if v <= limit and a in acc]
    pick = max(ok, key=lambda a: (acc[a], -measured[a]), default=None)
    seen = torch.zeros(int(max(acc_archs.max(), archs.max())) + 1, dtype=torch.bool)
    seen[archs] = True
    cand = acc_archs[~seen[acc_archs]]
    vals = acc_values[~seen[acc_archs]].double()
    mu = model.predict(archs, latency, cand)
    sigma = model.sigma(archs, latency)
    p = torch.special.ndtr((math.log(limit) - mu) / sigma)
    if pick is None:
        value = torch.where(p >= 0.5, vals, torch.full_like(vals, -math.inf))
        value = value if bool(torch.isfinite(value).any()) else p
        sure = False
    else:
        gain = (vals - acc[pick]).clamp_min(0)
        value = torch.where(gain > 0, p * gain, torch.full_like(p, -math.inf))
        sure = not bool(((gain > 0) & (p >= stop)).any())
    order = torch.argsort(value, descending=True, stable=True)
    nxt = [] if sure else [int(cand[i]) for i in order[:ask].tolist() if math.isfinite(float(value[i]))]
    feasible = torch.nonzero(mu <= math.log(limit)).reshape(-1)
    top = feasible[torch.argsort(vals[feasible], descending=True, stable=True)[:show]]
    fm = min(measured.items(), key=lambda kv: kv[1])
    fp = fm if not len(cand) else (int(cand[int(torch.argmin(mu))]), math.exp(float(mu.min())))
    return Proposal(limit, pick, measured, acc,
                    [(int(cand[i]), float(vals[i]), math.exp(float(mu[i])), float(p[i])) for i in top.tolist()],
                    nxt, sure, sigma, fm, fp)


@dataclass
class SearchResult:
    """A finished search: the final proposal and the measurements in order."""

    proposal: Proposal
    order: list[int] = field(default_factory=list)
    stopped_early: bool = False


def constrained_search(model: LatencyModel, accuracy: Oracle, latency: Oracle, limit: float, first: int = 10,
                       more: int = 10, generator: torch.Generator | None = None,
                       first_archs: torch.Tensor | None = None, stop: float = 0.0) -> SearchResult:
    """The most accurate architecture whose measured latency meets ``limit``, with at most
    ``first + more`` latency measurements (each through ``latency``, which counts them).

    Args:
        model: predicts latency from the measurements.
        accuracy: the accuracy oracle (unbudgeted: the user's knowledge, read whole).
        latency: the latency oracle (its budget, if any, should allow ``first + more``).
        limit: the latency limit, in the latency table's unit.
        first: architectures measured before any prediction (``first_archs``, or drawn at random
            from the accuracy oracle's architectures with ``generator``).
        more: further measurements, one at a time, each chosen by :func:`propose`.
        generator: draws the first architectures.
        first_archs: the first architectures (then ``first`` is their number).
        stop: see :func:`propose`; the default 0 spends the whole budget unless no unmeasured
            architecture is more accurate than the pick (on four tuning devices, stopping at 0.05
            saved about 3 of 20 measurements but raised the mean gap from 0.057 to 0.097 points).
    """
    acc_archs = accuracy.archs
    acc_values = (accuracy.query(acc_archs) * accuracy.sign).double()
    if first_archs is None:
        gen = generator if generator is not None else torch.Generator().manual_seed(0)
        first_archs = acc_archs[torch.randperm(len(acc_archs), generator=gen)[:first]]
    if len(first_archs) < 2:
        raise UserError(f"measure at least 2 architectures first, got {len(first_archs)}")
    latency.query(first_archs)
    stopped = False
    while True:
        archs, lat = latency.history()
        prop = propose(model, archs, lat, acc_archs, acc_values, limit, stop=stop)
        if len(archs) >= len(first_archs) + more or not prop.next:
            stopped = len(archs) < len(first_archs) + more
            break
        latency.query(torch.tensor(prop.next[:1]))
    log.info("constrained search (%s): %d measurements, pick %s", model.name, len(archs), prop.pick)
    return SearchResult(prop, archs.tolist(), stopped)
