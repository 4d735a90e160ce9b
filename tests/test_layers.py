"""The layers have no arrow back up, and no module imports itself round a cycle.

Layers, lowest first: errors and files; the search-space vocabulary; tasks (tables, specs,
families) beside models (predictors, MAML, the LightningModule), which never import each other;
candidates (training candidate networks for real); oracles (the one door to a target's values);
data (episodes, the DataModule); search (strategies, the callback) beside rankers (few-shot
ranking, blend, suggestions, latency limits), which never import each other; the commands.
The benchmarks live beside the library (``benchmarks/``) and the library never imports them.
Every ``nas_lightning`` import is read from the source (inside functions and ``TYPE_CHECKING``
blocks too).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "nas_lightning"
LAYERS = {"": 0, "errors": 0, "files": 0.5, "console": 0.5, "safe_load": 0.5, "runfolder": 0.5, "parse_messages": 0.5, "interrupt": 0.5,
          "cli_help": 0.7, "spaces": 1, "tasks": 2, "models": 2, "candidates": 3, "oracles": 4, "data": 5,
          "search": 6, "rankers": 6, "commands": 7, "metatrain": 7, "cli": 7}
# packages of one layer that never import each other
SIBLINGS = [("tasks", "models"), ("search", "rankers")]


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


@pytest.mark.parametrize("a,b", SIBLINGS + [(b, a) for a, b in SIBLINGS])
def test_siblings_never_import_each_other(a: str, b: str) -> None:
    for name, path in MODULES.items():
        if name.startswith(f"nas_lightning.{a}"):
            assert not [t for t in _imports(path) if t.startswith(f"nas_lightning.{b}")], name


def test_only_the_oracles_package_defines_an_oracle() -> None:
    """Every class deriving from ``Oracle`` (or named like one) lives in ``nas_lightning.oracles``."""
    for name, path in MODULES.items():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ClassDef):
                bases = {getattr(b, "id", getattr(b, "attr", "")) for b in node.bases}
                if node.name.endswith("Oracle") or any(b.endswith("Oracle") for b in bases):
                    assert name.startswith("nas_lightning.oracles"), f"{name} defines oracle {node.name}"


def test_the_library_never_imports_the_benchmarks() -> None:
    for name, path in MODULES.items():
        for node in ast.walk(ast.parse(path.read_text())):
            mods = [a.name for a in node.names] if isinstance(node, ast.Import) else \
                [node.module or ""] if isinstance(node, ast.ImportFrom) else []
            assert not [m for m in mods if m == "benchmarks" or m.startswith("benchmarks.")], f"{name} imports {mods}"


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
