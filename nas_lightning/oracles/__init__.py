"""Oracles: the only door to a target task's values during training and search.

One protocol (:class:`Oracle`: synchronous ``query``, asynchronous ``submit`` / ``collect`` /
``cancel_pending`` with synchronous defaults), two implementations (:class:`TableOracle` looks an
architecture up, :class:`TrainingOracle` trains it), and one factory (:class:`OracleFactory`) that
turns a task spec plus :class:`OracleSettings` into an oracle.
"""

from nas_lightning.oracles.base import BudgetExhausted, EvaluationView, Oracle
from nas_lightning.oracles.factory import OracleFactory, OracleSettings
from nas_lightning.oracles.table import TableOracle
from nas_lightning.oracles.training import TrainingOracle

__all__ = ["BudgetExhausted", "EvaluationView", "Oracle", "OracleFactory", "OracleSettings", "TableOracle", "TrainingOracle"]
