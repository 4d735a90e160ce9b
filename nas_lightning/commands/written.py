"""The closing lines of a ``search.py`` command: every file it wrote, one a line."""

from __future__ import annotations

from pathlib import Path
from typing import Any


def compare_outputs(results: dict[str, Any], out: str | None, training: bool) -> list[tuple[str | Path, str]]:
    """What ``compare`` wrote: results.json and the plot under ``out``; for a train: task also
    trainings.csv, the candidates' curves and the store of finished trainings."""
    files: list[tuple[str | Path, str]] = []
    if out:
        plot = "regret.png" if results.get("optimum") is not None else "best_so_far.png"
        files += [(Path(out) / "results.json", "every strategy's summary and per-seed runs"),
                  (Path(out) / plot, "the curves, mean over seeds")]
        if training:
            files += [(Path(out) / "trainings.csv", "every candidate trained or reused"),
                      (Path(out) / "candidates", "TensorBoard curves of the trainings")]
    if training and results.get("store"):
        files.append((results["store"], "finished trainings; a rerun of the same command reuses them"))
    return files
