"""``devices``: leave-devices-out cross-validation of the few-shot latency predictor.

The device tables (by default the training side of ``configs/device_latency.yaml``: the tables it
trains on, never its held-out ones nor its validation table) are dealt into folds, the same folds
for every variant. For each variant and fold, the config's predictor is trained without the fold's
devices (and with ``configs/held_out.yaml``); each device of the fold is then ranked few-shot at
every K (random support draws): meta, transfer (the fold's training table agreeing best with the
support), params and scratch. Variants are the shipped config and the alternatives it was chosen
over, so the choice can be re-run.
"""

from __future__ import annotations

import logging
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml

from nas_lightning.bench import common
from nas_lightning.bench.search import DEVICE_DATA, DEVICE_METHODS
from nas_lightning.bench.train import TINY_ARGS, timed_train
from nas_lightning.models.checkpoint import load_predictor
from nas_lightning.search.ranking import rank_only
from nas_lightning.tasks.csvtable import load_csv
from nas_lightning.tasks.embedded import load_embedded
from nas_lightning.tasks.spec import TaskSpec

log = logging.getLogger(__name__)
CONFIG = common.ROOT / "configs" / "device_latency.yaml"
PARAMS = "nb201/cifar10/params"
# name -> (extra train.py arguments, whether the parameter-count table is a training task)
VARIANTS: dict[str, tuple[list[str], bool]] = {
    "shipped": ([], True),
    "inner_steps=1": (["--model.inner_steps", "1"], True),
    "no params table": ([], False),
}


def training_side(config: Path, data: Path) -> tuple[list[Path], Path | None]:
    """The device tables a config trains on, and its validation table (csv specs only)."""
    cfg = yaml.safe_load(config.read_text())["data"]
    train = [TaskSpec.parse(s) for s in cfg.get("train_tasks", [])]
    val = [TaskSpec.parse(s) for s in cfg.get("val_tasks", [])]
    tables = sorted(data.glob("*.csv.gz"))
    chosen = [p for p in tables if any(s.matches_file(p.name) for s in train)]
    val_table = next((p for p in tables if any(s.matches_file(p.name) for s in val)), None)
    return chosen, val_table


def folds(devices: list[Path], n: int) -> list[list[Path]]:
    """``devices`` (sorted by name) dealt round-robin into ``n`` folds."""
    ordered = sorted(devices, key=lambda p: p.name)
    return [ordered[i::n] for i in range(n)]


def _name(path: Path) -> str:
    return path.name.removesuffix(".csv.gz")


def run_fold(variant: str, fold: int, held: list[Path], train: list[Path], val: Path | None, workdir: Path,
             ks: list[int], draws: int, device: str, tiny: bool) -> dict[str, Any]:
    """Train without ``held`` and rank each of its devices at every K."""
    extra, with_params = VARIANTS[variant]
    specs = [f"csv:{p}" for p in train] + ([PARAMS] if with_params else [])
    run = f"cv_{variant.replace(' ', '_').replace('=', '')}_{fold}"
    args = ["--config", str(CONFIG), "--config", str(common.ROOT / "configs" / "held_out.yaml"),
            "--data.csv_dir", str(DEVICE_DATA.resolve()), "--data.train_tasks", "[" + ",".join(specs) + "]",
            "--data.val_tasks", f"[csv:{val}]" if val else "[]", "--checkpoint.dirpath", f"runs/{run}/checkpoints",
            "--trainer.logger", "false", *extra, *(TINY_ARGS if tiny else [])]
    training = timed_train(args, workdir)
    module = load_predictor(workdir / "runs" / run / "checkpoints" / "last.ckpt", device)
    sources = [t for p in train for t in load_csv(str(p))]
    params = load_embedded("cifar10", "params")
    out: dict[str, Any] = {"held_out": [_name(p) for p in held], "trained_on": [_name(p) for p in train],
                           "training": training, "devices": {}}
    for table in held:
        (task,) = load_csv(str(table))
        out["devices"][_name(table)] = {
            str(k): {m: r["spearman_mean"] for m, r in rank_only(task, module, k, draws, sources=sources,
                                                                 params_table=params).items() if m in DEVICE_METHODS}
            for k in ks}
    return out


def run(tiny: bool = False, device: str = "cpu", n_folds: int | None = None, draws: int | None = None,
        ks: list[int] | None = None, workdir: str | None = None) -> dict[str, Any]:
    """The whole cross-validation; returns the JSON-ready result."""
    start = time.perf_counter()
    res: dict[str, Any] = {"benchmark": "devices", "machine": common.machine(), "tiny": tiny}
    if not DEVICE_DATA.is_dir():
        log.warning("device cross-validation skipped: %s is missing", DEVICE_DATA)
        return {**res, "skipped": f"{DEVICE_DATA} is missing", "seconds": time.perf_counter() - start}
    devices, val = training_side(CONFIG, DEVICE_DATA)
    n_folds, draws = n_folds or (2 if tiny else 5), draws or (1 if tiny else 10)
    ks = ks or ([3] if tiny else [3, 5, 10, 20, 50])
    variants = list(VARIANTS)[:1] if tiny else list(VARIANTS)
    split = folds(devices[:4] if tiny else devices, n_folds)
    res.update({"config": str(CONFIG.relative_to(common.ROOT)), "validation": _name(val) if val else None,
                "folds": [[_name(p) for p in f] for f in split], "ks": ks, "draws": draws, "variants": {}})
    with tempfile.TemporaryDirectory(prefix="nas_bench_devices_") as tmp:
        root = Path(workdir) if workdir else Path(tmp)
        for variant in variants:
            res["variants"][variant] = [
                run_fold(variant, i, held, [p for p in (devices[:4] if tiny else devices) if p not in held], val,
                         root, ks, draws, device, tiny)
                for i, held in enumerate(split)]
            log.info("devices: variant %s done", variant)
    res["seconds"] = time.perf_counter() - start
    return res


def means(fold_results: list[dict[str, Any]], k: str) -> dict[str, float]:
    """Each method's Spearman at K averaged over every held-out device of every fold."""
    rows = [d[k] for f in fold_results for d in f["devices"].values()]
    return {m: statistics.fmean(r[m] for r in rows) for m in DEVICE_METHODS if all(m in r for r in rows)}


def markdown(res: dict[str, Any]) -> str:
    """The section for BENCHMARKS.md."""
    if res.get("skipped"):
        return f"_Not measured here: {res['skipped']}._"
    ks = [str(k) for k in res["ks"]]
    out = [f"Config `{res['config']}`; folds over its training-side devices only (validation table "
           f"`{res['validation']}` stays in every fold): " + "; ".join(", ".join(f) for f in res["folds"])
           + f". Spearman over all 15,625 architectures, mean over {res['draws']} random support draws per device; "
           "each fold's predictor never saw its devices. Mean over every held-out device:", ""]
    rows = []
    for variant, fr in res["variants"].items():
        for k in ks:
            m = means(fr, k)
            rows.append([variant, k, *[f"{m[x]:.3f}" if x in m else "-" for x in DEVICE_METHODS]])
    out.append(common.table(["variant", "K", *DEVICE_METHODS], rows))
    first = next(iter(res["variants"]))
    k10 = "10" if "10" in ks else ks[-1]
    rows = [[dev, *[f"{r[k10][m]:.3f}" if m in r[k10] else "-" for m in DEVICE_METHODS]]
            for f in res["variants"][first] for dev, r in f["devices"].items()]
    out += ["", f"Per device, variant `{first}`, K = {k10}:", "", common.table(["device", *DEVICE_METHODS], rows)]
    trained = [f["training"] for fr in res["variants"].values() for f in fr]
    out += ["", f"{len(trained)} trainings, {sum(t['wall_s'] for t in trained) / 60:.1f} min in all; whole benchmark "
            f"{res['seconds'] / 60:.1f} min."]
    return "\n".join(out)
