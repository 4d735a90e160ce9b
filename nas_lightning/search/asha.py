"""Asynchronous successive halving (ASHA; Li et al., MLSys 2020) on a curve oracle.

Rungs are epoch counts (``grace * eta**k`` below the full length, then the full length). A
candidate that reaches a rung goes on to the next one (from where it stopped: a candidate is one
full-length training, stopped early) unless it is below the ``1 - 1/eta`` quantile of the values
recorded at that rung before it: the rule of Ray Tune's ``ASHAScheduler``, so the first candidate
at a rung goes on. A free worker continues the oldest candidate that passed; with
none waiting, a new candidate enters at the lowest rung. Who enters is the only difference between
the two searches here:

* ``asha`` (:class:`RandomEntry`): uniformly at random, the standard baseline;
* ``asha-meta`` (:class:`MetaEntry`): the meta-learned predictor's acquisition (as ``meta`` picks
  its queries), adapted on every candidate answered so far. An early-epoch accuracy is a noisy
  label for the final one, so the predictor is not told raw accuracies of mixed epochs: each
  candidate's label is its estimated rank among all entered candidates, taken at the highest
  rung it reached. A candidate at quantile ``q`` of the ``n_k`` that reached rung ``k`` had
  ``(1 - q) n_k`` better ones there, all of them promoted from the ``n_0`` that entered, so its
  label is ``1 - (1 - q) n_k / n_0``; as candidates climb, their labels sharpen. The predictor
  standardises its support, so a label's scale does not matter, only its order.

Our own driver rather than Ray Tune's scheduler: it decides the same for the same seed whatever
the timing (answers come oldest first), it continues candidates from the result store's
snapshots (a killed search loses nothing), and it can let the predictor choose who enters.
Ray Tune's own ``ASHAScheduler`` runs side by side as the baseline (:mod:`~nas_lightning.search.tune_asha`).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Protocol

import torch

from nas_lightning.errors import UserError
from nas_lightning.oracles.fidelity import CurveOracle
from nas_lightning.search.meta import MetaSearch

log = logging.getLogger(__name__)


def rungs(max_epochs: int, grace: int, eta: int) -> tuple[int, ...]:
    """Rung epochs: ``grace * eta**k`` below ``max_epochs``, then ``max_epochs`` (as Tune's ASHA,
    whose last milestone's survivors run on to the full length)."""
    if grace < 1 or eta < 2 or grace > max_epochs:
        raise UserError(f"ASHA needs 1 <= grace <= {max_epochs} epochs and eta >= 2, got grace={grace}, eta={eta}")
    out, r = [], grace
    while r < max_epochs:
        out.append(r)
        r *= eta
    return (*out, max_epochs)


class Entry(Protocol):
    """Chooses who enters the lowest rung, and hears every answer."""

    def next(self) -> int | None:
        """The next candidate to enter (``None``: none left)."""
        ...

    def observe(self, labels: dict[int, float]) -> None:
        """After each finished job: every entered candidate's current label (see the module)."""
        ...


class RandomEntry:
    """Candidates enter uniformly at random, without repeats."""

    def __init__(self, oracle: CurveOracle, generator: torch.Generator) -> None:
        self._order = oracle.archs[torch.randperm(len(oracle.archs), generator=generator)].tolist()

    def next(self) -> int | None:
        return self._order.pop(0) if self._order else None

    def observe(self, labels: dict[int, float]) -> None:
        pass


class _Labels:
    """What the predictor sees of the search, in the form a proposer reads an oracle: the task's
    architectures and each entered candidate with its label (never a raw value; it answers nothing)."""

    direction, sign = "max", 1.0

    def __init__(self, oracle: CurveOracle) -> None:
        self.name, self.space, self.archs = oracle.name, oracle.space, oracle.archs
        self.labels: dict[int, float] = {}

    @property
    def num_queries(self) -> int:
        return len(self.labels)

    def history(self) -> tuple[torch.Tensor, torch.Tensor]:
        idx = sorted(self.labels)
        return torch.tensor(idx, dtype=torch.long), torch.tensor([self.labels[i] for i in idx], dtype=torch.float64)


class MetaEntry:
    """Candidates enter in the order the meta-learned predictor's acquisition picks them."""

    def __init__(self, strategy: MetaSearch, oracle: CurveOracle, generator: torch.Generator) -> None:
        self._view = _Labels(oracle)
        self._proposer = strategy.proposer(self._view, len(oracle.archs), generator)  # type: ignore[arg-type]
        self._left = len(oracle.archs)

    def next(self) -> int | None:
        if self._left == 0:
            return None
        index = int(self._proposer.propose())
        self._proposer.pool.seen[index] = True  # entered: never proposed again
        self._left -= 1
        return index

    def observe(self, labels: dict[int, float]) -> None:
        self._view.labels = dict(labels)


def run_asha(oracle: CurveOracle, entry: Entry, milestones: tuple[int, ...], eta: int) -> None:
    """Spend ``oracle``'s epoch budget with ASHA over ``milestones`` (see :func:`rungs`), with
    ``oracle.workers`` jobs at once; stops when nothing more fits the budget or nobody is left."""
    if milestones[-1] != oracle.max_epochs:
        raise UserError(f"the last rung must be the full length ({oracle.max_epochs} epochs), got {milestones[-1]}")
    results: list[dict[int, float]] = [{} for _ in milestones]
    ready: list[int] = []  # candidates that passed their rung, waiting for a free worker (oldest first)
    entries_left = True

    def fits(epochs: int) -> bool:
        return oracle.remaining is None or epochs <= oracle.remaining

    def next_job() -> tuple[int, int] | None:
        nonlocal entries_left
        for n, i in enumerate(ready):
            stop = milestones[milestones.index(oracle.trained_to(i)) + 1]
            if fits(oracle.cost(i, stop)):
                del ready[n]
                return i, stop
        if entries_left and fits(milestones[0]):
            index = entry.next()
            if index is not None:
                return index, milestones[0]
            entries_left = False
        return None

    while True:
        while oracle.running < oracle.workers:
            job = next_job()
            if job is None:
                break
            oracle.start(*job)
        if not oracle.running:
            break
        answer = oracle.wait()
        k = milestones.index(answer.epochs)
        if k < len(milestones) - 1 and passes(answer.value, list(results[k].values()), eta):
            ready.append(answer.index)
        results[k][answer.index] = answer.value
        entry.observe(_labels(results))
    log.debug("asha: %d epochs in %d jobs, %d full trainings", oracle.epochs_spent, len(oracle.answers), len(results[-1]))


def passes(value: float, recorded: list[float], eta: int) -> bool:
    """Whether a candidate goes on from a rung: not below the ``1 - 1/eta`` quantile (linear
    interpolation) of the values recorded there before it (none: it goes on), as Ray Tune's ASHA decides."""
    if not recorded:
        return True
    cutoff = torch.quantile(torch.tensor(recorded, dtype=torch.float64), 1.0 - 1.0 / eta)
    return value >= float(cutoff)


def _labels(results: list[dict[int, float]]) -> dict[int, float]:
    """Each candidate's estimated rank quantile among all that entered, from its highest rung."""
    n0 = max(len(results[0]), 1)
    labels: dict[int, float] = {}
    for done in results:  # later rungs overwrite earlier ones
        if not done:
            continue
        values = torch.tensor(list(done.values()), dtype=torch.float64)
        for i, v in done.items():
            q = (float((values < v).sum()) + 0.5 * float((values == v).sum())) / len(values)  # mid-rank quantile
            labels[i] = 1.0 - (1.0 - q) * len(done) / n0
    return labels


@dataclass(frozen=True)
class AshaOptions:
    """How ``asha``, ``asha-meta`` and ``tune-asha`` search (the same rungs for all three).

    Args:
        grace: epochs of the lowest rung.
        eta: reduction factor: rungs at ``grace * eta**k`` epochs, the top ``1/eta`` go on.
    """

    grace: int = 2
    eta: int = 3

    def __post_init__(self) -> None:
        if not isinstance(self.grace, int) or self.grace < 1:
            raise UserError(f"asha.grace must be an integer >= 1 (epochs of the lowest rung), got {self.grace!r}")
        if not isinstance(self.eta, int) or self.eta < 2:
            raise UserError(f"asha.eta must be an integer >= 2 (the reduction factor), got {self.eta!r}")
