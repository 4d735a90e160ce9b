"""``search``: the results tables. Every strategy of ``search.py`` on the three NB201 datasets as
held-out targets (each with its own checkpoint). The few-shot device-latency figures come from the
leave-devices-out cross-validation, ``bench devices`` (the device config trains on every table).

Checkpoints are ``<ckpt-dir>/runs/<run>/checkpoints/last.ckpt``, what ``python train.py
--config configs/<run>.yaml`` writes; a missing one is trained first (timed).
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import tempfile
import time
from pathlib import Path
from typing import Any


from benchmarks import common
from benchmarks.train_time import TINY_ARGS, timed_train
from nas_lightning.search import STRATEGIES
from nas_lightning.commands import main as search_main
from nas_lightning.search.runner import regret_marks

log = logging.getLogger(__name__)
# (dataset, target spec, run name / config, transfer source: the other dataset closest to it)
TARGETS = [
    ("ImageNet16-120", "nb201/ImageNet16-120/val_acc", "default", "nb201/cifar100/val_acc"),
    ("cifar100", "nb201/cifar100/val_acc", "target_cifar100", "nb201/cifar10/val_acc"),
    ("cifar10", "nb201/cifar10/val_acc", "target_cifar10", "nb201/cifar100/val_acc"),
]
RANK_METHODS = ("meta", "gp", "pretrain", "transfer", "params", "scratch")


def checkpoint(run: str, ckpt_dir: Path, tiny: bool, extra: list[str] | None = None,
               pretrain: bool = False) -> tuple[Path, dict[str, Any] | None]:
    """The run's ``last.ckpt``, trained first when missing; with the training's timing if it ran.

    Every run trains with ``configs/held_out.yaml`` (never on a target value); ``pretrain`` trains the
    same run with ``configs/pretrain.yaml`` (no inner loop, no context) into ``runs/<run>_pretrain``.
    """
    name = f"{run}_pretrain" if pretrain else run
    path = ckpt_dir / "runs" / name / "checkpoints" / "last.ckpt"
    if path.is_file():
        return path, None
    args = [] if run == "default" else ["--config", str(common.ROOT / "configs" / f"{run}.yaml")]
    args += ["--config", str(common.ROOT / "configs" / "held_out.yaml")]  # never trained on a target value
    if pretrain:
        args += ["--config", str(common.ROOT / "configs" / "pretrain.yaml"), "--checkpoint.dirpath",
                 f"runs/{name}/checkpoints", "--trainer.logger.init_args.name", name]
    log.info("training %s into %s", run, ckpt_dir)
    timing = timed_train(args + (extra or []) + (TINY_ARGS if tiny else []), ckpt_dir)
    return path, timing


def _cli(argv: list[str]) -> dict[str, Any]:
    """Run ``search.py ARGV`` in this process (its table printed to our log) and read its results.json."""
    out = Path(argv[argv.index("--out") + 1])
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        search_main(argv)
    log.info("search.py %s\n%s", " ".join(argv), buf.getvalue())
    return json.loads((out / "results.json").read_text())


def nb201(ckpt_dir: Path, out: Path, seeds: int, draws: int, budget: int, device: str, tiny: bool) -> dict[str, Any]:
    """Every strategy on each NB201 dataset as the held-out target."""
    res: dict[str, Any] = {}
    for dataset, spec, run, source in TARGETS[:1] if tiny else TARGETS:
        ckpt, training = checkpoint(run, ckpt_dir, tiny)
        pre, pre_training = checkpoint(run, ckpt_dir, tiny, pretrain=True)
        start = time.perf_counter()
        argv = ["compare", "--task", spec, "--strategy", ",".join(STRATEGIES), "--source", source, "--budget", str(budget),
                "--seeds", str(seeds), "--ckpt", str(ckpt), "--pretrain.ckpt", str(pre), "--out", str(out / f"search_{dataset}"),
                "--device", device]
        results = _cli(argv)
        noisy_argv = [*argv[:-4], "--oracle.noisy", "true", "--out", str(out / f"search_{dataset}_noisy"), "--device", device]
        noisy = _cli(noisy_argv)
        gp_argv = ["compare", "--task", spec, "--strategy", "meta", "--budget", str(budget), "--seeds", str(seeds),
                   "--ckpt", str(ckpt), "--meta.head", "gp", "--out", str(out / f"search_{dataset}_gp"), "--device", device]
        with_gp = _cli(gp_argv)
        rank_argv = ["rank", "--task", spec, "--ckpt", str(ckpt), "--pretrain.ckpt", str(pre), "--support", "10",
                     "--seeds", str(draws), "--source", source, "--head", "gp", "--out", str(out / f"rank_{dataset}"),
                     "--device", device]
        ranked = _cli(rank_argv)
        res[dataset] = {"task": spec, "checkpoint": str(ckpt), "run": run, "transfer_source": source, "training": training,
                        "pretrained": str(pre), "pretrain_training": pre_training,
                        "command": "python search.py " + " ".join(common.shown_args(argv)), "seconds": time.perf_counter() - start,
                        "optimum": results["optimum"],
                        "strategies": {**_summary(results), "meta_gp": _summary(with_gp)["meta"]},
                        "gp_command": "python search.py " + " ".join(common.shown_args(gp_argv)),
                        "checkpoint_trained_on_task": results.get("checkpoint_trained_on_task"),
                        "checkpoint_fed_back_queries": results.get("checkpoint_fed_back_queries"),
                        "noisy": {"command": "python search.py " + " ".join(common.shown_args(noisy_argv)), "strategies": _summary(noisy)},
                        "rank": {"command": "python search.py " + " ".join(common.shown_args(rank_argv)), "support": 10, "draws": ranked["draws"],
                                 "methods": {m: {k: ranked[m][k] for k in ("spearman_mean", "spearman_std", "kendall_mean",
                                                                           "coverage80_mean", "nlpd_mean") if k in ranked[m]}
                                             for m in RANK_METHODS if m in ranked}}}
    return res


def _summary(results: dict[str, Any]) -> dict[str, Any]:
    out = {}
    for name, r in results["strategies"].items():
        out[name] = {"regret_at": r["regret_at"], "hit_rate": r["hit_rate_at"],
                     "queries_to_optimum_median": r["queries_to_optimum_median"], "seconds_per_run": r["seconds_mean"]}
    return out


def run(tiny: bool = False, device: str = "cpu", ckpt_dir: str | None = None, seeds: int | None = None,
        budget: int | None = None, draws: int | None = None) -> dict[str, Any]:
    """The whole benchmark (``seeds`` search runs per strategy, ``draws`` support draws of the
    ranking); returns the JSON-ready result."""
    seeds, budget = seeds or (2 if tiny else 20), budget or (5 if tiny else 100)
    draws = draws or seeds
    start = time.perf_counter()
    res: dict[str, Any] = {"benchmark": "search", "machine": common.machine(), "seeds": seeds, "budget": budget, "tiny": tiny}
    with tempfile.TemporaryDirectory(prefix="nas_bench_search_") as tmp:
        root = (Path(ckpt_dir) if ckpt_dir else (Path(tmp) if tiny else common.ROOT)).resolve()
        res["ckpt_dir"] = str(root)
        res["nb201"] = nb201(root, Path(tmp) / "out", seeds, draws, budget, device, tiny)
    res["seconds"] = time.perf_counter() - start
    res["within_30_min"] = None if tiny else res["seconds"] < 1800
    return res


def markdown(res: dict[str, Any]) -> str:
    """The sections for BENCHMARKS.md."""
    out = [f"{res['seeds']} seeds per strategy, budget {res['budget']} (regret at 10, 20 and 50 from the same runs); "
           "regret in accuracy points (mean over seeds); hit = share of seeds that queried the optimum within the "
           "budget; q-to-opt = median queries until the optimum was queried (- : found by fewer than half the seeds)."]
    for dataset, r in res["nb201"].items():
        ms = regret_marks(res["budget"])
        rows = [[name, *[common.f3(s["regret_at"][str(m)]) for m in ms], f"{s['hit_rate'][str(ms[-1])]:.2f}",
                 "-" if s["queries_to_optimum_median"] is None else s["queries_to_optimum_median"], f"{s['seconds_per_run']:.2f}"]
                for name, s in r["strategies"].items()]
        out += ["", f"**{dataset}** (target `{r['task']}`, checkpoint `runs/{r['run']}`, transfer from `{r['transfer_source']}`, "
                f"optimum {r['optimum']['value']:.2f}); `{r['command']}`"
                + (f"; meta_gp (meta with the GP head: the upper confidence bound of its posterior): `{r['gp_command']}`"
                   if "gp_command" in r else ""), "",
                common.table(["strategy", *[f"regret@{m}" for m in ms], f"hit@{ms[-1]}", "q-to-opt", "s / run"], rows)]
        if "noisy" in r:
            rows = [[name, *[common.f3(s["regret_at"][str(m)]) for m in ms], f"{s['hit_rate'][str(ms[-1])]:.2f}",
                     "-" if s["queries_to_optimum_median"] is None else s["queries_to_optimum_median"]]
                    for name, s in r["noisy"]["strategies"].items()]
            out += ["", f"*{dataset}, noisy oracle* (each query answers one sampled training seed; regret is scored on "
                    f"the table's seed means); `{r['noisy']['command']}`", "",
                    common.table(["strategy", *[f"regret@{m}" for m in ms], f"hit@{ms[-1]}", "q-to-opt"], rows)]
    ranked = {d: r["rank"] for d, r in res["nb201"].items() if "rank" in r}
    if ranked:
        methods = [m for m in RANK_METHODS if all(m in r["methods"] for r in ranked.values())]
        rows = [[d, *[_sp(r["methods"][m]) for m in methods]] for d, r in ranked.items()]
        draws = next(iter(ranked.values()))["draws"]
        out += ["", "### Few-shot ranking of the NB201 targets (K = 10)", "",
                f"Spearman over all 15,625 architectures, mean ± std over {draws} support draws of 10, each target with "
                "its own held-out checkpoint; pretrain = the same predictor pretrained on the same tables without an "
                "inner loop or context (`configs/pretrain.yaml`), fine-tuned on the support; transfer = the fixed "
                "source table of the search above; commands: "
                + "; ".join(f"`{r['command']}`" for r in ranked.values()), "",
                common.table(["target", *methods], rows)]
        calibrated = {d: r["methods"]["gp"] for d, r in ranked.items() if "coverage80_mean" in r["methods"].get("gp", {})}
        if calibrated:
            out += ["", "The GP head (`--head gp`): share of the held-out values inside its central 80 % predictive "
                    "interval (calibrated: 0.80) and its negative log predictive density (units of the table's standard "
                    "deviation), mean over the draws:", "",
                    common.table(["target", "80 % coverage", "NLPD"],
                                 [[d, f"{c['coverage80_mean']:.3f}", f"{c['nlpd_mean']:.2f}"] for d, c in calibrated.items()])]
    trained = [(d, r[k]) for d, r in res["nb201"].items() for k in ("training", "pretrain_training") if r.get(k)]
    if trained:
        out += ["", "Checkpoints trained by this run: " + "; ".join(
            f"`{t['train_command']}` {t['wall_s']:.0f} s, {t['peak_rss_mb']:.0f} MB" for _, t in trained)]
    out += ["", f"Whole benchmark: {res['seconds'] / 60:.1f} min (limit 30 min: {common.verdict(res['within_30_min'])})."]
    return "\n".join(out)


def _sp(r: dict[str, float] | None) -> str:
    return "-" if r is None else f"{r['spearman_mean']:.3f} ± {r['spearman_std']:.3f}"
