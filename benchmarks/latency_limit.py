"""``constrained``: the most accurate architecture under a latency limit on held-out devices.

For each device and limit (its 10th, 25th and 50th latency percentiles) and each seed, with at
most ``first + more`` latency measurements through a counting oracle:

* ``meta``: :func:`~nas_lightning.rankers.latency_limit.constrained_search` with the meta-learned
  latency predictor adapted on the measurements;
* ``params``: the same search, latency predicted from the parameter count (a monotone fit);
* ``random``: every measurement on a random architecture (the same first ``first`` as the others).

Each pick is the most accurate *measured* architecture that meets the limit. Scored after the
fact on the full tables (evaluation only): ``satisfied`` (share of seeds whose pick truly meets
the limit; a seed without a pick counts as not), ``gap`` (points of accuracy below the true
constrained optimum, mean over the picks), ``trusted`` (share of seeds where the most accurate
architecture *predicted* to meet the limit, measured or not, truly meets it: what trusting the
predictor without measuring the pick would give).

    python -m benchmarks.latency_limit --ckpt CKPT --devices pixel3,samsung_s7 --seeds 10 --out DIR
"""

from __future__ import annotations

import argparse
import hashlib
import inspect
import json
import logging
import statistics
import time
from pathlib import Path
from typing import Any

import torch

from benchmarks import common

from nas_lightning.errors import UserError
from nas_lightning.files import write_text
from nas_lightning.models.checkpoint import load_predictor
from nas_lightning.models.module import MetaPredictor
from nas_lightning.rankers import latency_limit as search_constrained
from nas_lightning.rankers.latency_limit import MetaLatency, ParamsLatency, constrained_search
from nas_lightning.tasks.csvtable import load_csv
from nas_lightning.tasks.embedded import load_embedded
from nas_lightning.tasks.load import load_task
from nas_lightning.oracles import TableOracle
from nas_lightning.tasks.task import Task

log = logging.getLogger(__name__)
QUANTILES = (0.10, 0.25, 0.50)
METHODS = ("meta", "random", "params")
ACCURACY = "nb201/cifar100/val_acc"
TARGETS = {"satisfied": 0.95, "gap": 0.5}  # targets: share of picks meeting the limit, accuracy points


def _random_pick(acc: Task, latency: Task, limit: float, budget: int, seed: int) -> tuple[int | None, int]:
    """The most accurate of ``budget`` random measurements that meets ``limit`` (the first
    ``first`` draws are those of the searches: the same generator and permutation)."""
    oracle = TableOracle(latency, budget=budget)
    archs = acc.archs[torch.randperm(acc.size, generator=torch.Generator().manual_seed(seed))[:budget]]
    lat = oracle.query(archs)
    ok = archs[lat <= limit]
    if not len(ok):
        return None, oracle.num_queries
    return int(ok[torch.argmax(TableOracle(acc).query(ok))]), oracle.num_queries


def device_limits(latency: Task, quantiles: tuple[float, ...] = QUANTILES) -> list[float]:
    """The limits of one device: its latency percentiles (evaluation only: the whole table)."""
    values = TableOracle(latency).evaluation_only().values().double()
    return [float(torch.quantile(values, q)) for q in quantiles]


def evaluate_device(module: MetaPredictor | None, latency: Task, params: Task, accuracy: Task, seeds: list[int],
                    first: int = 10, more: int = 10, quantiles: tuple[float, ...] = QUANTILES) -> list[dict[str, Any]]:
    """Rows (one per limit and method) for one held-out device."""
    truth_lat = TableOracle(latency).evaluation_only()
    truth_acc = TableOracle(accuracy).evaluation_only()
    archs = truth_acc.archs[latency.contains(truth_acc.archs)]
    true_lat, true_acc = truth_lat.lookup(archs), truth_acc.lookup(archs)
    models = {"meta": MetaLatency(module) if module is not None else None,
              "params": ParamsLatency(params)}
    rows = []
    for q, limit in zip(quantiles, device_limits(latency, quantiles)):
        optimum = float(true_acc[true_lat <= limit].max())
        for method in METHODS:
            if method != "random" and models[method] is None:
                continue
            picks, used, trusted = [], [], []
            for seed in seeds:
                if method == "random":
                    pick, n = _random_pick(accuracy, latency, limit, first + more, seed)
                    trust = pick
                else:
                    oracle = TableOracle(latency, budget=first + more)
                    res = constrained_search(models[method], TableOracle(accuracy), oracle, limit, first, more,
                                             torch.Generator().manual_seed(seed))
                    pick, n, p = res.proposal.pick, oracle.num_queries, res.proposal
                    best_pred = p.candidates[0] if p.candidates else None
                    trust = pick if best_pred is None or (pick is not None and p.pick_accuracy >= best_pred[1]) else best_pred[0]
                picks.append(pick)
                used.append(n)
                trusted.append(trust)
            ok = [p is not None and float(truth_lat.lookup(torch.tensor([p]))[0]) <= limit for p in picks]
            gaps = [optimum - float(truth_acc.lookup(torch.tensor([p]))[0]) for p in picks if p is not None]
            trust_ok = [t is not None and float(truth_lat.lookup(torch.tensor([t]))[0]) <= limit for t in trusted]
            rows.append({"quantile": q, "limit": limit, "optimum": optimum, "method": method,
                         "satisfied": sum(ok) / len(ok), "no_pick": sum(p is None for p in picks),
                         "gap_mean": statistics.fmean(gaps) if gaps else None, "gap_max": max(gaps) if gaps else None,
                         "trusted_satisfied": sum(trust_ok) / len(trust_ok),
                         "measurements_mean": statistics.fmean(used), "gaps": gaps})
            log.info("constrained: %s q=%.2f %s satisfied %.2f gap %s", latency.name, q, method, rows[-1]["satisfied"],
                     rows[-1]["gap_mean"])
    return rows


def evaluate(module: MetaPredictor | None, devices: list[Task], params: Task, accuracy: Task, seeds: list[int],
             first: int = 10, more: int = 10) -> dict[str, Any]:
    """Every device x limit x method: what the owner's cross-validation calls per fold (JSON-ready)."""
    return {"accuracy": accuracy.name, "first": first, "more": more, "seeds": list(seeds), "quantiles": list(QUANTILES),
            "stop": inspect.signature(constrained_search).parameters["stop"].default,
            "devices": {_name(t): evaluate_device(module, t, params, accuracy, seeds, first, more) for t in devices}}


def _code_digest() -> str:
    """A digest of the code a fold's cached figures depend on (the search and this benchmark)."""
    code = (inspect.getsource(m) for m in (search_constrained, evaluate_device))
    return hashlib.sha256("".join(code).encode()).hexdigest()


def _name(task: Task) -> str:
    return Path(task.name.split("#")[0]).name.removesuffix(".gz").removesuffix(".csv")


def run(ckpt: str | None, devices: list[str], seeds: int = 10, accuracy: str = ACCURACY, first: int = 10,
        more: int = 10, device: str = "cpu", data: Path = common.DEVICE_DATA) -> dict[str, Any]:
    """The benchmark on any checkpoint: ``devices`` are names of tables in ``data`` (or csv paths)."""
    start = time.perf_counter()
    module = load_predictor(ckpt, device) if ckpt else None
    tables = [load_csv(d if d.endswith((".csv", ".gz")) else str(Path(data) / f"{d}.csv.gz"))[0] for d in devices]
    res = evaluate(module, tables, load_embedded("cifar10", "params"), load_task(accuracy), list(range(seeds)), first, more)
    if module is not None:
        res["checkpoint_trained_on"] = [d for d, t in zip(devices, tables) if t.fingerprint in module.trained_on["fingerprints"]
                                        or t.name in module.trained_on["tasks"]]
    res.update({"benchmark": "constrained", "ckpt": ckpt, "machine": common.machine(), "seconds": time.perf_counter() - start})
    return res


def cross_validated(workdir: str, seeds: int = 5, n_folds: int = 7, variant: str = "shipped", first: int = 10,
                    more: int = 10, device: str = "cpu", only: list[int] | None = None, tiny: bool = False) -> dict[str, Any]:
    """The benchmark in the device cross-validation: each fold's checkpoint (``bench devices
    --workdir WORKDIR`` keeps them) on the devices that fold held out. A fold's figures are kept
    beside its checkpoint (with the checkpoint's digest and the settings) and reused by a rerun.

    Raises:
        UserError: when a fold's checkpoint is missing.

    ``only``: fold indices to run (default all); ``tiny``: the tiny cross-validation's four devices.
    """
    from benchmarks import devices as cv  # the folds, as the cross-validation dealt them

    start = time.perf_counter()
    train_side, val = cv.training_side(cv.CONFIG, common.DEVICE_DATA)
    tables = sorted(train_side + ([val] if val else []), key=lambda p: p.name)[: 4 if tiny else None]
    params, accuracy = load_embedded("cifar10", "params"), load_task(ACCURACY)
    res: dict[str, Any] = {"devices": {}, "folds": []}
    for i, held in enumerate(cv.folds(tables, n_folds)):
        if only is not None and i not in only:
            continue
        run_dir = Path(workdir) / "runs" / f"cv_{variant.replace(' ', '_').replace('=', '')}_{i}"
        ckpt = run_dir / "checkpoints" / "last.ckpt"
        if not ckpt.is_file():
            raise UserError(f"{ckpt} is missing: run python -m benchmarks devices --workdir {workdir} first")
        key = {"ckpt_sha256": hashlib.sha256(ckpt.read_bytes()).hexdigest(), "seeds": seeds, "first": first, "more": more,
               "code_sha256": _code_digest()}
        cache = run_dir / "constrained.json"
        kept = json.loads(cache.read_text()) if cache.is_file() else None
        reused = kept is not None and kept.get("key") == key
        if reused:
            res.setdefault("reused_folds", []).append(i)
        else:
            module = load_predictor(ckpt, device)
            kept = {"key": key, "result": evaluate(module, [load_csv(str(p))[0] for p in held], params, accuracy,
                                                    list(range(seeds)), first, more)}
            common.write_json(kept, cache)
        res["devices"].update(kept["result"]["devices"])
        res["folds"].append([_name(load_csv(str(p))[0]) for p in held])
        for k in ("accuracy", "first", "more", "seeds", "quantiles", "stop"):
            res[k] = kept["result"][k]
        log.info("constrained: fold %d/%d done", i + 1, n_folds)
    res.update({"benchmark": "constrained", "workdir": str(workdir), "machine": common.machine(),
                "seconds": time.perf_counter() - start})
    return res


def judged(res: dict[str, Any]) -> dict[str, Any]:
    """Meta against the targets: share of picks meeting the limit and gap, over every device and
    limit, and the device-limits whose mean gap exceeds the gap target."""
    rows = [(dev, r) for dev, rs in res["devices"].items() for r in rs if r["method"] == "meta"]
    gaps = [g for _, r in rows for g in r["gaps"]]
    if not rows:
        return {}
    sat = statistics.fmean(r["satisfied"] for _, r in rows)
    gap = statistics.fmean(gaps) if gaps else None
    over = [f"{dev} p{round(r['quantile'] * 100)} ({r['gap_mean']:.3f})" for dev, r in rows
            if r["gap_mean"] is not None and r["gap_mean"] > TARGETS["gap"]]
    return {"satisfied": sat, "satisfied_met": sat >= TARGETS["satisfied"], "gap": gap,
            "gap_met": gap is not None and gap <= TARGETS["gap"], "over": over, "cases": len(rows)}


def _fmt(x: float | None, spec: str) -> str:
    return "-" if x is None else format(x, spec)


def markdown(res: dict[str, Any]) -> str:
    """The report: per device and limit, then the mean over devices, per method."""
    methods = [m for m in METHODS if any(r["method"] == m for rows in res["devices"].values() for r in rows)]
    head = ["device", "limit"] + [f"{m} {c}" for m in methods for c in ("sat", "gap", "meas")]
    body = []
    for dev, rows in res["devices"].items():
        for q in res["quantiles"]:
            at = {r["method"]: r for r in rows if r["quantile"] == q}
            r0 = next(iter(at.values()))
            body.append([dev, f"p{round(q * 100)} = {r0['limit']:.4g}"] + [
                c for m in methods for c in (f"{at[m]['satisfied']:.2f}", _fmt(at[m]["gap_mean"], ".3f"),
                                             f"{at[m]['measurements_mean']:.1f}")])
    means = []
    for m in methods:
        rows = [r for rs in res["devices"].values() for r in rs if r["method"] == m]
        gaps = [g for r in rows for g in r["gaps"]]
        means.append([m, f"{statistics.fmean(r['satisfied'] for r in rows):.3f}", _fmt(statistics.fmean(gaps) if gaps else None, ".3f"),
                      _fmt(max(gaps) if gaps else None, ".2f"), f"{statistics.fmean(r['trusted_satisfied'] for r in rows):.3f}",
                      str(sum(r["no_pick"] for r in rows)), f"{statistics.fmean(r['measurements_mean'] for r in rows):.1f}"])
    out = [f"Accuracy `{res['accuracy']}`; at most {res['first']} + {res['more']} latency measurements (a search "
           f"stops early only when no unmeasured architecture more accurate than its pick meets the limit with "
           f"probability >= {res.get('stop')}); "
           f"{len(res['seeds'])} seeds per device and limit; limits at each device's 10th/25th/50th latency percentile. "
           "sat: share of picks that truly meet the limit (no pick counts as a miss); gap: mean accuracy points below "
           "the true constrained optimum (over the picks); meas: latency measurements used.", "",
           common.table(head, body), "", "Over every device and limit:", "",
           common.table(["method", "satisfied", "gap mean", "gap max", "trusted prediction meets limit", "no pick",
                         "measurements"], means)]
    t = judged(res)
    if t:
        out += ["", f"- target: meta's picks meet the limit in >= {TARGETS['satisfied']:.0%} of searches: "
                f"{t['satisfied']:.3f} ({common.verdict(t['satisfied_met'])})",
                f"- target: meta's mean gap <= {TARGETS['gap']} points: {_fmt(t['gap'], '.3f')} ({common.verdict(t['gap_met'])}); "
                f"device-limits whose mean gap exceeds it: {len(t['over'])} of {t['cases']}"
                + (f" ({', '.join(t['over'])})" if t["over"] else "")]
    if res.get("folds"):
        out += ["", "Each device searched with the checkpoint of its cross-validation fold (trained without it): "
                + "; ".join(", ".join(f) for f in res["folds"]) + "."]
        if res.get("reused_folds"):
            out += ["", f"Read back from the fold caches (same checkpoint digest and settings, computed by an earlier run; "
                    f"not timed here): folds {', '.join(str(i) for i in res['reused_folds'])}."]
    if res.get("checkpoint_trained_on"):
        out += ["", f"Not held out: the checkpoint trained or was selected on {', '.join(res['checkpoint_trained_on'])}."]
    if "seconds" in res:
        out += ["", f"{res['seconds'] / 60:.1f} min; {common.machine_line(res['machine'])}."]
    return "\n".join(out)


def main(argv: list[str] | None = None) -> None:
    """``python -m benchmarks.latency_limit``: run, print the report, write JSON and markdown."""
    p = argparse.ArgumentParser(prog="python -m benchmarks.latency_limit", description=__doc__.split("\n\n")[0])
    p.add_argument("--ckpt", help="latency predictor checkpoint (without: random and params only)")
    p.add_argument("--devices", required=True, help="comma-separated device table names (in --data) or csv paths")
    p.add_argument("--seeds", type=int, default=10)
    p.add_argument("--first", type=int, default=10)
    p.add_argument("--more", type=int, default=10)
    p.add_argument("--data", default=str(common.DEVICE_DATA), help="folder of the device tables")
    p.add_argument("--out", default="bench_out", help="folder for constrained.json and constrained.md")
    a = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    res = run(a.ckpt, a.devices.split(","), a.seeds, first=a.first, more=a.more, data=Path(a.data))
    text = markdown(res)
    print(text)
    common.write_json(res, Path(a.out) / "constrained.json")
    write_text(text + "\n", Path(a.out) / "constrained.md")


if __name__ == "__main__":
    main()
