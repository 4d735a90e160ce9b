"""``train.py`` options checked before any work: search-round settings that cannot work and a run
(or a resumed run) that would train nothing are refused in one line with exit status 2, and
nothing is written."""

from __future__ import annotations

from pathlib import Path

import pytest

from nas_lightning.cli import run_main
from nas_lightning.metatrain import build_cli, fit
from tests.conftest import tiny_run, torch_threads

TINY = tiny_run({"data.val_tasks": "[]", "data.target_tasks": "[]", "data.support": 10, "data.query": 10,
                 "data.steps_per_epoch": 1, "trainer.max_epochs": 1, "trainer.logger": False})


def _exit(main, capsys: pytest.CaptureFixture) -> tuple[int, list[str]]:
    with pytest.raises(SystemExit) as stop:
        run_main(main)
    return stop.value.code, [ln for ln in capsys.readouterr().err.splitlines() if ln.strip()]


@pytest.mark.parametrize("changes, words", [
    ({"search.per_round": -1}, "--search.per_round must be an integer >= 0"),
    ({"search.meta.members": 0}, "meta.members must be an integer >= 1"),
    ({"search.meta.beta": -1.0}, "meta.beta must be a finite number >= 0"),
    ({"trainer.max_epochs": 0}, "--trainer.max_epochs must be >= 1"),
    ({"trainer.max_steps": 0}, "--trainer.max_steps must be >= 1"),
])
def test_train_settings_that_cannot_work_are_refused_before_training(tmp_path: Path, capsys: pytest.CaptureFixture,
                                                                     monkeypatch: pytest.MonkeyPatch,
                                                                     changes: dict, words: str) -> None:
    monkeypatch.chdir(tmp_path)
    args = tiny_run({"data.val_tasks": "[]", "data.target_tasks": "[nb201/ImageNet16-120/val_acc]", "data.support": 10,
                     "data.query": 10, "data.steps_per_epoch": 1, "trainer.max_epochs": 1, "trainer.logger": False,
                     **changes})
    code, err = _exit(lambda: fit(build_cli(args)), capsys)
    assert code == 2 and len([ln for ln in err if ln.startswith("error:")]) == 1 and words in err[-1], err
    assert list(tmp_path.iterdir()) == [], sorted(p.name for p in tmp_path.rglob("*"))  # nothing trained or written


def test_resuming_with_no_epochs_left_says_so(tmp_path: Path, capsys: pytest.CaptureFixture,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    with torch_threads(1):
        fit(build_cli(TINY + ["--checkpoint.dirpath", "ckpt"]))
    last = tmp_path / "ckpt" / "last.ckpt"
    before = last.stat().st_mtime_ns
    for epochs in ("1", "0"):
        code, err = _exit(lambda: fit(build_cli(TINY + ["--checkpoint.dirpath", "ckpt", "--ckpt_path", "last",
                                                        "--trainer.max_epochs", epochs])), capsys)
        assert code == 2 and len([ln for ln in err if ln.startswith("error:")]) == 1, err
    code, err = _exit(lambda: fit(build_cli(TINY + ["--checkpoint.dirpath", "ckpt", "--ckpt_path", "last"])), capsys)
    assert code == 2 and "has already trained 1 epoch and --trainer.max_epochs is 1" in err[-1]
    assert "above 1" in err[-1] and last.stat().st_mtime_ns == before
