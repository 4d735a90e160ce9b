"""``search.py predict`` in bounded memory: no adaptation sees more than the support bound, every
measured row still counts, and a table within the bound scores as before."""

from __future__ import annotations

import pytest
import torch

from nas_lightning.models.module import MetaPredictor
from nas_lightning.models.scoring import score
from nas_lightning.rankers import bounded
from nas_lightning.rankers.bounded import bounded_score, chunks
from nas_lightning.rankers.ranking import predict_all
from nas_lightning.spaces import NB201
from nas_lightning.tasks.embedded import load_embedded
from nas_lightning.tasks.task import Task


@pytest.fixture(scope="module")
def module() -> MetaPredictor:
    torch.manual_seed(0)
    return MetaPredictor(hidden=16, context=8).eval()


def _table(n: int, metric: str = "val_acc") -> Task:
    full = load_embedded("cifar10", metric)
    archs = full.archs[torch.randperm(full.size, generator=torch.Generator().manual_seed(1))[:n]].sort().values
    return Task(name=f"csv:mine.csv#{metric}", direction="max" if metric == "val_acc" else "min",
                archs=archs, table=full.lookup(archs).double(), space=NB201)


def test_no_adaptation_of_predict_sees_more_rows_than_the_bound(module: MetaPredictor,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    task = _table(70)
    monkeypatch.setattr(bounded, "SUPPORT_BOUND", 20)
    seen: list[torch.Tensor] = []
    adapt = module.adapt

    def recording(support_archs: torch.Tensor, *args, **kwargs):
        seen.append(support_archs[0].clone())
        return adapt(support_archs, *args, **kwargs)

    monkeypatch.setattr(module, "adapt", recording)
    archs, scores, measured = predict_all(task, module)
    assert len(seen) == 4 and max(len(s) for s in seen) <= 20  # 70 rows: 4 chunks of 17-18
    assert sorted(torch.cat(seen).tolist()) == task.archs.tolist()  # every measured row, once
    assert len(scores) == NB201.size and bool(torch.isfinite(scores).all()) and len(measured) == 70


def test_chunks_are_near_equal_and_fixed_by_seed() -> None:
    parts = chunks(1030, 512, seed=0)
    assert [len(p) for p in parts] == [344, 343, 343]
    assert all(torch.equal(a, b) for a, b in zip(parts, chunks(1030, 512, seed=0)))
    assert sorted(torch.cat(parts).tolist()) == list(range(1030))
    assert [p.tolist() for p in chunks(5, 512)] == [[0, 1, 2, 3, 4]]


def test_a_table_within_the_bound_scores_exactly_as_one_adaptation(module: MetaPredictor) -> None:
    task = _table(40)
    targets = task.table.float()
    candidates = NB201.all_indices()[:500]
    assert torch.equal(bounded_score(module, task.archs, targets, candidates, bound=40),
                       score(module, task.archs, targets, candidates)[0])


def test_chunked_scores_rank_like_one_adaptation(module: MetaPredictor) -> None:
    task = _table(300)
    targets = task.table.float()
    candidates = NB201.all_indices()[:2000]
    whole = score(module, task.archs, targets, candidates)[0]
    parts = bounded_score(module, task.archs, targets, candidates, bound=100)
    rank = lambda x: torch.argsort(torch.argsort(x)).double()  # noqa: E731
    assert float(torch.corrcoef(torch.stack([rank(whole), rank(parts)]))[0, 1]) > 0.95
