"""The benchmarks, as a registry of objects: name, title, how it runs, its report, its targets.

``python -m benchmarks <name>`` runs one; ``all`` runs them in this order. Adding a benchmark is
one module (``run`` and ``markdown``) plus one entry here.
"""

from __future__ import annotations

import argparse
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import torch

from benchmarks import common


@dataclass(frozen=True)
class Benchmark:
    """One benchmark.

    Args:
        name: its name on the command line and the stem of its output files.
        title: its section title in BENCHMARKS.md.
        run: the command line's options -> the JSON-ready result.
        markdown: result -> its tables in Markdown.
        missed: result -> the targets it missed, in words with the measured figure.
    """

    name: str
    title: str
    run: Callable[[argparse.Namespace], dict[str, Any]]
    markdown: Callable[[dict[str, Any]], str]
    missed: Callable[[dict[str, Any]], list[str]]


def device_name(name: str) -> str:
    """``auto``: CUDA when present, else the CPU."""
    return ("cuda" if torch.cuda.is_available() else "cpu") if name == "auto" else name


def _workdir(args: argparse.Namespace) -> str:
    """Where ``devices`` keeps each fold's run and ``constrained`` finds their checkpoints."""
    return args.workdir or str(Path(args.out) / "devices_runs")


def _ckpt_dir(args: argparse.Namespace) -> str | None:
    return args.ckpt_dir or (None if args.tiny else args.out)


def _maml(args: argparse.Namespace) -> dict[str, Any]:
    from benchmarks import maml

    return maml.run(args.tiny, None if args.device == "auto" else [device_name(args.device)])


def _scoring(args: argparse.Namespace) -> dict[str, Any]:
    from benchmarks import scoring

    return scoring.run(args.tiny, device_name(args.device), args.ckpt)


def _growth(args: argparse.Namespace) -> dict[str, Any]:
    from benchmarks import growth

    return growth.run(args.tiny, device_name(args.device), args.ckpt)


def _train(args: argparse.Namespace) -> dict[str, Any]:
    from benchmarks import train_time

    return train_time.run(args.tiny)


def _search(args: argparse.Namespace) -> dict[str, Any]:
    from benchmarks import search

    return search.run(args.tiny, device_name(args.device), _ckpt_dir(args), args.seeds, draws=args.draws)


def _devices(args: argparse.Namespace) -> dict[str, Any]:
    from benchmarks import devices

    return devices.run(args.tiny, device_name(args.device), args.folds, args.draws, ks=args.ks, workdir=_workdir(args),
                       variants=args.variants, first_draw=args.first_draw)


def _constrained(args: argparse.Namespace) -> dict[str, Any]:
    from benchmarks import latency_limit

    return latency_limit.cross_validated(_workdir(args), args.seeds or (1 if args.tiny else 5),
                                         args.folds or (2 if args.tiny else 7), more=2 if args.tiny else 10,
                                         device=device_name(args.device), tiny=args.tiny)


def _graph(args: argparse.Namespace) -> dict[str, Any]:
    from benchmarks import graph

    schedule = dict(zip(("local_parents", "global_every"), args.schedule)) if args.schedule else None
    return graph.run(args.tiny, device_name(args.device), _ckpt_dir(args), args.seeds, first_seed=args.first_seed,
                     schedule=schedule, draws=args.draws)


def _fidelity(args: argparse.Namespace) -> dict[str, Any]:
    from benchmarks import fidelity

    return fidelity.run(args.tiny, device_name(args.device), _ckpt_dir(args), args.seeds, args.table, args.budget)


def _fidelity_live(args: argparse.Namespace) -> dict[str, Any]:
    from benchmarks import fidelity_live

    replay = Path(args.out) / "fidelity.json"  # the replay's result, to check the order against
    return fidelity_live.run(args.tiny, device_name(args.device), _ckpt_dir(args), args.seeds, args.budget, args.workers,
                             json.loads(replay.read_text()) if replay.is_file() else None)


def _markdown(module: str) -> Callable[[dict[str, Any]], str]:
    def render(res: dict[str, Any]) -> str:
        return __import__(f"benchmarks.{module}", fromlist=["markdown"]).markdown(res)

    return render


def _missed(what: str, res: dict[str, Any]) -> list[str]:
    """The targets a result missed, in words with the measured figure."""
    out = []
    if what == "maml":
        from benchmarks import maml as maml_bench

        for name, checks in maml_bench.targets(res["results"]).items():
            for cfg, steps in checks.items():
                for step, c in steps.items():
                    if c["met"] is False:
                        out.append(f"{name.replace('_', ' ')} ({cfg}), {step} step: {maml_bench.figures(c)}")
    elif what in ("scoring", "train") and res.get("target", {}).get("met") is False:
        t = res["target"]
        out.append(f"full space in {t['full_space_ms']:.1f} ms (limit {t['limit_ms']:.0f} ms)" if what == "scoring" else
                   f"{res['wall_s']:.0f} s and {res['peak_rss_mb']:.0f} MB (limits {t['wall_limit_s']:.0f} s, {t['peak_limit_mb']:.0f} MB)")
    elif what == "graph":
        from benchmarks.graph import missed as graph_missed

        out += graph_missed(res)
    elif what == "fidelity" and res.get("targets"):
        t = res["targets"]
        if t.get("compute_met") is False:
            out.append(f"asha-meta needed {t['compute_epochs']} epochs to reach random's mean best (limit {t['compute_limit']:.0f})")
        if t.get("at150_met") is False:
            out.append(f"asha-meta's best@150 {common.f3(t['at150'])} below tune-asha's plus one standard error {common.f3(t['at150_bar'])}")
    elif what == "fidelity-live" and res.get("ordering_met") is False:
        out.append(f"live ordering differs from the replay's: {res['ordering']}")
    elif what == "search":
        if res.get("within_30_min") is False:
            out.append(f"the benchmark took {res['seconds'] / 60:.1f} min (limit 30)")
    elif what == "constrained" and res.get("devices"):
        from benchmarks.latency_limit import judged

        t = judged(res)
        if t and t["over"]:
            out.append(f"meta's mean gap above 0.5 points on {len(t['over'])} of {t['cases']} device-limits "
                       f"(mean over all {t['gap']:.3f}, satisfied {t['satisfied']:.3f})")
        if t and not (t["gap_met"] and t["satisfied_met"]):
            out.append(f"meta's mean gap {common.f3(t['gap'])} (target 0.5), satisfied {t['satisfied']:.3f} (target 0.95)")
    elif what == "devices" and not res.get("tiny") and not res.get("skipped"):
        from benchmarks.devices import TARGET_K10, targets

        t = targets(next(iter(res["variants"].values())))
        if not t["blend_k10_met"]:
            out.append(f"blend's mean Spearman at K = 10 {t['blend_k10']:.3f} (target {TARGET_K10})")
        if not t["transfer_gap_met"]:
            out.append(f"blend below transfer by {-t['worst_blend_minus_transfer']:.3f} on {t['worst_device']} (limit 0.005)")
        if not t["greedy_gain_met"]:
            out.append("greedy supports vs random draws " + ", ".join(f"K = {k}: {v:+.3f}" for k, v in t["greedy_gain"].items())
                       + " (target +0.01 at K = 10, more at K = 5)")
    return out




def _entry(name: str, title: str, run: Callable[[argparse.Namespace], dict[str, Any]], module: str) -> Benchmark:
    return Benchmark(name, title, run, _markdown(module), lambda res: _missed(name, res))


BENCHMARKS: dict[str, Benchmark] = {b.name: b for b in (
    _entry("maml", "Meta-training throughput: batched meta-step vs per-task loop", _maml, "maml"),
    _entry("scoring", "Scoring the whole space", _scoring, "scoring"),
    _entry("growth", "Growth", _growth, "growth"),
    _entry("train", "Default training run", _train, "train_time"),
    _entry("search", "Search results", _search, "search"),
    _entry("devices", "Device latency: leave-devices-out cross-validation", _devices, "devices"),
    _entry("constrained", "Device latency: the most accurate network under a latency limit (cross-validated)",
           _constrained, "latency_limit"),
    _entry("graph", "NAS-Bench-Graph: leave-one-dataset-out", _graph, "graph"),
    _entry("fidelity", "Training time: multi-fidelity search against full trainings and Ray Tune's ASHA", _fidelity, "fidelity"),
    _entry("fidelity-live", "Training time, live: Ray Tune's ASHA and ours with the meta prior, training on digits",
           _fidelity_live, "fidelity_live"),
)}
