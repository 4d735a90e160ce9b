"""CSV tables as users write them: a ``@word`` that is not a direction is named as such (with the
table's columns), and a wide table read for one column costs memory for that column only."""

from __future__ import annotations

import random
import tracemalloc
from pathlib import Path

import pytest

from nas_lightning.cli import run_main
from nas_lightning.commands import main as search_main
from nas_lightning.errors import UserError
from nas_lightning.spaces import NB201
from nas_lightning.tasks.csvtable import load_csv
from nas_lightning.tasks.load import load_task
from nas_lightning.tasks.spec import TaskSpec


@pytest.fixture()
def good(tmp_path: Path) -> Path:
    path = tmp_path / "good.csv"
    path.write_text("arch,val_acc,fastest\n" + "".join(f"{NB201.to_string(i)},{70 + i / 1000:.3f},{i % 7}\n"
                                                         for i in range(0, 3000, 97)))
    return path


def test_an_unknown_direction_word_is_named_with_the_columns(good: Path) -> None:
    (good.parent / "plain.csv").write_text(good.read_text().replace(",fastest", ",other"))
    with pytest.raises(UserError, match=r"@quickest is not a direction \(@min or @max\).*no column 'quickest'.*"
                                        r"columns: val_acc, other"):
        load_task(f"csv:{good.parent / 'plain.csv'}@quickest")


def test_a_column_written_as_a_direction_is_pointed_to_its_spelling(good: Path) -> None:
    with pytest.raises(UserError, match=f"to use the column 'fastest' write csv:{good}#fastest"):
        load_task(f"csv:{good}@fastest")


def test_direction_suffixes_still_parse(good: Path) -> None:
    assert TaskSpec.parse(f"csv:{good}#val_acc@min").direction == "min"
    assert load_task(f"csv:{good}#val_acc@min").direction == "min"
    assert load_task(f"csv:{good}#fastest").direction == "max"
    assert TaskSpec.parse("csv:runs@2024.csv").path == "runs@2024.csv"  # an '@' inside a file name stays


def test_the_command_line_says_it_in_one_line_exit_2(good: Path, capsys: pytest.CaptureFixture) -> None:
    with pytest.raises(SystemExit) as stop:
        run_main(lambda: search_main(["tasks", "--task", f"csv:{good}@fastest"]))
    err = capsys.readouterr().err.strip().splitlines()
    assert stop.value.code == 2 and len(err) == 1 and "not a direction" in err[0] and "does not exist" not in err[0]


def _wide(path: Path, rows: int = 400, columns: int = 200) -> Path:
    rng = random.Random(0)
    header = ["arch"] + [f"m{j}_latency_ms" for j in range(columns)]
    lines = [",".join(header)]
    for i in range(rows):
        lines.append(",".join([NB201.to_string(i * 37)] + [f"{rng.uniform(1, 99):.5f}" for _ in range(columns)]))
    path.write_text("\n".join(lines) + "\n")
    return path


def test_a_wide_table_read_for_one_column_keeps_only_that_column(tmp_path: Path) -> None:
    path = _wide(tmp_path / "wide.csv")
    size = path.stat().st_size
    load_csv(str(_wide(tmp_path / "small.csv", rows=3, columns=2)))  # the space's one-off lookup tables, before tracing
    tracemalloc.start()
    try:
        (task,) = load_csv(str(path), "m7_latency_ms")
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert task.size == 400
    assert peak < size / 2, f"peak {peak} bytes for a {size}-byte file"  # the whole file held as strings: ~7x


def test_every_column_and_one_column_agree(tmp_path: Path) -> None:
    path = _wide(tmp_path / "wide.csv", rows=30, columns=5)
    every = {t.name: t for t in load_csv(str(path))}
    one = load_csv(str(path), "m3_latency_ms")[0]
    assert len(every) == 5 and every[one.name].table.tolist() == one.table.tolist()
    assert one.archs.tolist() == sorted(NB201.from_string(NB201.to_string(i * 37)) for i in range(30))


def test_a_bad_cell_is_named_by_its_line(tmp_path: Path) -> None:
    path = _wide(tmp_path / "wide.csv", rows=10, columns=3)
    lines = path.read_text().splitlines()
    lines[4] = lines[4].rsplit(",", 1)[0] + ",fast"
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(UserError, match=r"line 5, column 'm2_latency_ms': 'fast' is not a number"):
        load_csv(str(path))
    assert load_csv(str(path), "m0_latency_ms")[0].size == 10  # a column not asked for is not read
