"""``search.py constrained --limit``: a negative limit, or one far outside the measured table's
range (more than 10x above its slowest or below its fastest latency: a figure in another unit), is
refused in one line, exit status 2, with the table's range and unit; nothing is written."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from nas_lightning.cli import run_main
from nas_lightning.commands import main as search_main
from nas_lightning.tasks.embedded import load_embedded

ACC = "nb201/cifar100/val_acc"


def _exit(main, capsys: pytest.CaptureFixture) -> tuple[int, list[str]]:
    with pytest.raises(SystemExit) as stop:
        run_main(main)
    return stop.value.code, [ln for ln in capsys.readouterr().err.splitlines() if ln.strip()]


def _device(path: Path, column: str, scale: float) -> Path:
    """Ten measured latencies of a device (CIFAR-100's table, 7-26 ms) in the unit ``scale`` gives."""
    t = load_embedded("cifar100", "latency")
    archs = t.archs[torch.randperm(t.size, generator=torch.Generator().manual_seed(3))[:10]]
    rows = [f"{t.space.to_string(int(a))},{float(v) * 1000 * scale:.6g}" for a, v in zip(archs, t.lookup(archs))]
    path.write_text(f"arch,{column}\n" + "\n".join(rows) + "\n")
    return path


@pytest.mark.parametrize("column, scale, limit, words", [
    ("latency_ms", 1.0, "-5", "--limit '-5' is negative"),
    ("latency_ms", 1.0, "20000", "--limit 20000 ms is more than 10x above the slowest measured latency"),
    ("latency_ms", 1.0, "0.5", "more than 10x below the fastest"),
    ("latency_s", 1e-3, "20", "--limit 20 s is more than 10x above the slowest measured latency"),
    ("latency", 1.0, "5000", "in the table's unit (its column names none)"),
])
def test_a_limit_far_outside_the_table_is_refused_with_its_range(tmp_path: Path, capsys: pytest.CaptureFixture,
                                                                 column: str, scale: float, limit: str, words: str) -> None:
    mine = _device(tmp_path / "mine.csv", column, scale)
    out = tmp_path / "out.csv"
    code, err = _exit(lambda: search_main(["constrained", "--accuracy", ACC, "--latency", f"csv:{mine}", "--limit", limit,
                                           "--predictor", "params", "--out", str(out)]), capsys)
    assert code == 2 and len(err) == 1 and err[0].startswith("error: ") and words in err[0], err
    if limit != "-5":  # the table's range, in its unit
        unit = {"latency_ms": " ms", "latency_s": " s", "latency": ""}[column]
        assert " to " in err[0] and (unit in err[0]) and "between" in err[0]
    assert not out.exists()


def test_a_limit_within_the_range_still_runs(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    mine = _device(tmp_path / "mine.csv", "latency_s", 1e-3)
    assert search_main(["constrained", "--accuracy", ACC, "--latency", f"csv:{mine}", "--limit", "0.02",
                        "--predictor", "params"]) == 0
    assert "pick:" in capsys.readouterr().out
