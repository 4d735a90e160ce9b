"""Replay: a curve oracle that answers from a learning-curve table instead of training.

Every answer is what a real training of the cell gave after that epoch, and every job costs the
seconds that training took for those epochs, so a multi-fidelity benchmark of many seeds costs
nothing and charges what a live search would have paid. The table (``search.py tabulate``) holds
one training per cell, so a replayed search sees one training seed, as a live search would.
"""

from __future__ import annotations

from nas_lightning.candidates.curves import CurveTable
from nas_lightning.oracles.fidelity import CurveOracle
from nas_lightning.spaces import NB201


class ReplayOracle(CurveOracle):
    """Curves of a :class:`~nas_lightning.candidates.curves.CurveTable`, with a budget in epochs.

    Args:
        table: the curve table.
        budget: the most epochs a search may spend (``None``: unlimited).
        workers: jobs at once (answers still come oldest first).
        name: the task's name.
    """

    def __init__(self, table: CurveTable, budget: int | None = None, workers: int = 1, name: str = "replay") -> None:
        super().__init__(name, NB201, table.archs, table.epochs, budget, workers)
        self._row = {int(a): r for r, a in enumerate(table.archs.tolist())}
        self._table = table

    def _launch(self, index: int, start: int, stop: int) -> None:
        pass  # the answer is in the table

    def _result(self, index: int, start: int, stop: int) -> tuple[float, float]:
        r = self._row[index]
        before = 0.0 if start == 0 else float(self._table.seconds[r, start - 1])
        return float(self._table.val[r, stop - 1]), float(self._table.seconds[r, stop - 1]) - before

    def final_test(self, index: int) -> float | None:
        value = float(self._table.test[self._row[int(index)]])
        return None if value != value else value
