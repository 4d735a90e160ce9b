"""The layers have no arrow back up, and no module imports itself round a cycle.

Layers, lowest first: errors and files; the search-space vocabulary; tasks (tables, specs,
oracles) beside models (predictors, MAML, the LightningModule), which never import each other;
evaluation (training networks for real: the training-backed oracle); data (episodes, the
DataModule); search (strategies, the callback); the commands; the benchmarks. Every ``nas_lightning`` import is read from the source (inside functions and
``TYPE_CHECKING`` blocks too).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "nas_lightning"
LAYERS = {"errors": 0, "files": 0, "spaces": 1, "tasks": 2, "models": 2, "evaluation": 3, "data": 4, "search": 5,
          "commands": 6, "training": 6, "cli": 6, "bench": 7}


def _modules() -> dict[str, Path]:
    out = {}
    for path in PACKAGE.rglob("*.py"):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        out[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return out


MODULES = _modules()


def _imports(path: Path) -> set[str]:
    """The ``nas_lightning`` modules a file imports (a ``from package import name`` of a submodule
    counts as that submodule)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.startswith("nas_lightning")}
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("nas_lightning"):
            subs = {f"{node.module}.{a.name}" for a in node.names} & set(MODULES)
            found |= subs or {node.module}
    return found


def _layer(module: str) -> tuple[int, str]:
    top = module.split(".")[1] if module.count(".") else ""
    if top not in LAYERS:
        pytest.fail(f"{module}: package {top!r} has no layer; add it to LAYERS")
    return LAYERS[top], top


@pytest.mark.parametrize("module", sorted(m for m in MODULES if m != "nas_lightning"))
def test_no_arrow_back_up(module: str) -> None:
    mine, top = _layer(module)
    for target in _imports(MODULES[module]):
        theirs, other = _layer(target)
        assert theirs < mine or other == top, f"{module} (layer {mine}) imports {target} (layer {theirs})"


def test_models_never_import_data() -> None:
    for name, path in MODULES.items():
        if name.startswith("nas_lightning.models"):
            assert not [t for t in _imports(path) if t.startswith("nas_lightning.data")], name


def test_no_import_cycle() -> None:
    graph = {m: {t for t in _imports(p) if t in MODULES and t != m} for m, p in MODULES.items()}
    state: dict[str, int] = {}  # 1: on the path, 2: done

    def visit(m: str, path: list[str]) -> None:
        state[m] = 1
        for t in sorted(graph[m]):
            if state.get(t) == 1:
                pytest.fail("import cycle: " + " -> ".join(path[path.index(t):] + [t]))
            if t not in state:
                visit(t, path + [t])
        state[m] = 2

    for m in sorted(graph):
        if m not in state:
            visit(m, [m])


def test_the_check_catches_an_arrow_up(tmp_path: Path) -> None:
    """The parser sees the kinds of import a violation would use."""
    src = tmp_path / "x.py"
    src.write_text("from nas_lightning.data import episodes\nimport nas_lightning.search.runner\n"
                   "def f():\n    from nas_lightning.tasks.load import load_task\n")
    assert _imports(src) == {"nas_lightning.data.episodes", "nas_lightning.search.runner", "nas_lightning.tasks.load"}
