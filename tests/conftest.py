"""Shared test fixtures.

Every test session gets its own table cache (``NAS_LIGHTNING_CACHE``) under pytest's temporary
directory, so tests never read or write the user's ``~/.cache/nas_lightning``.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO_ROOT.parent / "shared" / "data"

# Plain `pytest` (not `python -m pytest`) puts tests/ on sys.path, not the repo root.
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))


@pytest.fixture(scope="session", autouse=True)
def nas_cache_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh, session-wide table cache; the first load of a table builds it there."""
    path = tmp_path_factory.mktemp("nas_lightning_cache")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("NAS_LIGHTNING_CACHE", str(path))
        yield path


@pytest.fixture(scope="session")
def repo_root() -> Path:
    """The repository root."""
    return REPO_ROOT


@pytest.fixture(scope="session")
def shared_data_dir() -> Path:
    """``../shared/data`` relative to the repo root (may be absent: tests using it must skip)."""
    return SHARED_DATA
