"""``graph``: leave-one-dataset-out over NAS-Bench-Graph's eight full datasets (26,206 architectures).

For each held-out dataset D, ``configs/graph.yaml`` (with ``configs/held_out.yaml``, no target) is
trained on the ``val_acc``, ``latency`` and ``params`` tables of the other seven datasets only, and
the same again with ``configs/pretrain.yaml`` (the pretrain + fine-tune baseline); model selection
stays on ``nbg/proteins/val_acc``. D's tables are then used twice, each time reached only through a
budgeted oracle:

- ``rank`` at each K: meta, gp (the same predictor with the GP head: also the coverage of its 80 %
  intervals and its negative log predictive density), pretrain, scratch, transfer from the mean of the other datasets'
  standardised ``val_acc`` (the fold's training datasets), the best single training table chosen
  on the support (any metric; and among the ``val_acc`` tables only), and a ridge mix of the
  others' ``val_acc`` fitted on the support. Spearman over all 26,206 architectures.
- ``compare``: meta, meta_gp (the GP head's upper confidence bound), transfer (from the same mean of the others), rea, random and local with a
  fixed budget and seeds, searching ``val_acc``; regret on validation, the test regret of the
  architecture each run picked on validation (``test_acc`` read after the fact), and the queries
  to the first architecture in the top 0.1 % by validation accuracy.
"""

from __future__ import annotations

import logging
import math
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import torch
from torchmetrics.functional import spearman_corrcoef

from benchmarks import common
from benchmarks.graph_report import markdown, missed, targets
from benchmarks.train_time import TINY_ARGS, timed_train
from nas_lightning.commands.common import pretrained_for
from nas_lightning.models.scoring import FineTuneOptions
from nas_lightning.models.checkpoint import load_predictor
from nas_lightning.models.module import MetaPredictor
from nas_lightning.models.gp import GPHyper
from nas_lightning.models.gp_fit import GPOptions
from nas_lightning.models.scoring import PredictorScorer
from nas_lightning.search import make_strategy
from nas_lightning.search.meta import MetaSearch
from nas_lightning.search.posterior import GPScorer, PosteriorSearch
from nas_lightning.rankers.baselines import baselines
from nas_lightning.rankers.posterior import GPRanker, gp_hyper
from nas_lightning.rankers.ranking import rank_only, rank_with, support_draw
from nas_lightning.search.runner import run_comparison
from nas_lightning.spaces import NBG
from nas_lightning.spaces.nbg_tables import DATASETS
from nas_lightning.tasks.nbg import load_nbg
from nas_lightning.oracles import TableOracle
from nas_lightning.tasks.task import Task

log = logging.getLogger(__name__)
__all__ = ["markdown", "missed", "run", "targets"]
CONFIGS = common.ROOT / "configs"
METRICS = ("val_acc", "latency", "params")  # the tables each training dataset contributes
RANK_METHODS = ("meta", "gp", "pretrain", "scratch", "transfer_mean", "transfer_best", "transfer_best_acc", "ridge")
STRATEGIES = ("meta", "meta_gp", "transfer", "rea", "random", "local")
TOP_SHARE = 0.001  # "top 0.1 %": the best ceil(0.001 * n) architectures by validation accuracy, ties included
RIDGE_ALPHA = 1.0


def train_args(held: str, datasets: tuple[str, ...], run: str, pretrain: bool, tiny: bool) -> list[str]:
    """``train.py`` arguments of the fold that holds ``held`` out: every other dataset's tables."""
    tasks = [f"nbg/{d}/{m}" for d in datasets if d != held for m in (METRICS[:1] if tiny else METRICS)]
    args = ["--config", str(CONFIGS / "graph.yaml"), "--config", str(CONFIGS / "held_out.yaml")]
    args += ["--config", str(CONFIGS / "pretrain.yaml")] if pretrain else []
    return args + ["--data.train_tasks", "[" + ",".join(tasks) + "]", "--data.target_tasks", "[]",
                   "--checkpoint.dirpath", f"runs/{run}/checkpoints", "--trainer.logger", "false",
                   "--trainer.enable_progress_bar", "false", *(TINY_ARGS if tiny else [])]


def fold_checkpoint(held: str, datasets: tuple[str, ...], ckpt_dir: Path, pretrain: bool,
                    tiny: bool) -> tuple[Path, dict[str, Any] | None]:
    """The fold's ``last.ckpt`` under ``ckpt_dir``, trained first when missing (with its timing)."""
    run = f"graph_lodo_{held}" + ("_pretrain" if pretrain else "")
    path = ckpt_dir / "runs" / run / "checkpoints" / "last.ckpt"
    if path.is_file():
        return path, None
    log.info("graph: training %s into %s", run, ckpt_dir)
    return path, timed_train(train_args(held, datasets, run, pretrain, tiny), ckpt_dir)


def _z(x: torch.Tensor) -> torch.Tensor:
    return (x - x.mean()) / x.std()


def mean_source(others: list[Task]) -> Task:
    """The mean of the ``others``' standardised tables (full tables over the whole space) as a task."""
    if not others or any(t.size != NBG.size for t in others):
        raise ValueError("mean_source needs full nbg tables")
    table = torch.stack([_z(t.table.double()) * t.sign for t in others]).mean(0)
    names = ",".join(t.name.split("/")[1] for t in others)
    return Task(name=f"mean of nbg/{{{names}}}/val_acc", direction="max", archs=others[0].archs, table=table, space=NBG)


def ridge_spearman(task: Task, others: list[Task], k: int, draws: int, alpha: float = RIDGE_ALPHA) -> list[float]:
    """Per draw (the supports of :func:`rank_only`), the Spearman of a ridge mix of the ``others``'
    standardised tables fitted on the K support values of ``task`` (read through the same draw)."""
    x = torch.stack([_z(t.table.double()) * t.sign for t in others], 1)  # [n, S], rows in index order
    out = []
    for seed in range(draws):
        chosen = support_draw(task, k, seed)
        y = TableOracle(task, budget=k).query(chosen).double() * task.sign  # the K support values, through an oracle
        y = (y - y.mean()) / y.std().clamp_min(1e-12)
        xs = x[chosen]
        w = torch.linalg.solve(xs.T @ xs + alpha * torch.eye(x.shape[1], dtype=x.dtype), xs.T @ y)
        out.append(float(spearman_corrcoef(x @ w, task.table.double() * task.sign)))  # scored after the fact
    return out


def _summ(values: list[float]) -> dict[str, Any]:
    return {"spearman_mean": statistics.fmean(values), "spearman_std": statistics.pstdev(values), "spearman": values}


def rank_fold(held: str, module: MetaPredictor, pretrained: MetaPredictor, others: list[str], ks: list[int],
              draws: int, hyper: GPHyper) -> dict[str, dict[str, Any]]:
    """Every ranking method at every K on the held-out dataset's ``val_acc`` (``hyper``: the GP head's)."""
    task = load_nbg(held, "val_acc")
    accs = [load_nbg(o, "val_acc") for o in others]
    tables = [load_nbg(o, m) for o in others for m in METRICS]
    mean = mean_source(accs)
    out = {}
    for k in ks:
        rankers = baselines(task, module, mean, pretrained=pretrained)
        rankers.insert(1, GPRanker(module, True, hyper))
        a = rank_with(task, rankers, k, draws)
        b = rank_only(task, None, k, draws, sources=tables)
        c = rank_only(task, None, k, draws, sources=accs)
        keep = ("spearman_mean", "spearman_std", "kendall_mean", "spearman")
        row = {m: {f: a[m][f] for f in keep} for m in ("meta", "gp", "pretrain", "scratch")}
        row["gp"].update({f: a["gp"][f] for f in ("coverage80_mean", "nlpd_mean", "coverage80", "nlpd")})
        row["transfer_mean"] = {f: a["transfer"][f] for f in keep}
        row["transfer_best"] = {**{f: b["transfer"][f] for f in keep}, "sources": b["transfer"]["sources"]}
        row["transfer_best_acc"] = {**{f: c["transfer"][f] for f in keep}, "sources": c["transfer"]["sources"]}
        row["ridge"] = _summ(ridge_spearman(task, accs, k, draws))
        out[str(k)] = row
        log.info("graph rank %s K=%d: %s", held, k, {m: round(r["spearman_mean"], 3) for m, r in row.items()})
    return out


def top_threshold(values: torch.Tensor, share: float = TOP_SHARE) -> float:
    """The validation value an architecture must reach to be in the top ``share`` (ties included)."""
    n = max(1, math.ceil(share * len(values)))
    return float(torch.sort(values, descending=True).values[n - 1])


def first_hit(values: list[float], threshold: float) -> int | None:
    """The 1-based query at which a value first reaches ``threshold`` (``None``: never)."""
    return next((t + 1 for t, v in enumerate(values) if v >= threshold), None)


def meta_schedule(meta: MetaSearch, size: int) -> dict[str, Any]:
    """The settings that decide which candidates ``meta`` scores on a space of ``size`` architectures."""
    keys = ("max_candidates", "num_parents", "init_random", "init_global", "local_parents", "global_every", "beta")
    return {"large_space": size > meta.max_candidates, **{k: getattr(meta, k) for k in keys}}


def compare_fold(held: str, module: MetaPredictor, mean: Task, budget: int, seeds: list[int],
                 schedule: dict[str, int] | None = None, hyper: GPHyper | None = None) -> dict[str, Any]:
    """The search comparison on ``nbg/<held>/val_acc``, scored on validation and, after the fact, on test.
    ``schedule``: :class:`MetaSearch` arguments replacing its defaults (``local_parents``, ``global_every``)."""
    task = load_nbg(held, "val_acc")
    scorer = PredictorScorer(module, True, 8)  # search.py compare's defaults: 8 members, beta 0.5
    def meta() -> MetaSearch:
        return MetaSearch(scorer, beta=0.5, **(schedule or {}))

    head = GPScorer(module, True, hyper or GPHyper())
    factories = {"meta": meta,
                 "meta_gp": lambda: PosteriorSearch(head, name="meta_gp"),
                 "transfer": lambda: make_strategy("transfer", source=mean),
                 **{n: (lambda n=n: make_strategy(n)) for n in STRATEGIES[3:]}}
    results = run_comparison(task, factories, budget, seeds)
    test = load_nbg(held, "test_acc")  # evaluation only: the test accuracy of what each run picked
    test_opt = float(test.table.max())
    threshold = top_threshold(task.table)
    out: dict[str, Any] = {"optimum_val": results["optimum"]["value"], "optimum_test": test_opt,
                           "top_threshold": threshold, "meta_schedule": meta_schedule(meta(), task.size), "strategies": {}}
    for name, r in results["strategies"].items():
        picks = torch.tensor([NBG.from_string(s["best_arch"]) for s in r["per_seed"]], dtype=torch.long)
        test_regret = [test_opt - float(v) for v in test.lookup(picks)]
        hits = [first_hit(s["values"], threshold) for s in r["per_seed"]]
        med = statistics.median_low([math.inf if h is None else h for h in hits])
        val_regret = [s["regret"] for s in r["per_seed"]]
        out["strategies"][name] = {
            "val_regret": r["regret_at"][str(budget)], "val_regret_at": r["regret_at"], "val_regret_per_seed": val_regret,
            "test_regret": statistics.fmean(test_regret), "test_regret_per_seed": test_regret,
            "queries_to_top_median": None if math.isinf(med) else int(med), "queries_to_top": hits,
            "top_hit_rate": sum(h is not None for h in hits) / len(hits), "seconds_per_run": r["seconds_mean"]}
        log.info("graph compare %s %s: %s", held, name, {k: v for k, v in out["strategies"][name].items()
                                                           if k in ("val_regret", "test_regret", "queries_to_top_median")})
    return out


def run(tiny: bool = False, device: str = "cpu", ckpt_dir: str | None = None, seeds: int | None = None,
        budget: int | None = None, first_seed: int = 0, schedule: dict[str, int] | None = None,
        draws: int | None = None) -> dict[str, Any]:
    """The whole benchmark; returns the JSON-ready result. ``ckpt_dir`` keeps the folds' checkpoints
    (reused when present); without it they are trained in a temporary folder. The searches use the
    seeds ``first_seed, ..., first_seed + seeds - 1``; the ranking uses ``draws`` support draws
    (default 20, always from draw 0); ``schedule`` replaces meta's large-space defaults (see
    :func:`compare_fold`)."""
    seeds, budget = seeds or (1 if tiny else 20), budget or (5 if tiny else 100)
    draws = draws or (1 if tiny else 20)
    MetaSearch(scorer=None, **(schedule or {}))  # a bad schedule fails here (UserError), before any training
    ks = [3] if tiny else [10, 50]
    datasets = DATASETS[:3] if tiny else DATASETS  # tiny: three datasets, one held out
    held_out = datasets[:1] if tiny else datasets
    start = time.perf_counter()
    res: dict[str, Any] = {"benchmark": "graph", "machine": common.machine(), "tiny": tiny, "seeds": seeds,
                           "draws": draws, "first_seed": first_seed, "budget": budget, "ks": ks, "datasets": list(datasets), "folds": {}}
    with tempfile.TemporaryDirectory(prefix="nas_bench_graph_") as tmp:
        root = Path(ckpt_dir).resolve() if ckpt_dir else Path(tmp)
        res["ckpt_dir"] = str(root) if ckpt_dir else None
        for held in held_out:
            others = [d for d in datasets if d != held]
            ckpt, training = fold_checkpoint(held, datasets, root, False, tiny)
            pre, pre_training = fold_checkpoint(held, datasets, root, True, tiny)
            module = load_predictor(ckpt, device, NBG)
            if set(module.trained_on["tasks"]) & {f"nbg/{held}/{m}" for m in METRICS}:
                raise RuntimeError(f"{ckpt} was trained on {held}'s tables: not a held-out fold")
            pretrained = pretrained_for(FineTuneOptions(str(pre), 20, 0.03), load_nbg(held, "val_acc"), device)
            fold_start = time.perf_counter()
            hyper = gp_hyper(module, load_nbg(held, "val_acc"), GPOptions())  # on the fold's training tables only
            ranked = rank_fold(held, module, pretrained, others, ks, draws, hyper)
            mean = mean_source([load_nbg(o, "val_acc") for o in others])
            compared = compare_fold(held, module, mean, budget, list(range(first_seed, first_seed + seeds)), schedule,
                                    hyper)
            res["folds"][held] = {"trained_on": others, "checkpoint": str(ckpt), "pretrained": str(pre),
                                  "gp_hyper": hyper.as_dict(),
                                  "training": training, "pretrain_training": pre_training, "rank": ranked,
                                  "compare": compared, "seconds": time.perf_counter() - fold_start}
            if ckpt_dir:  # each fold's figures as soon as they exist (the whole JSON comes at the end)
                common.write_json(res["folds"][held], root / f"graph_fold_{held}.json")
            log.info("graph: fold %s done", held)
    res["targets"] = None if tiny else targets(res)
    res["seconds"] = time.perf_counter() - start
    return res
