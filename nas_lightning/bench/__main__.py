"""``python -m nas_lightning.bench <what> [--out DIR] [--tiny] [--device cpu|cuda]``.

    maml     batched meta-step vs the per-task loop (episodes/s, peak memory)
    scoring  scoring the whole space with an adapted predictor; one search round
    growth   meta-step time vs meta-batch, K, width; search time vs budget
    search   every strategy on the three NB201 targets (also noisy), few-shot ranking of each
             target, the pretrain + fine-tune baseline
    train    wall time and peak memory of the default python train.py
    devices  leave-devices-out cross-validation of the device-latency config (folds, variants,
             random vs designed supports, the meta/transfer blend)
    constrained  search.py constrained on every device with its fold's checkpoint (after devices)
    graph    leave-one-dataset-out over NAS-Bench-Graph's eight datasets: rank at K = 10, 50 and compare
    report   assemble <out>/*.md into BENCHMARKS.md
    all      maml, scoring, growth, train, search, devices, constrained, graph, then report

Each prints its table and writes ``<out>/<what>.json`` and ``<out>/<what>.md``.
"""

from __future__ import annotations

import argparse
import json
import logging
import re
import shlex
import sys
import time
from pathlib import Path
from typing import Any

import torch

from nas_lightning.bench import common
from nas_lightning.cli import run_main
from nas_lightning.files import write_text

NOTES = Path(__file__).with_name("notes.md")  # hand-written explanations, appended to BENCHMARKS.md as they are

BENCHES = ("maml", "scoring", "growth", "train", "search", "devices", "constrained", "graph")
TITLES = {"maml": "Meta-training throughput: batched meta-step vs per-task loop", "scoring": "Scoring the whole space",
          "growth": "Growth", "train": "Default training run", "search": "Search results",
          "devices": "Device latency: leave-devices-out cross-validation",
          "constrained": "Device latency: the most accurate network under a latency limit (cross-validated)",
          "graph": "NAS-Bench-Graph: leave-one-dataset-out"}


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m nas_lightning.bench", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__.split("\n\n")[1])
    p.add_argument("what", choices=(*BENCHES, "report", "all"))
    p.add_argument("--out", default="bench_out", help="folder for <what>.json and <what>.md (default bench_out)")
    p.add_argument("--tiny", action="store_true", help="a tiny configuration (seconds): for tests, not for figures")
    p.add_argument("--device", default="auto", help="auto (maml: CPU, and GPU when present; others: cuda if present), cpu or cuda")
    p.add_argument("--threads", type=int, help="torch threads (default: torch's own choice, reported)")
    p.add_argument("--ckpt", help="scoring/growth: time this checkpoint instead of a fresh default predictor")
    p.add_argument("--ckpt-dir", help="search, graph: folder holding runs/<run>/checkpoints/last.ckpt, trained there when missing "
                                      "(default: --out)")
    p.add_argument("--seeds", type=int, help="search: seeds per strategy and support draws (default 20); graph: search seeds per strategy (default 20); constrained: per device and limit (default 5)")
    p.add_argument("--folds", type=int, help="devices: folds of the device tables (default 7)")
    p.add_argument("--workdir", help="devices: keep each fold's run (checkpoints) in this folder, reused when present "
                   "(checked against the fold's tables); constrained: read them from it (default OUT/devices_runs)")
    p.add_argument("--variants", nargs="+", help="devices: which variants to run (default all: shipped, "
                   "'inner_steps=1', 'no params table')")
    p.add_argument("--draws", type=int, help="devices: support draws per device and K (default 10); graph: support draws per K (default 20)")
    p.add_argument("--first-draw", type=int, default=0, help="devices: seed of the first support draw (default 0; "
                   "another value gives fresh draws)")
    p.add_argument("--ks", type=int, nargs="+", help="devices: support sizes (default 3 5 10 20 50)")
    p.add_argument("--first-seed", type=int, default=0, help="graph: seed of the first search run (default 0; "
                   "another value gives fresh runs; the ranking's support draws are unchanged)")
    p.add_argument("--schedule", type=int, nargs=2, metavar=("PARENTS", "EVERY"), help="graph: meta's large-space "
                   "schedule instead of MetaSearch's defaults: mutations of the PARENTS best, a global pick every EVERY-th")
    p.add_argument("--markdown", default=str(common.ROOT / "BENCHMARKS.md"), help="report: the file to write")
    return p


def _device(name: str) -> str:
    return ("cuda" if torch.cuda.is_available() else "cpu") if name == "auto" else name


def _workdir(args: argparse.Namespace) -> str:
    """Where ``devices`` keeps each fold's run and ``constrained`` finds their checkpoints."""
    return args.workdir or str(Path(args.out) / "devices_runs")


def run_one(what: str, args: argparse.Namespace) -> dict[str, Any]:
    """Run one benchmark with the command line's options."""
    dev = _device(args.device)
    if what == "maml":
        from nas_lightning.bench import maml as mod

        return mod.run(args.tiny, None if args.device == "auto" else [dev])
    if what == "scoring":
        from nas_lightning.bench import scoring as mod

        return mod.run(args.tiny, dev, args.ckpt)
    if what == "growth":
        from nas_lightning.bench import growth as mod

        return mod.run(args.tiny, dev, args.ckpt)
    if what == "train":
        from nas_lightning.bench import train as mod

        return mod.run(args.tiny)
    if what == "devices":
        from nas_lightning.bench import devices as mod

        return mod.run(args.tiny, dev, args.folds, args.draws, ks=args.ks, workdir=_workdir(args), variants=args.variants,
                       first_draw=args.first_draw)
    if what == "constrained":
        from nas_lightning.bench import constrained as mod

        return mod.cross_validated(_workdir(args), args.seeds or (1 if args.tiny else 5), args.folds or (2 if args.tiny else 7),
                                   more=2 if args.tiny else 10, device=dev, tiny=args.tiny)
    if what == "graph":
        from nas_lightning.bench import graph as mod

        schedule = dict(zip(("local_parents", "global_every"), args.schedule)) if args.schedule else None
        return mod.run(args.tiny, dev, args.ckpt_dir or (None if args.tiny else args.out), args.seeds,
                       first_seed=args.first_seed, schedule=schedule, draws=args.draws)
    from nas_lightning.bench import search as mod

    return mod.run(args.tiny, dev, args.ckpt_dir or (None if args.tiny else args.out), args.seeds)


def section(what: str, res: dict[str, Any]) -> str:
    """A benchmark's Markdown section: title, command, machine, then its tables."""
    mod = __import__(f"nas_lightning.bench.{what}", fromlist=["markdown"])
    return (f"## {TITLES[what]}\n\nCommand: `{res['command']}`  \nMachine: {common.machine_line(res['machine'])}  \n"
            f"Took {res['bench_seconds']:.0f} s.\n\n{mod.markdown(res)}\n")


def _previous(target: Path) -> tuple[dict[str, str], dict[str, str]]:
    """The sections of an earlier ``target`` by title, and its closing note's misses by title (the
    generated part only, up to the first sentence's end)."""
    if not target.is_file():
        return {}, {}
    sections, misses = {}, {}
    generated = target.read_text().split("\n# Notes on the benchmarks")[0]  # the notes reuse section titles
    for chunk in re.split(r"(?m)^(?=## )", generated):
        title = chunk.splitlines()[0][3:].strip() if chunk.startswith("## ") else None
        if title in TITLES.values() and "\n_Not run yet: " not in chunk:  # a placeholder is not a result
            sections[title] = chunk.rstrip() + "\n"
        elif title == "Closing note":
            pattern = r"(?m)^- \*\*(.+?)\*\*(?: \(kept from the previous report\))?, missed: (.+?)(?: \(see the|\. |\.?$)"
            for m in re.finditer(pattern, chunk):
                misses[m.group(1)] = m.group(2)
    return sections, misses


def report(out: Path, target: Path) -> Path:
    """Write ``target`` from the sections in ``out`` (in the usual order). A section not in ``out`` is
    kept from the earlier ``target``, marked as such, with its closing-note misses; else noted as not run."""
    kept_sections, kept_misses = _previous(target)
    took = [(what, json.loads((out / f"{what}.json").read_text()).get("bench_seconds")) for what in BENCHES
            if (out / f"{what}.json").is_file()]
    spent = ", ".join(f"{what} {secs / 60:.1f} min" for what, secs in took if secs is not None)
    parts = ["# Benchmarks", "",
             "Generated by `python -m nas_lightning.bench report` from the sections that `python -m nas_lightning.bench "
             "<what> --out " + str(out) + "` wrote; each section says its own command, machine, load and date. "
             "Regenerate everything with `python -m nas_lightning.bench all`" + (f" (this run: {spent})." if spent else "."), ""]
    kept = []
    for what in BENCHES:
        md = out / f"{what}.md"
        if md.is_file():
            parts.append(md.read_text())
        elif TITLES[what] in kept_sections:
            kept.append(what)
            title, _, body = kept_sections[TITLES[what]].partition("\n")
            while body.startswith(f"\n{KEPT}\n"):  # a section kept twice is marked once
                body = body[len(KEPT) + 2:]
            parts.append(f"{title}\n\n{KEPT}\n{body}")
        else:
            parts.append(f"## {TITLES[what]}\n\n_Not run yet: `python -m nas_lightning.bench {what}`._\n")
    parts.append(closing_note(out, {TITLES[w]: kept_misses[TITLES[w]] for w in kept if TITLES[w] in kept_misses}))
    parts.append(NOTES.read_text())
    write_text("\n".join(parts), target)
    return target


KEPT = "_Kept from the previous BENCHMARKS.md: not re-run for this report._"


def missed(what: str, res: dict[str, Any]) -> list[str]:
    """The targets a result missed, in words with the measured figure."""
    out = []
    if what == "maml":
        from nas_lightning.bench import maml as maml_bench

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
        from nas_lightning.bench.graph import missed as graph_missed

        out += graph_missed(res)
    elif what == "search":
        if res.get("within_30_min") is False:
            out.append(f"the benchmark took {res['seconds'] / 60:.1f} min (limit 30)")
    elif what == "constrained" and res.get("devices"):
        from nas_lightning.bench.constrained import judged

        t = judged(res)
        if t and t["over"]:
            out.append(f"meta's mean gap above 0.5 points on {len(t['over'])} of {t['cases']} device-limits "
                       f"(mean over all {t['gap']:.3f}, satisfied {t['satisfied']:.3f})")
        if t and not (t["gap_met"] and t["satisfied_met"]):
            out.append(f"meta's mean gap {common.f3(t['gap'])} (target 0.5), satisfied {t['satisfied']:.3f} (target 0.95)")
    elif what == "devices" and not res.get("tiny") and not res.get("skipped"):
        from nas_lightning.bench.devices import TARGET_K10, targets

        t = targets(next(iter(res["variants"].values())))
        if not t["blend_k10_met"]:
            out.append(f"blend's mean Spearman at K = 10 {t['blend_k10']:.3f} (target {TARGET_K10})")
        if not t["transfer_gap_met"]:
            out.append(f"blend below transfer by {-t['worst_blend_minus_transfer']:.3f} on {t['worst_device']} (limit 0.005)")
        if not t["greedy_gain_met"]:
            out.append("greedy supports vs random draws " + ", ".join(f"K = {k}: {v:+.3f}" for k, v in t["greedy_gain"].items())
                       + " (target +0.01 at K = 10, more at K = 5)")
    return out


def closing_note(out: Path, kept: dict[str, str] | None = None) -> str:
    """The closing note: which targets the run's JSON says were missed, with the measured figures
    (and those of sections kept from an earlier report, as that report stated them)."""
    lines = ["## Closing note", ""]
    for title, misses in (kept or {}).items():
        lines.append(f"- **{title}** (kept from the previous report), missed: {misses} (see the hand-written notes below).")
    for what in BENCHES:
        path = out / f"{what}.json"
        if path.is_file():
            misses = missed(what, json.loads(path.read_text()))
            if misses:
                lines.append(f"- **{TITLES[what]}**, missed: {'; '.join(misses)} (see the hand-written notes below).")
    if len(lines) == 2:
        lines.append("Every target that was measured was met.")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    if args.threads:
        torch.set_num_threads(args.threads)
    out = Path(args.out)
    if args.what == "report":
        print(f"wrote {report(out, Path(args.markdown))}")
        return 0
    for what in BENCHES if args.what == "all" else (args.what,):
        start = time.perf_counter()
        res = run_one(what, args)
        res["bench_seconds"] = time.perf_counter() - start
        res["command"] = "python -m nas_lightning.bench " + shlex.join([what, *[a for a in argv if a not in (args.what,)]])
        common.write_json(res, out / f"{what}.json")
        md = section(what, res)
        write_text(md, out / f"{what}.md")
        print(md, flush=True)
    if args.what == "all":
        print(f"wrote {report(out, Path(args.markdown))}")
    return 0


if __name__ == "__main__":
    run_main(main)  # a UserError (e.g. a bad --schedule): one line, exit 2
