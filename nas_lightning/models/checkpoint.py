"""Reading checkpoints written by ``train.py``: the one place a ``.ckpt`` file is opened.

The predictor itself is rebuilt by Lightning's own ``load_from_checkpoint``; what is read here
besides is checked first so that a bad file is a one-line error, never a traceback. Every read is
weights-only (see :mod:`nas_lightning.safe_load`): a file holding anything but tensors and plain
data is refused before any of it is built, so opening a checkpoint never runs code.
"""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any

import torch

from nas_lightning.errors import UserError
from nas_lightning.models.module import MetaPredictor
from nas_lightning.safe_load import CHECKPOINT_GLOBALS, load_checkpoint_file, refused_global
from nas_lightning.spaces import SearchSpace

HINT = "give a .ckpt written by train.py (e.g. runs/default/checkpoints/last.ckpt)"


def read_checkpoint(path: str | Path) -> dict[str, Any]:
    """The raw contents of a train.py checkpoint.

    Raises:
        UserError: for a missing or unreadable file, a file holding more than tensors and plain
            data, or a file that is not a predictor checkpoint.
    """
    p = Path(path)
    if not p.is_file():
        raise UserError(f"checkpoint {str(path)!r} does not exist; {HINT}")
    try:
        ckpt = load_checkpoint_file(p)
    except Exception as err:  # truncated, not a zip, not a torch file, or more than a checkpoint holds
        what = refused_global(err)
        if what is not None:
            raise UserError(f"checkpoint {str(path)!r} holds {what}, which no train.py checkpoint holds; refused "
                            f"(loading it could run code); {HINT}") from None
        raise UserError(f"checkpoint {str(path)!r} is unreadable ({type(err).__name__}); {HINT}") from None
    hp = ckpt.get("hyper_parameters") if isinstance(ckpt, dict) else None
    if not isinstance(hp, dict) or not isinstance(ckpt.get("state_dict"), dict) or "pytorch-lightning_version" not in ckpt:
        raise UserError(f"checkpoint {str(path)!r} is not a nas-lightning predictor checkpoint; {HINT}")
    return ckpt


def space_of(ckpt: dict[str, Any]) -> str:
    """The name of the search space a checkpoint's predictor scores."""
    return ckpt["hyper_parameters"].get("space", "nb201")


def trained_on(ckpt: dict[str, Any]) -> dict[str, Any]:
    """What a checkpoint's predictor has seen: the tables it trained or was selected on (by name
    and by content fingerprint), and how many answers of each target's oracle were fed back into
    training (by name and by the target's fingerprint)."""
    data = ckpt.get("NASTaskDataModule") or {}
    fed = {k: len(v) for k, v in data.get("fed_back", {}).items() if v}
    targets = data.get("target_fingerprints", {})
    return {"tasks": list(data.get("seen_tasks", [])), "fingerprints": list(data.get("seen_fingerprints", [])),
            "fed_back": fed, "fed_back_fingerprints": {targets[k]: n for k, n in fed.items() if targets.get(k)}}


def load_predictor(path: str | Path, device: str | torch.device = "cpu", space: SearchSpace | None = None) -> MetaPredictor:
    """The :class:`MetaPredictor` saved in a train.py checkpoint, in eval mode, with
    ``trained_on`` (see :func:`trained_on`) attached.

    Args:
        path: the checkpoint.
        device: where the predictor runs.
        space: the search space of the task it will score (``None``: no check).

    Raises:
        UserError: for a bad file, a checkpoint of another search space, or one that does not fit
            this version's predictor.
    """
    ckpt = read_checkpoint(path)
    name = space_of(ckpt)
    if space is not None and name != space.name:
        raise UserError(f"checkpoint {str(path)!r} is for search space {name!r}, not {space.name!r}; "
                        f"use a checkpoint trained on {space.name} tasks")
    try:
        with torch.serialization.safe_globals(CHECKPOINT_GLOBALS):
            module = MetaPredictor.load_from_checkpoint(path, map_location="cpu", weights_only=True)
    except (RuntimeError, TypeError, ValueError, KeyError, pickle.UnpicklingError) as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise UserError(f"checkpoint {str(path)!r} does not fit this predictor ({first}); retrain with this version") from None
    module.trained_on = trained_on(ckpt)  # lets callers refuse a contaminated evaluation
    return module.to(device).eval()
