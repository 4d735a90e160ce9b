"""Loading a meta-learned predictor from a checkpoint, with clear errors for bad files."""

from __future__ import annotations

from pathlib import Path

import torch

from nas_lightning.benchmarks import space
from nas_lightning.errors import UserError
from nas_lightning.models.module import MetaPredictor


def load_predictor(path: str | Path, device: str | torch.device = "cpu") -> MetaPredictor:
    """The :class:`MetaPredictor` saved in a Lightning checkpoint, in eval mode.

    Raises:
        UserError: for a missing or unreadable file, or a checkpoint of another search space or
            model.
    """
    p = Path(path)
    if not p.is_file():
        raise UserError(f"checkpoint {str(path)!r} does not exist; give a .ckpt written by train.py (e.g. runs/default/checkpoints/last.ckpt)")
    try:
        ckpt = torch.load(p, map_location="cpu", weights_only=False)
    except Exception as err:  # truncated, not a zip, not a torch file
        raise UserError(f"checkpoint {str(path)!r} is unreadable ({type(err).__name__}); give a .ckpt written by train.py") from None
    hp = ckpt.get("hyper_parameters") if isinstance(ckpt, dict) else None
    if not isinstance(hp, dict) or "state_dict" not in ckpt:
        raise UserError(f"checkpoint {str(path)!r} is not a nas-lightning predictor checkpoint; give a .ckpt written by train.py")
    if hp.get("space", space.SPACE_NAME) != space.SPACE_NAME:
        raise UserError(f"checkpoint {str(path)!r} is for search space {hp.get('space')!r}, not {space.SPACE_NAME!r}")
    try:
        init = {k: v for k, v in hp.items() if k in MetaPredictor.__init__.__code__.co_varnames}
        module = MetaPredictor(**init)
        module.load_state_dict(ckpt["state_dict"])
    except (RuntimeError, TypeError, ValueError) as err:
        raise UserError(f"checkpoint {str(path)!r} does not fit this predictor ({str(err).splitlines()[0]}); retrain with this version") from None
    data = ckpt.get("NASTaskDataModule") or {}
    module.trained_on = {  # what the predictor has seen: lets callers refuse a contaminated evaluation
        "tasks": list(data.get("seen_tasks", [])),
        "fed_back": {k: len(v) for k, v in data.get("fed_back", {}).items() if v},
    }
    return module.to(device).eval()
