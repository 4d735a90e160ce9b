"""How well a predictive distribution is calibrated on held-out values (scored after the fact)."""

from __future__ import annotations

import math

import torch

LEVEL = 0.8  # the central interval whose coverage is reported


def coverage(mean: torch.Tensor, sd: torch.Tensor, truth: torch.Tensor, level: float = LEVEL) -> float:
    """Share of ``truth`` inside the central ``level`` interval of ``N(mean, sd^2)``."""
    half = math.sqrt(2.0) * float(torch.special.erfinv(torch.tensor(level, dtype=torch.float64))) * sd.double()
    return float(((truth.double() - mean.double()).abs() <= half).double().mean())


def nlpd(mean: torch.Tensor, sd: torch.Tensor, truth: torch.Tensor) -> float:
    """Mean negative log density of ``truth`` under ``N(mean, sd^2)``, in units of ``truth``'s own
    standard deviation (so tasks of any scale compare; lower is better)."""
    t, m, s = truth.double(), mean.double(), sd.double().clamp_min(1e-12)
    unit = float(t.std()) if len(t) > 1 and float(t.std()) > 0 else 1.0
    dens = 0.5 * ((t - m) / s).square() + s.log() + 0.5 * math.log(2 * math.pi)
    return float(dens.mean()) - math.log(unit)
