"""``search``: the results tables. Every strategy of ``search.py`` on the three NB201 datasets as
held-out targets (each with its own checkpoint), and the few-shot device-latency ranking.

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

import yaml

from nas_lightning.bench import common
from nas_lightning.bench.train import TINY_ARGS, timed_train
from nas_lightning.search import STRATEGIES
from nas_lightning.commands import main as search_main
from nas_lightning.search.runner import regret_marks
from nas_lightning.tasks.spec import TaskSpec

log = logging.getLogger(__name__)
# (dataset, target spec, run name / config, transfer source: the other dataset closest to it)
TARGETS = [
    ("ImageNet16-120", "nb201/ImageNet16-120/val_acc", "default", "nb201/cifar100/val_acc"),
    ("cifar100", "nb201/cifar100/val_acc", "target_cifar100", "nb201/cifar10/val_acc"),
    ("cifar10", "nb201/cifar10/val_acc", "target_cifar10", "nb201/cifar100/val_acc"),
]
DEVICE_RUN = "device_latency"
DEVICE_DATA = common.ROOT.parent / "shared" / "data" / "nb201-device-latency"
DEVICE_TARGET = 0.95  # the held-out devices' mean meta Spearman to reach
DEVICE_METHODS = ("meta", "transfer", "params", "scratch")
RANK_METHODS = ("meta", "pretrain", "transfer", "params", "scratch")


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


def nb201(ckpt_dir: Path, out: Path, seeds: int, budget: int, device: str, tiny: bool) -> dict[str, Any]:
    """Every strategy on each NB201 dataset as the held-out target."""
    res: dict[str, Any] = {}
    for dataset, spec, run, source in TARGETS[:1] if tiny else TARGETS:
        ckpt, training = checkpoint(run, ckpt_dir, tiny)
        pre, pre_training = checkpoint(run, ckpt_dir, tiny, pretrain=True)
        start = time.perf_counter()
        argv = ["compare", "--task", spec, "--strategy", ",".join(STRATEGIES), "--source", source, "--budget", str(budget),
                "--seeds", str(seeds), "--ckpt", str(ckpt), "--pretrained", str(pre), "--out", str(out / f"search_{dataset}"),
                "--device", device]
        results = _cli(argv)
        noisy_argv = [*argv[:-4], "--noisy", "--out", str(out / f"search_{dataset}_noisy"), "--device", device]
        noisy = _cli(noisy_argv)
        rank_argv = ["rank", "--task", spec, "--ckpt", str(ckpt), "--pretrained", str(pre), "--support", "10",
                     "--seeds", str(seeds), "--source", source, "--out", str(out / f"rank_{dataset}"), "--device", device]
        ranked = _cli(rank_argv)
        res[dataset] = {"task": spec, "checkpoint": str(ckpt), "run": run, "transfer_source": source, "training": training,
                        "pretrained": str(pre), "pretrain_training": pre_training,
                        "command": "python search.py " + " ".join(argv), "seconds": time.perf_counter() - start,
                        "optimum": results["optimum"], "strategies": _summary(results),
                        "checkpoint_trained_on_task": results.get("checkpoint_trained_on_task"),
                        "checkpoint_fed_back_queries": results.get("checkpoint_fed_back_queries"),
                        "noisy": {"command": "python search.py " + " ".join(noisy_argv), "strategies": _summary(noisy)},
                        "rank": {"command": "python search.py " + " ".join(rank_argv), "support": 10, "draws": ranked["draws"],
                                 "methods": {m: {k: ranked[m][k] for k in ("spearman_mean", "spearman_std", "kendall_mean")}
                                             for m in RANK_METHODS if m in ranked}}}
    return res


def _summary(results: dict[str, Any]) -> dict[str, Any]:
    out = {}
    for name, r in results["strategies"].items():
        out[name] = {"regret_at": r["regret_at"], "hit_rate": r["hit_rate_at"],
                     "queries_to_optimum_median": r["queries_to_optimum_median"], "seconds_per_run": r["seconds_mean"]}
    return out


def device_means(dl: dict[str, Any]) -> dict[str, float]:
    """Each method's Spearman averaged over the held-out devices (methods every device has)."""
    rows = dl["devices"].values()
    return {m: sum(r[m]["spearman_mean"] for r in rows) / len(rows)
            for m in (*DEVICE_METHODS, "meta_suggested") if all(m in r for r in rows)}


def device_target_met(dl: dict[str, Any] | None) -> bool | None:
    """Whether the held-out devices' mean meta Spearman reaches the target and beats every baseline's mean."""
    if not dl or not dl["devices"]:
        return None
    mean = device_means(dl)
    return mean["meta"] >= DEVICE_TARGET and all(mean["meta"] > mean[m] for m in DEVICE_METHODS[1:] if m in mean)


def held_out_devices(config: Path, data: Path) -> list[Path]:
    """The latency tables the device config neither trains nor selects on."""
    cfg = yaml.safe_load(config.read_text())["data"]
    used = [TaskSpec.parse(s) for s in cfg.get("train_tasks", []) + cfg.get("val_tasks", [])]
    return [p for p in sorted(data.glob("*.csv.gz")) if not any(spec.matches_file(p.name) for spec in used)]


def devices(ckpt_dir: Path, out: Path, seeds: int, device: str, tiny: bool) -> dict[str, Any] | None:
    """Few-shot latency ranking (K = 10) of every held-out device: meta, transfer, params, scratch."""
    config = common.ROOT / "configs" / f"{DEVICE_RUN}.yaml"
    if not config.is_file() or not DEVICE_DATA.is_dir():
        log.warning("device-latency table skipped: %s or %s is missing", config, DEVICE_DATA)
        return None
    ckpt, training = checkpoint(DEVICE_RUN, ckpt_dir, tiny, ["--data.csv_dir", str(DEVICE_DATA.resolve())])
    rows = {}
    for table in held_out_devices(config, DEVICE_DATA)[: 1 if tiny else None]:
        name = table.name.removesuffix(".csv.gz")
        argv = ["rank", "--task", f"csv:{table}", "--ckpt", str(ckpt), "--support", "10", "--seeds", str(seeds),
                "--out", str(out / f"rank_{name}"), "--device", device]
        suggested = out / f"suggested_{name}.txt"  # what search.py suggest --k 10 --task csv:TABLE prints
        with contextlib.redirect_stdout(io.StringIO()) as buf:
            search_main(["suggest", "--k", "10", "--ckpt", str(ckpt), "--task", f"csv:{table}", "--device", device])
        suggested.write_text(buf.getvalue())
        with contextlib.chdir(ckpt_dir):  # the checkpoint's relative table paths are relative to where it was trained
            r = _cli(argv)
            fixed = _cli([*argv[: argv.index("--seeds")], "--seeds", "1", "--support_archs", str(suggested),
                          "--out", str(out / f"rank_{name}_suggested")])
        rows[name] = {m: {"spearman_mean": r[m]["spearman_mean"], "spearman_std": r[m]["spearman_std"],
                          "kendall_mean": r[m]["kendall_mean"]} for m in DEVICE_METHODS if m in r}
        rows[name]["meta_suggested"] = {"spearman_mean": fixed["meta"]["spearman_mean"], "spearman_std": 0.0,
                                        "kendall_mean": fixed["meta"]["kendall_mean"], "support": suggested.read_text().split()}
    return {"checkpoint": str(ckpt), "training": training, "support": 10, "draws": seeds, "devices": rows}


def run(tiny: bool = False, device: str = "cpu", ckpt_dir: str | None = None, seeds: int | None = None,
        budget: int | None = None) -> dict[str, Any]:
    """The whole benchmark; returns the JSON-ready result."""
    seeds, budget = seeds or (2 if tiny else 20), budget or (5 if tiny else 100)
    start = time.perf_counter()
    res: dict[str, Any] = {"benchmark": "search", "machine": common.machine(), "seeds": seeds, "budget": budget, "tiny": tiny}
    with tempfile.TemporaryDirectory(prefix="nas_bench_search_") as tmp:
        root = (Path(ckpt_dir) if ckpt_dir else (Path(tmp) if tiny else common.ROOT)).resolve()
        res["ckpt_dir"] = str(root)
        res["nb201"] = nb201(root, Path(tmp) / "out", seeds, budget, device, tiny)
        res["device_latency"] = devices(root, Path(tmp) / "out", seeds, device, tiny)
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
        rows = [[name, *[_f(s["regret_at"][str(m)]) for m in ms], f"{s['hit_rate'][str(ms[-1])]:.2f}",
                 "-" if s["queries_to_optimum_median"] is None else s["queries_to_optimum_median"], f"{s['seconds_per_run']:.2f}"]
                for name, s in r["strategies"].items()]
        out += ["", f"**{dataset}** (target `{r['task']}`, checkpoint `runs/{r['run']}`, transfer from `{r['transfer_source']}`, "
                f"optimum {r['optimum']['value']:.2f}); `{r['command']}`", "",
                common.table(["strategy", *[f"regret@{m}" for m in ms], f"hit@{ms[-1]}", "q-to-opt", "s / run"], rows)]
        if "noisy" in r:
            rows = [[name, *[_f(s["regret_at"][str(m)]) for m in ms], f"{s['hit_rate'][str(ms[-1])]:.2f}",
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
    out += ["", "### Few-shot device latency (K = 10)", ""]
    dl = res.get("device_latency")
    if not dl:
        out.append("_Not measured here: `configs/device_latency.yaml` or `../shared/data/nb201-device-latency` was missing._")
    else:
        rows = [[dev, *[_sp(r.get(m)) for m in DEVICE_METHODS], _f(r.get("meta_suggested", {}).get("spearman_mean"))]
                for dev, r in dl["devices"].items()]
        mean = device_means(dl)
        rows.append(["**mean**", *[f"**{_f(mean.get(m))}**" for m in (*DEVICE_METHODS, "meta_suggested")]])
        out += [f"Spearman over all 15,625 architectures, mean ± std over {dl['draws']} support draws of 10; held-out devices "
                "(never trained or selected on); transfer = the checkpoint's training table agreeing best with the support; "
                "meta, suggested = the meta predictor adapted on the 10 architectures `search.py suggest --k 10` "
                "picks (one fixed support, so no spread).", "",
                common.table(["held-out device", *DEVICE_METHODS, "meta, suggested"], rows), "",
                f"- target: mean meta Spearman >= {DEVICE_TARGET} and above transfer, params and scratch on average: "
                f"{common.verdict(device_target_met(dl))}"]
    trained = [(d, r[k]) for d, r in res["nb201"].items() for k in ("training", "pretrain_training") if r.get(k)]
    if dl and dl.get("training"):
        trained.append((DEVICE_RUN, dl["training"]))
    if trained:
        out += ["", "Checkpoints trained by this run: " + "; ".join(
            f"`{t['train_command']}` {t['wall_s']:.0f} s, {t['peak_rss_mb']:.0f} MB" for _, t in trained)]
    out += ["", f"Whole benchmark: {res['seconds'] / 60:.1f} min (limit 30 min: {common.verdict(res['within_30_min'])})."]
    return "\n".join(out)


def _f(x: float | None) -> str:
    return "-" if x is None else f"{x:.3f}"


def _sp(r: dict[str, float] | None) -> str:
    return "-" if r is None else f"{r['spearman_mean']:.3f} ± {r['spearman_std']:.3f}"
