"""Search strategies over an oracle, their registry, and the comparison runner."""

from __future__ import annotations

from nas_lightning.errors import UserError
from nas_lightning.tasks.task import Task
from nas_lightning.search.meta import ACQUISITIONS, MetaSearch, Scorer
from nas_lightning.search.strategies import (
    LocalSearch,
    RandomSearch,
    RegularizedEvolution,
    Reinforce,
    Strategy,
    TransferSearch,
)

STRATEGIES: dict[str, type[Strategy]] = {
    "random": RandomSearch,
    "rea": RegularizedEvolution,
    "local": LocalSearch,
    "reinforce": Reinforce,
    "transfer": TransferSearch,
    "meta": MetaSearch,
    "pretrain": MetaSearch,  # the same search over a multi-task pretrained, fine-tuned predictor (no MAML)
}


def make_strategy(name: str, source: Task | None = None, scorer: Scorer | None = None, batch: int = 1,
                  acquisition: str = "ucb", beta: float = 1.0) -> Strategy:
    """Build a strategy by its registry name, with default hyperparameters.

    Args:
        name: one of :data:`STRATEGIES`.
        source: the source task ranking candidates (``transfer`` only).
        scorer: the predictor (``meta`` and ``pretrain``).
        batch, acquisition, beta: ``meta``'s options (see :class:`MetaSearch`).

    Raises:
        UserError: for an unknown name, or ``transfer``/``meta`` without what they need.
    """
    if name not in STRATEGIES:
        raise UserError(f"unknown strategy {name!r}; choose one of {', '.join(STRATEGIES)}")
    if name == "transfer":
        if source is None:
            raise UserError("strategy 'transfer' needs --source SPEC (a source task to rank architectures by)")
        return TransferSearch(source)
    if name in ("meta", "pretrain"):
        if scorer is None:
            flag = "--ckpt (a trained predictor checkpoint)" if name == "meta" else \
                "--pretrained (a checkpoint trained with configs/pretrain.yaml)"
            raise UserError(f"strategy {name!r} needs {flag}")
        return MetaSearch(scorer, batch=batch, acquisition=acquisition, beta=beta)
    return STRATEGIES[name]()


__all__ = [
    "ACQUISITIONS", "STRATEGIES", "LocalSearch", "MetaSearch", "RandomSearch", "RegularizedEvolution",
    "Reinforce", "Scorer", "Strategy", "TransferSearch", "make_strategy",
]
