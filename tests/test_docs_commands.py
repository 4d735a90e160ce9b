"""Every ``python train.py`` / ``python search.py`` command in README.md and docs/*.md parses: a
renamed or misspelt option breaks the suite, not the reader. Nothing is trained or searched."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.doc_commands import check, code_lines, commands

REPO = Path(__file__).resolve().parents[1]
DOCS = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
FOUND = [(doc.relative_to(REPO).as_posix(), script, args) for doc in DOCS if doc.is_file()
         for script, args in commands(doc.read_text(encoding="utf-8"))]


def test_the_docs_hold_commands() -> None:
    assert any(script == "train.py" for _, script, _ in FOUND) and any(script == "search.py" for _, script, _ in FOUND)


@pytest.mark.parametrize("doc,script,args", FOUND, ids=[f"{d}:{s}:{' '.join(a)[:60]}" for d, s, a in FOUND])
def test_documented_command_parses(doc: str, script: str, args: list[str]) -> None:
    error = check(script, args, REPO)
    assert error is None, f"{doc}: python {script} {' '.join(args)}: {error}"


SYNTHETIC = """\
Train, then search:

```bash
OMP_NUM_THREADS=1 python train.py --trainer.max_epochs 1 \\
    --run tiny   # a comment
$ python search.py compare --task nb201/cifar10/val_acc --budget 5 | tail -3
python train.py --trainer.max_epoch 1
python search.py compare --task nb201/cifar10/val_acc --budjet 5
```

```text
python search.py compare --task SPEC --budget N
```

```python
print("python train.py --bogus")
```
"""


def test_extraction_joins_continuations_and_skips_schematic_blocks() -> None:
    assert list(code_lines("```\na \\\n  b\nc\n```\n")) == ["a    b", "c"]
    assert commands(SYNTHETIC) == [
        ("train.py", ["--trainer.max_epochs", "1", "--run", "tiny"]),
        ("search.py", ["compare", "--task", "nb201/cifar10/val_acc", "--budget", "5"]),
        ("train.py", ["--trainer.max_epoch", "1"]),
        ("search.py", ["compare", "--task", "nb201/cifar10/val_acc", "--budjet", "5"]),
    ]


def test_a_misspelt_option_fails_the_check() -> None:
    results = [check(script, args, REPO) for script, args in commands(SYNTHETIC)]
    assert results[:2] == [None, None]
    assert "--trainer.max_epoch" in results[2] and "--budjet" in results[3]
