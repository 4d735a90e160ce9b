"""``search.py constrained``: the most accurate architecture under a latency limit on your device."""

from __future__ import annotations

import csv
import math
import re
from pathlib import Path

import torch

from nas_lightning.commands.common import one_task, predictor_for, seen_note
from nas_lightning.files import print_written
from nas_lightning.errors import UserError
from nas_lightning.files import atomic, check_writable, write_json
from nas_lightning.rankers.latency_limit import MetaLatency, ParamsLatency, Proposal, propose
from nas_lightning.oracles import TableOracle
from nas_lightning.tasks.load import params_table
from nas_lightning.tasks.task import Task

UNITS = ("ms", "us", "s")
SECONDS = {"s": 1.0, "ms": 1e-3, "us": 1e-6}
_LIMIT = re.compile(r"^\s*([-+]?[0-9]*\.?[0-9]+(?:[eE][-+]?[0-9]+)?)\s*([a-zA-Zµ]*)\s*$")
# a limit more than this factor above the slowest or below the fastest measured latency is refused
FAR = 10.0


def table_unit(task: Task) -> str | None:
    """The unit a latency column's name ends with (``latency_ms`` -> ``ms``), else ``None``."""
    column = task.name.rpartition("#")[2]
    tail = re.split(r"[_\-\s(\[]", column.lower().rstrip(")]"))[-1]
    return tail if tail in UNITS and tail != column.lower() else None


def parse_limit(text: str, unit: str | None, column: str) -> float:
    """``--limit`` as a number in the table's unit (``20`` or ``20ms``)."""
    m = _LIMIT.match(str(text))
    if not m:
        raise UserError(f"--limit {text!r} is not a number; give the limit in the table's unit, e.g. --limit 20"
                        + (f" or --limit 20{unit}" if unit else ""))
    value, given = float(m.group(1)), m.group(2).replace("µ", "u")
    if given and given != unit:
        if unit is None:
            raise UserError(f"--limit {text!r} names a unit but the table's column {column!r} names none; "
                            f"give the limit as a plain number in the table's unit, e.g. --limit {value:g}")
        if given not in UNITS:
            raise UserError(f"--limit {text!r}: unknown unit {given!r}; the table's column {column!r} is in {unit}, "
                            f"give e.g. --limit {value:g}{unit}")
        same = value * SECONDS[given] / SECONDS[unit]
        raise UserError(f"--limit {text!r} is in {given!r} but the table's column {column!r} is in {unit}; "
                        f"give the limit in {unit} (here --limit {same:g}{unit})")
    if value <= 0:
        raise UserError(f"--limit {text!r} is {'zero' if value == 0 else 'negative'}; give a positive latency in the "
                        f"table's unit, e.g. --limit 20" + (unit or ""))
    if not math.isfinite(value):
        raise UserError(f"--limit must be a finite positive latency, got {text!r}")
    return value


def check_range(bound: float, values: torch.Tensor, unit: str | None, name: str) -> None:
    """Refuse a limit more than :data:`FAR` times above the slowest measured latency or below the
    fastest: almost surely a figure in another unit (microseconds typed as ms, ms on a seconds table)."""
    low, high = float(values.min()), float(values.max())
    if low / FAR <= bound <= high * FAR:
        return
    u = f" {unit}" if unit else ""
    where = "above the slowest" if bound > high else "below the fastest"
    in_unit = f"in {unit}" if unit else "in the table's unit (its column names none)"
    raise UserError(f"--limit {bound:g}{u} is more than {FAR:g}x {where} measured latency of {name} "
                    f"({low:.4g} to {high:.4g}{u}); give the limit {in_unit}, between {low / FAR:.4g} and {high * FAR:.4g}")


def _latencies(task: Task) -> tuple[torch.Tensor, torch.Tensor]:
    """Every measured row of the latency table, checked positive (through a full-budget oracle)."""
    if task.direction != "min":
        raise UserError(f"--latency {task.name} is maximised; a latency is lower-better (drop @max)")
    oracle = TableOracle(task, budget=task.size)
    values = oracle.query(task.archs)
    bad = torch.nonzero(values <= 0).reshape(-1)
    if len(bad):
        i = int(bad[0])
        raise UserError(f"--latency {task.name}: architecture {task.space.to_string(int(task.archs[i]))} has latency "
                        f"{float(values[i]):g}; latencies must be positive, fix or remove that row")
    if task.size < 2:
        raise UserError(f"--latency {task.name} holds {task.size} measured architecture; measure at least 2")
    return task.archs, values


def _write(prop: Proposal, path: Path, space, unit: str) -> None:
    """The pick, the candidates and every architecture to measure next; ``measure_next`` gives each
    of those its place in the order (1 first), whichever other row it is."""
    rows = ([("pick", prop.pick, prop.pick_accuracy, prop.pick_latency, 1.0)] if prop.pick is not None else [])
    rows += [("candidate", a, acc, lat, p) for a, acc, lat, p in prop.candidates]
    nxt = {a for a, *_ in prop.candidates}
    rows += [("next", a, prop.accuracy[a], None, None) for a in prop.next if a not in nxt]
    order = {a: i for i, a in enumerate(prop.next, start=1)}
    if path.suffix == ".json":
        write_json({"limit": prop.limit, "unit": unit, "sure": prop.sure, "sigma_log": prop.sigma,
                    "next": [space.to_string(a) for a in prop.next],
                    "rows": [{"kind": k, "arch": space.to_string(a), "accuracy": acc, "latency": lat, "p_meets_limit": p,
                              "measure_next": order.get(a)} for k, a, acc, lat, p in rows]}, path, indent=2)
        return
    with atomic(path) as (tmp,), open(tmp, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["kind", "arch", "accuracy", f"latency_{unit}", "p_meets_limit", "measure_next"])
        for k, a, acc, lat, p in rows:
            w.writerow([k, space.to_string(a), f"{acc:.6g}", "" if lat is None else f"{lat:.6g}",
                        "" if p is None else f"{p:.3f}", order.get(a, "")])


def constrained(accuracy: str, latency: str, limit: str, ckpt: str | None = None, predictor: str = "meta",
                ask: int = 5, show: int = 10, stop: float = 0.01, out: str | None = None,
                device: str = "auto") -> int:
    """The most accurate architecture predicted to run under a latency limit on your device, from
    the latencies you measured so far; says which to measure next while it is unsure.

    Args:
        accuracy: the accuracy table, e.g. nb201/cifar100/val_acc (or csv:FILE).
        latency: your measured latencies so far, csv:my_device.csv (columns arch, latency_ms).
        limit: the latency limit in the table's unit: 20, or 20ms for a latency_ms column. A limit
            more than 10x above the slowest or below the fastest measured latency is refused (a
            figure in another unit).
        ckpt: latency predictor checkpoint (python train.py --config configs/device_latency.yaml).
        predictor: meta (the checkpoint, adapted on your measurements) or params (parameter count).
        ask: how many architectures to propose for measuring next.
        show: how many predicted-feasible candidates to list.
        stop: sure when no unmeasured architecture more accurate than the pick meets the limit
            with at least this probability.
        out: write the pick, candidates and next measurements to this .csv or .json file.
        device: auto, cpu or cuda: where the predictor runs.
    """
    if str(accuracy).startswith("train:"):
        raise UserError(f"--accuracy {accuracy}: accuracy by real training is not supported by constrained yet; "
                        "give an accuracy table (e.g. nb201/cifar100/val_acc or csv:FILE)")
    if ask < 1 or show < 0 or not 0 < stop < 1:
        raise UserError(f"--ask must be >= 1, --show >= 0 and --stop in (0, 1), got {ask}, {show} and {stop}")
    if out and (Path(out).is_dir() or Path(out).suffix not in (".csv", ".json")):
        raise UserError(f"--out {out!r} must be a .csv or .json file name")
    if out:
        check_writable(out, "--out")  # before any work: a path under a file or in a read-only folder
    lat_task = one_task(latency, "--latency")
    unit = table_unit(lat_task)
    column = lat_task.name.rpartition("#")[2]
    bound = parse_limit(limit, unit, column)
    archs, values = _latencies(lat_task)
    check_range(bound, values, unit, lat_task.name)
    acc_task = one_task(accuracy, "--accuracy")
    if acc_task.space != lat_task.space:
        raise UserError(f"--accuracy {accuracy} is a task of space {acc_task.space.name!r}, --latency of "
                        f"{lat_task.space.name!r}; give both for the same search space")
    acc_oracle = TableOracle(acc_task)
    acc_values = (acc_oracle.query(acc_task.archs) * acc_oracle.sign).double()
    if predictor == "meta":
        module = predictor_for(ckpt, lat_task, device, "constrained --predictor meta")
        seen_note(module, lat_task)
        model = MetaLatency(module)
    elif predictor == "params":
        table = params_table(lat_task)
        if table is None:
            raise UserError(f"--predictor params: no parameter-count table for search space {lat_task.space.name}; use meta")
        model = ParamsLatency(table)
    else:
        raise UserError(f"unknown --predictor {predictor!r}; choose meta or params")
    prop = propose(model, archs, values, acc_task.archs, acc_values, bound, ask, stop, show)
    space, u = lat_task.space, f" {unit}" if unit else ""
    if prop.pick is None and not prop.reachable:
        fm, fp = prop.fastest_measured, prop.fastest_predicted
        raise UserError(f"no architecture meets --limit {bound:g}{u}: the fastest measured is {fm[1]:.4g}{u} "
                        f"({space.to_string(fm[0])}), the fastest predicted {fp[1]:.4g}{u}; raise the limit")
    n_ok = sum(v <= bound for v in prop.measured.values())
    if prop.pick is None:
        print(f"no pick yet: none of the {len(archs)} measured architectures meets {bound:g}{u}")
    else:
        print(f"pick: {space.to_string(prop.pick)}  accuracy {prop.pick_accuracy:.4g}  measured {prop.pick_latency:.4g}{u} "
              f"({n_ok} of {len(archs)} measured meet {bound:g}{u})")
    print(f"predicted to meet {bound:g}{u}, most accurate first (accuracy, predicted latency, P(meets)):")
    for a, acc, lat, p in prop.candidates:
        print(f"  {space.to_string(a)}  {acc:.4g}  {lat:.4g}{u}  {p:.2f}")
    if prop.sure:
        print(f"sure: no unmeasured architecture more accurate than the pick meets the limit with probability >= {stop:g}")
    else:
        print(f"measure these next ({len(prop.next)}), then run again with them added to {lat_task.name.split('#')[0]}:")
        for a in prop.next:
            print(space.to_string(a))
    if out:
        _write(prop, Path(out), space, unit or "value")
        print_written([(out, "the pick, the candidates and the order to measure next in column measure_next")])
    return 0
