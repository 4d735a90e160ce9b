"""Episodes and the DataModule: standardisation, sampling, roles, fixed validation, the target
task set refresh (only through the Oracle), and resumable state."""

from __future__ import annotations

import io

from dataclasses import fields

import pytest
import torch
from torch.testing import assert_close

from nas_lightning.tasks.task import Task
from nas_lightning.data import datamodule as dm_module
from nas_lightning.data.datamodule import NASTaskDataModule
from nas_lightning.data.episodes import EpisodeSource, sample_episodes
from nas_lightning.models.batch import EpisodeBatch
from nas_lightning.models.scoring import standardise
from nas_lightning.errors import UserError
from nas_lightning.oracles import OracleSettings

TARGET = "nb201/ImageNet16-120/val_acc"
SMALL = dict(steps_per_epoch=3, meta_batch=4, query=20, val_query=50, val_episodes=2)


# -- standardise -------------------------------------------------------------------------------
def test_standardise_uses_support_statistics_only() -> None:
    g = torch.Generator().manual_seed(0)
    ys, yq = 3 + 2 * torch.randn(4, 6, generator=g), torch.randn(4, 9, generator=g)
    s1, q1 = standardise(ys, yq)
    s2, q2 = standardise(ys, 100 * yq + 7)
    assert_close(s1, s2)  # query values never move the support
    mean, std = ys.mean(-1, keepdim=True), ys.std(-1, unbiased=False, keepdim=True)
    assert_close(s1, (ys - mean) / std)
    assert_close(q1, (yq - mean) / std)
    assert_close(s1.mean(-1), torch.zeros(4), atol=1e-5, rtol=0)
    assert_close(s1.std(-1, unbiased=False), torch.ones(4), atol=1e-5, rtol=0)


def test_standardise_constant_support_and_mask() -> None:
    ys, yq = torch.full((2, 5), 4.0), torch.tensor([[4.0, 5.0], [3.0, 4.0]])
    s, q = standardise(ys, yq)
    assert torch.isfinite(s).all() and torch.isfinite(q).all()
    assert_close(s, torch.zeros_like(s))
    assert_close(q, yq - 4.0)  # std falls back to 1
    # masked support entries do not enter the statistics
    ys = torch.tensor([[1.0, 3.0, 1000.0]])
    s, q = standardise(ys, torch.tensor([[2.0]]), torch.tensor([[True, True, False]]))
    assert_close(s[0, :2], torch.tensor([-1.0, 1.0]))
    assert_close(q, torch.tensor([[0.0]]))


# -- sample_episodes -----------------------------------------------------------------------------
def _pool(name: str, n: int, offset: int = 0, seed: int = 0, maximise: bool = True) -> EpisodeSource:
    g = torch.Generator().manual_seed(seed)
    archs = torch.arange(offset, offset + 7 * n, 7)
    return EpisodeSource(name, archs, torch.randn(n, generator=g), maximise)


def test_sample_episodes_shapes_and_disjoint() -> None:
    pools = [_pool("a", 60), _pool("b", 40, offset=3, seed=1, maximise=False)]
    b = sample_episodes(pools, 8, 5, 12, torch.Generator().manual_seed(0))
    assert b.pool.shape == (8,) and b.maximise.shape == (8,)
    assert b.support_archs.shape == b.ys.shape == (8, 5)
    assert b.query_archs.shape == b.yq.shape == b.query_mask.shape == (8, 12)
    assert b.support_archs.dtype == b.query_archs.dtype == torch.long and b.query_mask.all()
    for t in range(8):
        pool = pools[int(b.pool[t])]
        assert bool(b.maximise[t]) == pool.maximise
        s, q = b.support_archs[t].tolist(), b.query_archs[t].tolist()
        assert len(set(s)) == 5 and len(set(q)) == 12 and not set(s) & set(q)
        assert set(s + q) <= set(pool.archs.tolist())
        # targets are the pool's values, standardised by the support
        pos = {int(a): i for i, a in enumerate(pool.archs)}
        raw_s = pool.values[[pos[a] for a in s]][None]
        raw_q = pool.values[[pos[a] for a in q]][None]
        ref_s, ref_q = standardise(raw_s, raw_q)
        assert_close(b.ys[t], ref_s[0])
        assert_close(b.yq[t], ref_q[0])


def test_sample_episodes_small_pool_masks_query() -> None:
    pool = _pool("small", 8)
    b = sample_episodes([pool], 3, 3, 10, torch.Generator().manual_seed(1))
    assert b.query_mask.sum(-1).tolist() == [5, 5, 5]
    for t in range(3):
        m = b.query_mask[t]
        assert m[:5].all() and not m[5:].any()
        s, q = b.support_archs[t].tolist(), b.query_archs[t][m].tolist()
        assert sorted(s + q) == pool.archs.tolist()  # the whole pool, each architecture once
        assert (b.yq[t][~m] == 0).all()


def test_sample_episodes_direction_folded() -> None:
    g = torch.Generator().manual_seed(2)
    archs = torch.arange(0, 500, 5)
    raw = torch.rand(len(archs), generator=g, dtype=torch.float64) * 10
    for direction, sign in (("min", -1.0), ("max", 1.0)):
        task = Task(name=f"t/{direction}", direction=direction, archs=archs, table=raw)
        pool = EpisodeSource.from_task(task)
        assert pool.maximise == (direction == "max")
        b = sample_episodes([pool], 4, 10, 30, torch.Generator().manual_seed(0))
        for t in range(4):
            idx = torch.cat([b.support_archs[t], b.query_archs[t]])
            y = torch.cat([b.ys[t], b.yq[t]]).double()
            r = task.lookup(idx)
            corr = torch.corrcoef(torch.stack([y, r]))[0, 1]
            assert_close(corr, torch.tensor(sign, dtype=torch.float64), atol=1e-5, rtol=0)


def _same(a: EpisodeBatch, b: EpisodeBatch) -> bool:
    return all((getattr(a, f.name) is None and getattr(b, f.name) is None) or torch.equal(getattr(a, f.name), getattr(b, f.name))
               for f in fields(EpisodeBatch))


def test_sample_episodes_reproducible() -> None:
    pools = [_pool("a", 60), _pool("b", 40, offset=3, seed=1)]
    b1 = sample_episodes(pools, 6, 5, 12, torch.Generator().manual_seed(9))
    b2 = sample_episodes(pools, 6, 5, 12, torch.Generator().manual_seed(9))
    b3 = sample_episodes(pools, 6, 5, 12, torch.Generator().manual_seed(10))
    assert _same(b1, b2)
    assert not all(torch.equal(getattr(b1, k), getattr(b3, k)) for k in ("support_archs", "query_archs"))


# -- the DataModule -----------------------------------------------------------------------------
def _dm(**kw) -> NASTaskDataModule:
    args = dict(train_tasks=["nb201/cifar10/val_acc"], val_tasks=["nb201/cifar100/train_time"], target_tasks=[TARGET], **SMALL)
    args.update(kw)
    dm = NASTaskDataModule(**args)
    dm.setup("fit")
    return dm


def _batches(dm: NASTaskDataModule) -> list[EpisodeBatch]:
    return list(dm.train_dataloader())


def test_task_in_two_roles() -> None:
    with pytest.raises(UserError, match="one role"):
        _dm(val_tasks=["nb201/cifar10/val_acc"])
    with pytest.raises(UserError, match="one role"):
        _dm(target_tasks=["nb201/cifar10/val_acc"])


def test_report_only_training_task(monkeypatch: pytest.MonkeyPatch) -> None:
    real = dm_module.load_tasks

    def fake(spec, csv_dir=None):
        if spec == "fake/test_acc":
            return [Task(name=spec, direction="max", archs=torch.arange(50), table=torch.rand(50), report_only=True)]
        return real(spec, csv_dir)

    monkeypatch.setattr(dm_module, "load_tasks", fake)
    with pytest.raises(UserError, match="report-only"):
        _dm(train_tasks=["nb201/cifar10/val_acc", "fake/test_acc"])
    with pytest.raises(UserError, match="report-only"):
        _dm(val_tasks=["fake/test_acc"])


def test_task_smaller_than_an_episode() -> None:
    with pytest.raises(UserError):
        NASTaskDataModule(support=1)
    with pytest.raises(UserError, match="fewer than support"):
        _dm(support=20000)


def test_validation_batches_fixed() -> None:
    a, b = _dm(), _dm()
    va = list(a.val_dataloader())
    _batches(a)  # training draws do not move the validation episodes
    assert len(va) == 1 and va[0].support_archs.shape[0] == SMALL["val_episodes"]
    assert va[0].query_archs.shape[1] == SMALL["val_query"]
    for x, y, z in zip(va, list(a.val_dataloader()), list(b.val_dataloader())):
        assert _same(x, y) and _same(x, z)
    c = _dm(seed=1)
    assert not _same(va[0], list(c.val_dataloader())[0])


def test_train_batches_reproducible() -> None:
    a, b = _dm(), _dm()
    ba, bb = _batches(a), _batches(b)
    assert len(ba) == SMALL["steps_per_epoch"]
    assert all(_same(x, y) for x, y in zip(ba, bb))
    assert not _same(ba[0], ba[1])  # the generator advances


def test_target_enters_training_only_through_refresh() -> None:
    dm = _dm(support=4, oracle=OracleSettings(noisy=True))
    n_train = len(dm.train)
    assert [p.name for p in dm.train_pools()] == ["nb201/cifar10/val_acc"]
    oracle = dm.oracles[TARGET]
    asked = torch.arange(1000, 1000 + 9 * 37, 37)  # 9 >= support + 2 architectures
    oracle.query(asked)
    for b in _batches(dm):  # asked, but not fed back: still no target episode
        assert (b.pool < n_train).all()
    # too few for an episode: fed back but not yet a pool
    dm.refresh(TARGET, asked[:5])
    assert [p.name for p in dm.train_pools()] == ["nb201/cifar10/val_acc"]
    dm.refresh(TARGET, asked)
    assert dm.fed_back[TARGET] == asked.tolist()  # no duplicates
    assert [p.name for p in dm.train_pools()] == ["nb201/cifar10/val_acc", TARGET]

    seen_target = False
    for _ in range(3):
        for b in _batches(dm):
            for t in torch.nonzero(b.pool == n_train).flatten().tolist():
                seen_target = True
                m = b.query_mask[t]
                s, q = b.support_archs[t], b.query_archs[t][m]
                assert set(s.tolist() + q.tolist()) <= set(asked.tolist())
                assert bool(b.maximise[t])
                # the values are the oracle's answers (one noisy seed), not the table's means
                ref_s, ref_q = standardise(oracle.query(s).float()[None], oracle.query(q).float()[None])
                assert_close(b.ys[t], ref_s[0])
                assert_close(b.yq[t][m], ref_q[0])
    assert seen_target
    assert oracle.num_queries == len(asked)  # training re-reads answers for free


def test_refresh_unasked_architecture() -> None:
    dm = _dm()
    dm.oracles[TARGET].query(torch.tensor([1, 2, 3]))
    with pytest.raises(KeyError):
        dm.refresh(TARGET, torch.tensor([1, 2, 4]))
    assert dm.fed_back[TARGET] == []


def test_state_dict_round_trip() -> None:
    dm = _dm(support=4)
    asked = torch.arange(200, 200 + 12 * 11, 11)
    dm.oracles[TARGET].query(asked)
    dm.refresh(TARGET, asked)
    _batches(dm)
    buf = io.BytesIO()
    torch.save(dm.state_dict(), buf)
    expected = _batches(dm)

    fresh = _dm(support=4)
    assert fresh.fed_back[TARGET] == [] and len(fresh.train_pools()) == 1
    buf.seek(0)
    fresh.load_state_dict(torch.load(buf, weights_only=True))
    assert fresh.fed_back == dm.fed_back
    assert [p.name for p in fresh.train_pools()] == [p.name for p in dm.train_pools()]
    assert fresh.oracles[TARGET].history()[0].tolist() == asked.tolist()
    assert all(_same(x, y) for x, y in zip(_batches(fresh), expected))


def test_state_dict_foreign_target() -> None:
    state = _dm().state_dict()
    other = _dm(target_tasks=[])
    with pytest.raises(UserError, match="does not have"):
        other.load_state_dict(state)


def test_datamodule_never_reads_target_table(monkeypatch: pytest.MonkeyPatch) -> None:
    """Leakage guard: the target's whole table (``Task.values``) is never read; only the Oracle."""
    real = dm_module.load_tasks
    guarded = []

    def parse(spec, csv_dir=None):
        tasks = real(spec, csv_dir)
        if spec == TARGET:
            for t in tasks:
                def boom():
                    raise AssertionError("the DataModule read the target table")
                t.values = boom
                guarded.append(t)
        return tasks

    monkeypatch.setattr(dm_module, "load_tasks", parse)
    dm = _dm(support=4)
    assert guarded, "the guard was not installed"
    with pytest.raises(AssertionError):
        guarded[0].values()
    _batches(dm)
    asked = torch.arange(5000, 5000 + 8 * 13, 13)
    dm.oracles[TARGET].query(asked)
    dm.refresh(TARGET, asked)
    assert any((b.pool == len(dm.train)).any() for _ in range(3) for b in _batches(dm))
    fresh = _dm(support=4)
    fresh.load_state_dict(dm.state_dict())
    _batches(fresh)
