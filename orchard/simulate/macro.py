"""The macro path of the simulation: a pandemic-like shock that hits, peaks and recovers gradually."""

from __future__ import annotations

import math
from dataclasses import dataclass

from orchard.months import months_between

SHOCK_ONSET_STRESS = 0.6
"""Stress in the first shock month (the shock is already visible but not yet at its peak)."""

PEAK_MONTHS = 2
"""Months at full stress (stress 1.0) after the onset month."""

RECOVERY_MONTHS = 10.0
"""e-folding time of the recovery after the peak (stress ~0.14 twenty months after the peak)."""


@dataclass(frozen=True)
class Macro:
    """The economy in one month; every factor is 1.0 (or 0.0 for shifts) in normal times."""

    month: str
    stress: float
    income_factor: float
    activity_factor: float
    active_share_factor: float
    amount_factor: float
    hazard_shift: float
    apply_shift: float
    mix_shift: float


def stress_level(month: str, shock_month: str) -> float:
    """Return the shock's stress in [0, 1] for a month: 0 before, 0.6 at onset, 1 at peak, then decays."""
    since = months_between(shock_month, month)
    if since < 0:
        return 0.0
    if since == 0:
        return SHOCK_ONSET_STRESS
    if since <= PEAK_MONTHS:
        return 1.0
    return math.exp(-(since - PEAK_MONTHS) / RECOVERY_MONTHS)


def macro_for(month: str, shock_month: str) -> Macro:
    """Return the macro factors of a month (income -28%, activity -40%, hazard up at full stress)."""
    return macro_at_stress(month, stress_level(month, shock_month))


def macro_at_stress(month: str, stress: float) -> Macro:
    """Return the macro factors of a month at a given stress (0 = normal times)."""
    return Macro(
        month=month,
        stress=stress,
        income_factor=1.0 - 0.30 * stress,
        activity_factor=1.0 - 0.40 * stress,
        active_share_factor=1.0 - 0.20 * stress,
        amount_factor=1.0 + 0.40 * stress,
        hazard_shift=1.15 * stress,
        apply_shift=0.90 * stress,
        mix_shift=0.35 * stress,
    )
