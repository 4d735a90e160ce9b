"""``python -m scripts.gpu_trainings_per_hour`` runs end to end (``--tiny``, on CPU, in a subprocess)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path


def test_tiny_run_prints_trainings_per_hour(repo_root: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "scripts.gpu_trainings_per_hour", "--tiny", "--threads", "1", "--accelerator", "cpu"],
        capture_output=True, text=True, timeout=300, cwd=repo_root,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    out = proc.stdout
    assert "12-epoch schedule" in out and "200-epoch schedule" in out and "trainings per hour" in out
    assert out.count("steady") == 2  # two candidates timed


def test_bad_arguments_exit_2(repo_root: Path) -> None:
    proc = subprocess.run([sys.executable, "-m", "scripts.gpu_trainings_per_hour", "--epochs", "1"], capture_output=True, text=True, timeout=120, cwd=repo_root)
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1 and "--epochs" in proc.stderr
