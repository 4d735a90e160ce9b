"""``scoring``: scoring the whole space with an adapted predictor, and one search round.

The predictor is the default one (seeded, untrained: the weights do not change the cost) or
``--ckpt``; the support is 10 random architectures of ImageNet16-120 accuracy.
"""

from __future__ import annotations

import statistics
import time
from typing import Any

import torch

from benchmarks import common
from nas_lightning.models.checkpoint import load_predictor
from nas_lightning.models.module import MetaPredictor
from nas_lightning.models.scoring import PredictorScorer, forward_members, score, standardise
from nas_lightning.spaces import NB201
from nas_lightning.tasks.load import load_task
from nas_lightning.oracles import TableOracle
from nas_lightning.search.meta import MetaSearch
from nas_lightning.tasks.task import Task

TARGET_MS = 20.0
TASK = "nb201/ImageNet16-120/val_acc"


def predictor(ckpt: str | None, device: str, hidden: int = 128) -> MetaPredictor:
    """The predictor to time: a checkpoint, or the default architecture freshly initialised (seed 0)."""
    if ckpt:
        return load_predictor(ckpt, device)
    torch.manual_seed(0)
    return MetaPredictor(hidden=hidden).to(device).eval()


def run(tiny: bool = False, device: str = "cpu", ckpt: str | None = None, reps: int | None = None) -> dict[str, Any]:
    """The whole benchmark; returns the JSON-ready result."""
    reps = reps or (3 if tiny else 15)
    module = predictor(ckpt, device, 16 if tiny else 128)
    task = load_task(TASK)
    g = torch.Generator().manual_seed(0)
    support = task.archs[torch.randperm(task.size, generator=g)[:10]]
    targets = task.lookup(support).float()
    cands = NB201.all_indices()
    if tiny:
        cands = cands[:2000]
    res: dict[str, Any] = {"benchmark": "scoring", "machine": common.machine(), "device": device, "reps": reps,
                           "candidates": len(cands), "support": len(support), "checkpoint": ckpt}

    def score_all(members: int) -> torch.Tensor:
        return score(module, support, targets, cands, True, members, torch.Generator().manual_seed(0))

    res["score_ms"] = {m: 1e3 * common.time_fn(lambda m=m: score_all(m), reps, device=device)["median_s"] for m in (1, 8)}
    # the forward alone: adapted once, then every candidate scored (one batched call)
    ys, _ = standardise(targets[None], targets[None])
    with torch.enable_grad():
        fast, z = module.adapt(support[None].to(device), ys.to(device), torch.ones(1, dtype=torch.bool, device=device),
                               meta_graph=False)
    fast = {k: v.detach() for k, v in fast.items()}
    z = None if z is None else z.detach()
    with torch.no_grad():
        res["forward_only_ms"] = 1e3 * common.time_fn(lambda: forward_members(module, fast, z, cands.to(device)), reps,
                                                      device=device)["median_s"]
    res["search_round"] = search_round(module, task, 2 if tiny else 5, reps=3 if tiny else 7, history=20)
    res["target"] = {"full_space_ms": res["score_ms"][1], "limit_ms": TARGET_MS,
                     "met": None if tiny else bool(res["score_ms"][1] < TARGET_MS)}
    return res


def search_round(module: MetaPredictor, task: Task, per_round: int, reps: int, history: int) -> dict[str, Any]:
    """Seconds of one search round as the training callback runs it: ``per_round`` queries with
    8 bootstrap members (beta 0.5), each on an oracle that already answered ``history`` random ones."""
    times = []
    for rep in range(reps):
        oracle = TableOracle(task, seed=rep)
        g = torch.Generator().manual_seed(rep)
        oracle.query(task.archs[torch.randperm(task.size, generator=g)[:history]])
        strategy = MetaSearch(PredictorScorer(module, task.direction == "max", 8), batch=1, beta=0.5)
        start = time.perf_counter()
        strategy.run(oracle, per_round, g)
        times.append(time.perf_counter() - start)
    med = statistics.median(times)
    return {"queries": per_round, "members": 8, "history": history, "median_s": med, "per_query_ms": 1e3 * med / per_round}


def markdown(res: dict[str, Any]) -> str:
    """The section for BENCHMARKS.md."""
    n = res["candidates"]
    sr = res["search_round"]
    rows = [
        [f"score() all {n} architectures, 1 member (adapt on 10 + score)", f"{res['score_ms'][1]:.1f} ms"],
        [f"score() all {n} architectures, 8 bootstrap members, members 2-8 on the top-1024 shortlist (what search uses)", f"{res['score_ms'][8]:.1f} ms"],
        [f"forward only: {n} architectures with adapted weights", f"{res['forward_only_ms']:.1f} ms"],
        [f"one search round: {sr['queries']} queries, 8 members, after {sr['history']} answers",
         f"{1e3 * sr['median_s']:.0f} ms ({sr['per_query_ms']:.0f} ms per query)"],
    ]
    t = res["target"]
    return (common.table(["what", f"median ({res['device']})"], rows)
            + f"\n\n- target: full space under {t['limit_ms']:.0f} ms on CPU (1 member): {common.verdict(t['met'])} "
              f"({t['full_space_ms']:.1f} ms)")
