"""``python -m benchmarks <what> [--out DIR] [--tiny] [--device cpu|cuda]``.

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

from benchmarks import common
from benchmarks.registry import BENCHMARKS
from nas_lightning.cli import run_main
from nas_lightning.files import write_text

NOTES = Path(__file__).with_name("notes.md")  # the pointer to docs/findings.md, appended to BENCHMARKS.md as it is

def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__.split("\n\n")[1])
    p.add_argument("what", choices=(*BENCHMARKS, "report", "all"))
    p.add_argument("--out", default="bench_out", help="folder for <what>.json and <what>.md (default bench_out)")
    p.add_argument("--tiny", action="store_true", help="a tiny configuration (seconds): for tests, not for figures")
    p.add_argument("--device", default="auto", help="auto (maml: CPU, and GPU when present; others: cuda if present), cpu or cuda")
    p.add_argument("--threads", type=int, help="torch threads (default: torch's own choice, reported)")
    p.add_argument("--ckpt", help="scoring/growth: time this checkpoint instead of a fresh default predictor")
    p.add_argument("--ckpt-dir", help="search, graph: folder holding runs/<run>/checkpoints/last.ckpt, trained there when missing "
                                      "(default: --out)")
    p.add_argument("--seeds", type=int, help="search runs per strategy (search, graph: default 20; constrained: per device "
                   "and limit, default 5)")
    p.add_argument("--folds", type=int, help="devices: folds of the device tables (default 7)")
    p.add_argument("--workdir", help="devices: keep each fold's run (checkpoints) in this folder, reused when present "
                   "(checked against the fold's tables); constrained: read them from it (default OUT/devices_runs)")
    p.add_argument("--variants", nargs="+", help="devices: which variants to run (default all: shipped, "
                   "'inner_steps=1', 'no params table')")
    p.add_argument("--draws", type=int, help="support draws of a ranking (search: default --seeds; devices: per device "
                   "and K, default 10; graph: per K, default 20)")
    p.add_argument("--first-draw", type=int, default=0, help="devices: seed of the first support draw (default 0; "
                   "another value gives fresh draws)")
    p.add_argument("--ks", type=int, nargs="+", help="devices: support sizes (default 3 5 10 20 50)")
    p.add_argument("--first-seed", type=int, default=0, help="graph: seed of the first search run (default 0; "
                   "another value gives fresh runs; the ranking's support draws are unchanged)")
    p.add_argument("--schedule", type=int, nargs=2, metavar=("PARENTS", "EVERY"), help="graph: meta's large-space "
                   "schedule instead of MetaSearch's defaults: mutations of the PARENTS best, a global pick every EVERY-th")
    p.add_argument("--table", help="fidelity: the curve table to replay (default data/curves/digits_cpu.csv)")
    p.add_argument("--budget", type=int, help="fidelity, fidelity-live: epochs of training per search (default 600 and 300)")
    p.add_argument("--workers", type=int, default=2, help="fidelity-live: trainings at once (default 2)")
    p.add_argument("--markdown", default=str(common.ROOT / "BENCHMARKS.md"), help="report: the file to write")
    return p


def section(what: str, res: dict[str, Any]) -> str:
    """A benchmark's Markdown section: title, command, machine, then its tables."""
    bench = BENCHMARKS[what]
    return (f"## {bench.title}\n\nCommand: `{res['command']}`  \nMachine: {common.machine_line(res['machine'])}  \n"
            f"Took {res['bench_seconds']:.0f} s.\n\n{bench.markdown(res)}\n")


def _previous(target: Path) -> tuple[dict[str, str], dict[str, str]]:
    """The sections of an earlier ``target`` by title, and its closing note's misses by title (the
    generated part only, up to the first sentence's end)."""
    if not target.is_file():
        return {}, {}
    sections, misses = {}, {}
    generated = target.read_text().split("\n# Notes on the benchmarks")[0]  # the notes reuse section titles
    for chunk in re.split(r"(?m)^(?=## )", generated):
        title = chunk.splitlines()[0][3:].strip() if chunk.startswith("## ") else None
        if title in {b.title for b in BENCHMARKS.values()} and "\n_Not run yet: " not in chunk:  # a placeholder is not a result
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
    took = [(what, json.loads((out / f"{what}.json").read_text()).get("bench_seconds")) for what in BENCHMARKS
            if (out / f"{what}.json").is_file()]
    spent = ", ".join(f"{what} {secs / 60:.1f} min" for what, secs in took if secs is not None)
    parts = ["# Benchmarks", "",
             "Generated by `python -m benchmarks report` from the sections that `python -m benchmarks "
             "<what> --out " + common.shown(out) + "` wrote; each section says its own command, machine, load and date. "
             "Regenerate everything with `python -m benchmarks all`" + (f" (this run: {spent})." if spent else "."), ""]
    kept = []
    for what, bench in BENCHMARKS.items():
        md = out / f"{what}.md"
        if md.is_file():
            parts.append(md.read_text())
        elif bench.title in kept_sections:
            kept.append(what)
            title, _, body = kept_sections[bench.title].partition("\n")
            while body.startswith(f"\n{KEPT}\n"):  # a section kept twice is marked once
                body = body[len(KEPT) + 2:]
            parts.append(f"{title}\n\n{KEPT}\n{body}")
        else:
            parts.append(f"## {bench.title}\n\n_Not run yet: `python -m benchmarks {what}`._\n")
    titles = {w: BENCHMARKS[w].title for w in kept}
    parts.append(closing_note(out, {t: kept_misses[t] for t in titles.values() if t in kept_misses}))
    parts.append(NOTES.read_text())
    write_text("\n".join(parts), target)
    return target


KEPT = "_Kept from the previous BENCHMARKS.md: not re-run for this report._"


def closing_note(out: Path, kept: dict[str, str] | None = None) -> str:
    """The closing note: which targets the run's JSON says were missed, with the measured figures
    (and those of sections kept from an earlier report, as that report stated them)."""
    lines = ["## Closing note", ""]
    for title, misses in (kept or {}).items():
        lines.append(f"- **{title}** (kept from the previous report), missed: {misses} (see the findings in docs/findings.md).")
    for what, bench in BENCHMARKS.items():
        path = out / f"{what}.json"
        if path.is_file():
            misses = bench.missed(json.loads(path.read_text()))
            if misses:
                lines.append(f"- **{bench.title}**, missed: {'; '.join(misses)} (see the findings in docs/findings.md).")
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
    for what in BENCHMARKS if args.what == "all" else (args.what,):
        start = time.perf_counter()
        res = BENCHMARKS[what].run(args)
        res["bench_seconds"] = time.perf_counter() - start
        res["command"] = "python -m benchmarks " + shlex.join([what, *common.shown_args([a for a in argv if a not in (args.what,)])])
        common.write_json(res, out / f"{what}.json")
        md = section(what, res)
        write_text(md, out / f"{what}.md")
        print(md, flush=True)
    if args.what == "all":
        print(f"wrote {report(out, Path(args.markdown))}")
    return 0


if __name__ == "__main__":
    run_main(main)  # a UserError (e.g. a bad --schedule): one line, exit 2
