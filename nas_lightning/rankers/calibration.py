"""How well a predictive distribution is calibrated on held-out values (scored after the fact)."""

from __future__ import annotations

import math

import torch
from scipy.special import stdtrit

LEVEL = 0.8  # the central interval whose coverage is reported


def half_width(level: float, df: float = math.inf) -> float:
    """Half-width of the central ``level`` interval in units of the scale: the normal's, or the
    Student-t's with ``df`` degrees of freedom when finite."""
    if math.isinf(df):
        return math.sqrt(2.0) * float(torch.special.erfinv(torch.tensor(level, dtype=torch.float64)))
    return float(stdtrit(df, 0.5 + level / 2))


def coverage(mean: torch.Tensor, scale: torch.Tensor, truth: torch.Tensor, level: float = LEVEL,
             df: float = math.inf) -> float:
    """Share of ``truth`` inside the central ``level`` interval of ``N(mean, scale^2)``, or of the
    Student-t with ``df`` degrees of freedom, location ``mean`` and scale ``scale`` when finite."""
    half = half_width(level, df) * scale.double()
    return float(((truth.double() - mean.double()).abs() <= half).double().mean())


def nlpd(mean: torch.Tensor, scale: torch.Tensor, truth: torch.Tensor, df: float = math.inf) -> float:
    """Mean negative log density of ``truth`` under the predictive of :func:`coverage`, in units of
    ``truth``'s own standard deviation (so tasks of any scale compare; lower is better)."""
    t, m, s = truth.double(), mean.double(), scale.double().clamp_min(1e-12)
    unit = float(t.std()) if len(t) > 1 and float(t.std()) > 0 else 1.0
    if math.isinf(df):
        dens = 0.5 * ((t - m) / s).square() + s.log() + 0.5 * math.log(2 * math.pi)
    else:
        dens = -torch.distributions.StudentT(torch.tensor(float(df), dtype=torch.float64), m, s).log_prob(t)
    return float(dens.mean()) - math.log(unit)
