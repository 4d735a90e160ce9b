"""``devices``: leave-devices-out cross-validation of the few-shot latency predictor.

All the device tables (the config's training tables and its validation table) are dealt
into folds, the same folds for every variant. For each variant and fold, the config's predictor is
trained without the fold's devices (and with ``configs/held_out.yaml``; validation on the config's
validation table, or on the first training-side table when the fold holds it); each device of the
fold is then ranked few-shot at every K: on random support draws (meta, transfer from the fold's
best-matching training table, params, scratch, and ``blend``, the weight between meta and transfer
chosen on the support), and on designed supports (``search.py suggest``'s ``greedy``, picked on the
fold's training tables only, and ``kcenter``). Variants are the shipped config and the alternatives
it was chosen over, so the choice can be re-run.
"""

from __future__ import annotations

import logging
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml

from benchmarks import common
from benchmarks.train_time import TINY_ARGS, timed_train
from nas_lightning.models.checkpoint import load_predictor
from nas_lightning.models.gp_fit import GPOptions, fit_hyper
from nas_lightning.rankers.baselines import baselines
from nas_lightning.rankers.posterior import GPRanker
from nas_lightning.rankers.ranking import rank_only, rank_with
from nas_lightning.rankers.suggest import suggest_support
from nas_lightning.tasks.csvtable import load_csv
from nas_lightning.tasks.embedded import load_embedded
from nas_lightning.tasks.spec import TaskSpec

log = logging.getLogger(__name__)
CONFIG = common.ROOT / "configs" / "device_latency.yaml"
DEVICE_DATA = common.DEVICE_DATA
PARAMS = "nb201/cifar10/params"
RANDOM_METHODS = ("meta", "gp", "transfer", "params", "scratch", "blend")  # on random support draws
CALIBRATION = ("gp_coverage80", "gp_nlpd")  # the GP head's 80 % interval coverage and NLPD, random draws
DESIGNS = ("greedy", "kcenter")  # designed supports, scored with meta and blend
GREEDY_MAX_K = 20  # greedy picks cost one batched adaptation per training table each: K = 50 is not designed
TARGET_K10, TARGET_SUGGEST = 0.955, 0.01
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


def _fold_val(val: Path | None, held: list[Path], devices: list[Path]) -> Path | None:
    """The fold's validation table: the config's, or the first training-side table when held out."""
    if val is not None and val not in held:
        return val
    return next((p for p in devices if p not in held and p != val), None)


def _designed(module: Any, sources: list[Any], ks: list[int], tiny: bool) -> dict[str, Any]:
    """The designed supports of a fold: greedy on its training tables (up to ``GREEDY_MAX_K``) and kcenter."""
    top = max([k for k in ks if k <= GREEDY_MAX_K], default=0)
    greedy = suggest_support(module, top, method="greedy", tables=sources[:2] if tiny else sources) if top >= 2 else None
    kcenter = suggest_support(module, max(ks), method="kcenter")
    return {"greedy": greedy, "kcenter": kcenter}


def run_fold(variant: str, fold: int, held: list[Path], train: list[Path], val: Path | None, workdir: Path,
             ks: list[int], draws: int, device: str, tiny: bool, first_draw: int = 0) -> dict[str, Any]:
    """Train without ``held`` and rank each of its devices at every K, on random and designed supports."""
    extra, with_params = VARIANTS[variant]
    specs = [f"csv:{p}" for p in train] + ([PARAMS] if with_params else [])
    run = f"cv_{variant.replace(' ', '_').replace('=', '')}_{fold}"
    args = ["--config", str(CONFIG), "--config", str(common.ROOT / "configs" / "held_out.yaml"),
            "--data.csv_dir", str(DEVICE_DATA.resolve()), "--data.train_tasks", "[" + ",".join(specs) + "]",
            "--data.val_tasks", f"[csv:{val}]" if val else "[]", "--checkpoint.dirpath", f"runs/{run}/checkpoints",
            "--trainer.logger", "false", *extra, *(TINY_ARGS if tiny else [])]
    ckpt = workdir / "runs" / run / "checkpoints" / "last.ckpt"
    training = None if ckpt.is_file() else timed_train(args, workdir)  # a kept workdir's fold is reused
    module = load_predictor(ckpt, device)
    seen = {Path(t.split("#")[0]).name for t in module.trained_on["tasks"] if t.startswith("csv:")}  # trained or selected on
    if seen != {p.name for p in [*train, *([val] if val else [])]}:
        raise RuntimeError(f"{ckpt} was not trained on exactly this fold's tables (held out: "
                           f"{', '.join(_name(p) for p in held)}); remove it or use another --workdir")
    sources = [t for p in train for t in load_csv(str(p))]
    params = load_embedded("cifar10", "params")
    start = time.perf_counter()
    designs = _designed(module, sources, ks, tiny)
    hyper = fit_hyper(module, sources, GPOptions())  # the GP head's, on the fold's training tables only
    out: dict[str, Any] = {"held_out": [_name(p) for p in held], "trained_on": [_name(p) for p in train],
                           "validation": _name(val) if val else None, "training": training, "devices": {},
                           "gp_hyper": hyper.as_dict(),
                           "design_seconds": time.perf_counter() - start,
                           "supports": {d: [module.space.to_string(i) for i in a.tolist()] for d, a in designs.items()
                                        if a is not None}}
    for table in held:
        (task,) = load_csv(str(table))
        rows: dict[str, dict[str, float]] = {}
        for k in ks:
            rankers = baselines(task, module, sources=sources, params_table=params)
            rankers.insert(1, GPRanker(module, task.direction == "max", hyper))
            r = rank_with(task, rankers, k, draws, first_seed=first_draw)
            row = {m: r[m]["spearman_mean"] for m in RANDOM_METHODS if m in r}
            row.update({"gp_coverage80": r["gp"]["coverage80_mean"], "gp_nlpd": r["gp"]["nlpd_mean"]})
            row["blend_meta_weight"] = statistics.fmean(r["blend"]["meta_weights"]) if "blend" in r else None
            for d, chosen in designs.items():
                if chosen is not None and k <= len(chosen):
                    f = rank_only(task, module, k, 1, support_archs=chosen[:k], sources=sources)
                    row.update({f"meta_{d}": f["meta"]["spearman_mean"], f"blend_{d}": f["blend"]["spearman_mean"]})
            rows[str(k)] = row
        out["devices"][_name(table)] = rows
    return out


def run(tiny: bool = False, device: str = "cpu", n_folds: int | None = None, draws: int | None = None,
        ks: list[int] | None = None, workdir: str | None = None, variants: list[str] | None = None,
        first_draw: int = 0) -> dict[str, Any]:
    """The whole cross-validation; returns the JSON-ready result. ``first_draw``: the seed of the
    first random support draw (0; another value gives fresh draws, e.g. to confirm a choice made
    on the default ones)."""
    start = time.perf_counter()
    res: dict[str, Any] = {"benchmark": "devices", "machine": common.machine(), "tiny": tiny}
    if not DEVICE_DATA.is_dir():
        log.warning("device cross-validation skipped: %s is missing", DEVICE_DATA)
        return {**res, "skipped": f"{DEVICE_DATA} is missing", "seconds": time.perf_counter() - start}
    train_side, val = training_side(CONFIG, DEVICE_DATA)
    devices = sorted(train_side + ([val] if val else []), key=lambda p: p.name)
    devices = devices[:4] if tiny else devices
    n_folds, draws = n_folds or (2 if tiny else 7), draws or (1 if tiny else 10)
    ks = ks or ([3] if tiny else [3, 5, 10, 20, 50])
    variants = variants or (list(VARIANTS)[:1] if tiny else list(VARIANTS))
    split = folds(devices, n_folds)
    res.update({"config": str(CONFIG.relative_to(common.ROOT)), "validation": _name(val) if val else None,
                "folds": [[_name(p) for p in f] for f in split], "ks": ks, "draws": draws, "first_draw": first_draw,
                "variants": {}})
    with tempfile.TemporaryDirectory(prefix="nas_bench_devices_") as tmp:
        root = Path(workdir) if workdir else Path(tmp)
        for variant in variants:
            res["variants"][variant] = []
            for i, held in enumerate(split):
                fval = _fold_val(val, held, devices)
                train = [p for p in devices if p not in held and p != fval]
                res["variants"][variant].append(run_fold(variant, i, held, train, fval, root, ks, draws, device, tiny,
                                                         first_draw))
                log.info("devices: variant %s fold %d/%d done", variant, i + 1, len(split))
            log.info("devices: variant %s done", variant)
    res["seconds"] = time.perf_counter() - start
    return res


def per_device(fold_results: list[dict[str, Any]], k: str) -> dict[str, dict[str, float]]:
    """Every held-out device's row at K."""
    return {dev: r[k] for f in fold_results for dev, r in f["devices"].items() if k in r}


def means(fold_results: list[dict[str, Any]], k: str) -> dict[str, float]:
    """Each method's Spearman at K averaged over every held-out device of every fold."""
    rows = list(per_device(fold_results, k).values())
    names = [m for m in rows[0] if m != "blend_meta_weight"] if rows else []
    return {m: statistics.fmean(r[m] for r in rows) for m in names if all(r.get(m) is not None for r in rows)}


def targets(fold_results: list[dict[str, Any]]) -> dict[str, Any]:
    """The targets at K = 10 (and K = 5): the chosen rule's mean, its worst gap to transfer,
    and the greedy supports' gain over the mean of random draws."""
    m10, m5, rows = means(fold_results, "10"), means(fold_results, "5"), per_device(fold_results, "10")
    worst = min(((r["blend"] - r["transfer"], d) for d, r in rows.items() if "blend" in r and "transfer" in r),
                default=(None, None))
    gain = {k: m["meta_greedy"] - m["meta"] for k, m in (("5", m5), ("10", m10)) if "meta_greedy" in m}
    return {"blend_k10": m10.get("blend"), "blend_k10_met": m10.get("blend", 0) >= TARGET_K10,
            "worst_blend_minus_transfer": worst[0], "worst_device": worst[1],
            "transfer_gap_met": worst[0] is not None and worst[0] >= -0.005,
            "greedy_gain": gain, "greedy_gain_met": bool(gain) and gain.get("10", -1) >= TARGET_SUGGEST
            and gain.get("5", -1) > gain.get("10", -1)}


def markdown(res: dict[str, Any]) -> str:
    """The section for BENCHMARKS.md."""
    if res.get("skipped"):
        return f"_Not measured here: {res['skipped']}._"
    ks = [str(k) for k in res["ks"]]
    first = next(iter(res["variants"]))
    cols = [*RANDOM_METHODS, *[f"{m}_{d}" for d in DESIGNS for m in ("meta", "blend")], *CALIBRATION]
    out = [f"Config `{res['config']}`; every device table held out once, folds: "
           + "; ".join(", ".join(f) for f in res["folds"])
           + f". Spearman over all 15,625 architectures; random supports: mean over {res['draws']} draws per device "
           + (f"(seeds {res['first_draw']} to {res['first_draw'] + res['draws'] - 1}) " if res.get("first_draw") else "")
           + "and K; designed supports (`greedy`, `kcenter`, picked without the fold's devices): one set per fold. "
           "Each fold's predictor never saw its devices. gp = meta with the GP head (its hyperparameters fitted on the "
           "fold's training tables); gp_coverage80, gp_nlpd = the share of held-out values inside its central 80 % "
           "predictive interval and its negative log predictive density (units of the table's standard deviation). "
           "Mean over every held-out device:", ""]
    rows = []
    for variant, fr in res["variants"].items():
        for k in ks:
            m = means(fr, k)
            rows.append([variant, k, *[f"{m[x]:.3f}" if x in m else "-" for x in cols]])
    out.append(common.table(["variant", "K", *cols], rows))
    k10 = "10" if "10" in ks else ks[-1]
    pd = per_device(res["variants"][first], k10)
    rows = [[dev, *[f"{r[m]:.3f}" if r.get(m) is not None else "-" for m in cols],
             f"{r['blend_meta_weight']:.2f}" if r.get("blend_meta_weight") is not None else "-"] for dev, r in pd.items()]
    out += ["", f"Per device, variant `{first}`, K = {k10} (last column: blend's mean meta weight):", "",
            common.table(["device", *cols, "w"], rows)]
    t = targets(res["variants"][first])
    if res.get("tiny"):
        t.update(blend_k10_met=None, transfer_gap_met=None, greedy_gain_met=None)
    out += ["", f"- target: blend's mean Spearman at K = 10 >= {TARGET_K10}: {common.f3(t['blend_k10'])} "
            f"({common.verdict(t['blend_k10_met'])})",
            f"- target: blend never below transfer by more than 0.005 on a device: worst {common.f3(t['worst_blend_minus_transfer'])}"
            f" on {t['worst_device']} ({common.verdict(t['transfer_gap_met'])})",
            "- target: greedy supports beat random draws (meta) by >= 0.01 at K = 10 and by more at K = 5: "
            + ", ".join(f"K = {k}: {v:+.3f}" for k, v in t["greedy_gain"].items()) + f" ({common.verdict(t['greedy_gain_met'])})"]
    trained = [f["training"] for fr in res["variants"].values() for f in fr if f["training"]]
    reused = sum(not f["training"] for fr in res["variants"].values() for f in fr)
    out += ["", f"{len(trained)} trainings, {sum(x['wall_s'] for x in trained) / 60:.1f} min in all"
            + (f" ({reused} fold checkpoints reused from the workdir)" if reused else "")
            + f"; whole benchmark {res['seconds'] / 60:.1f} min."]
    return "\n".join(out)
