"""The drift policy: one function decides whether a month's PSI is a breach and whether it triggers a retrain.

Semantics (all comparisons strict, matching the settings' descriptions):
- breach when the score PSI is greater than settings.score_psi_breach, or when MORE than
  settings.max_feature_breaches features have a PSI greater than settings.feature_psi_breach
  (with the default 3, three drifting features are tolerated and a fourth breaches);
- retrain when there is a breach and either the model was never retrained or at least
  settings.retrain_cooldown_months have passed since last_retrain_month (months_between(last, month) >= cooldown).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from orchard.errors import OrchardError
from orchard.months import months_between, parse_month
from orchard.settings import Settings


@dataclass(frozen=True)
class PolicyDecision:
    """What the policy decided for one month, and why (each reason names its metric and threshold)."""

    breach: bool
    retrain: bool
    reasons: list[str] = field(default_factory=list)
    month: str | None = None


def _check_value(name: str, value: float) -> float:
    try:
        number = float(value)
    except (TypeError, ValueError):
        number = math.nan
    if math.isnan(number) or number < 0:
        raise OrchardError(f"{name} must be a non-negative number, got {value!r}")
    return number


def decide(
    month: str,
    score_psi: float,
    feature_psi: dict[str, float],
    settings: Settings,
    last_retrain_month: str | None,
) -> PolicyDecision:
    """Return whether the month's score/feature PSI breaches the policy and whether to retrain now."""
    parse_month(month)
    score_psi = _check_value("score PSI", score_psi)
    feature_psi = {f: _check_value(f"PSI of feature {f!r}", v) for f, v in feature_psi.items()}

    reasons: list[str] = []
    score_breach = score_psi > settings.score_psi_breach
    if score_breach:
        reasons.append(f"score PSI {score_psi:.4f} > score_psi_breach {settings.score_psi_breach}")

    drifting = sorted((f for f, v in feature_psi.items() if v > settings.feature_psi_breach))
    feature_breach = len(drifting) > settings.max_feature_breaches
    if feature_breach:
        listed = ", ".join(f"{f}={feature_psi[f]:.4f}" for f in drifting)
        reasons.append(
            f"{len(drifting)} features with PSI > feature_psi_breach {settings.feature_psi_breach} "
            f"(more than max_feature_breaches {settings.max_feature_breaches}): {listed}"
        )

    breach = score_breach or feature_breach
    if not breach:
        reasons.append(
            f"no breach: score PSI {score_psi:.4f} <= {settings.score_psi_breach} and {len(drifting)} "
            f"feature(s) above {settings.feature_psi_breach} (at most {settings.max_feature_breaches} allowed)"
        )
        return PolicyDecision(month=month, breach=False, retrain=False, reasons=reasons)

    if last_retrain_month is None:
        reasons.append("retrain: no earlier retrain")
        return PolicyDecision(month=month, breach=True, retrain=True, reasons=reasons)

    elapsed = months_between(last_retrain_month, month)
    if elapsed < 0:
        raise OrchardError(f"last retrain month {last_retrain_month} is after the monitored month {month}")
    retrain = elapsed >= settings.retrain_cooldown_months
    verdict = "retrain" if retrain else "retrain held"
    comparison = ">=" if retrain else "<"
    reasons.append(
        f"{verdict}: {elapsed} month(s) since last retrain {last_retrain_month} "
        f"{comparison} retrain_cooldown_months {settings.retrain_cooldown_months}"
    )
    return PolicyDecision(month=month, breach=True, retrain=retrain, reasons=reasons)
