"""The retraining policy: one pure function decides, from a model's recorded history and the month's drift, whether
to fit a first champion, retrain, or hold, and who approves what is trained.

Both profiles call it with the same inputs: the embedded lifecycle (flows/lifecycle.py) and the deployed monitor
flow (flows/automations.py) read the history from the records both write (orchard/lifecycle/retraining.py).

Semantics (all comparisons strict, matching the settings' descriptions):
- no champion when the month began: first fit once enough labelled vintages have matured;
- breach when the score PSI is greater than the model's score_psi_breach, or when MORE than
  max_feature_breaches features have a PSI greater than feature_psi_breach (the portfolio's `policy.monitoring`,
  overridden per model)
  (with the default 3, three drifting features are tolerated and a fourth breaches);
- retrain when there is a breach and either the model was never trained or at least
  retrain_cooldown_months have passed since its last training (months_between(last, month) >= cooldown);
- approval: by the policy when every gate passes (settings.governance.auto_approve), else by a person; while a trained
  version awaits a person's approval, nothing new is trained (hold).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Literal

from orchard.errors import OrchardError
from orchard.months import months_between, parse_month
from orchard.portfolio.spec import MonitoringDef
from orchard.settings import GovernanceConfig

Action = Literal["first_fit", "retrain", "hold"]
Approval = Literal["policy", "person"]


@dataclass(frozen=True)
class ModelHistory:
    """What the records say about a model before the month decided."""

    champion: int | None = None
    """The champion in force when the month began (None: no champion yet)."""
    last_trained: str | None = None
    """The latest month, before this one, in which a version was trained (first fit or retrain)."""
    awaiting_approval: int | None = None
    """A version trained before this month that no one has approved or refused yet."""


@dataclass(frozen=True)
class Drift:
    """The month's PSI of the champion's score and of each of its features (frozen reference bins)."""

    score_psi: float
    feature_psi: dict[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class PolicyDecision:
    """What the policy decided for one model and month, and why (each reason names its metric and threshold)."""

    action: Action
    breach: bool = False
    approval: Approval = "policy"
    reasons: list[str] = field(default_factory=list)
    month: str | None = None

    @property
    def retrain(self) -> bool:
        """Whether a drift breach asks for a retrain now (what a deployed monitor announces as a breach event)."""
        return self.action == "retrain"

    @property
    def train(self) -> bool:
        """Whether a version is trained this month (first fit or retrain)."""
        return self.action != "hold"


def approval_mode(governance: GovernanceConfig) -> Approval:
    """Return who approves a trained version: the policy (when every gate passes) or a person."""
    return "policy" if governance.auto_approve else "person"


def _check_value(name: str, value: float) -> float:
    try:
        number = float(value)
    except (TypeError, ValueError):
        number = math.nan
    if math.isnan(number) or number < 0:
        raise OrchardError(f"{name} must be a non-negative number, got {value!r}")
    return number


def _breach(drift: Drift, limits: MonitoringDef) -> tuple[bool, list[str]]:
    """Return whether the month's drift breaches the policy, with the reasons."""
    score_psi = _check_value("score PSI", drift.score_psi)
    feature_psi = {f: _check_value(f"PSI of feature {f!r}", v) for f, v in drift.feature_psi.items()}
    reasons: list[str] = []
    score_breach = score_psi > limits.score_psi_breach
    if score_breach:
        reasons.append(f"score PSI {score_psi:.4f} > score_psi_breach {limits.score_psi_breach}")
    drifting = sorted(f for f, v in feature_psi.items() if v > limits.feature_psi_breach)
    feature_breach = len(drifting) > limits.max_feature_breaches
    if feature_breach:
        listed = ", ".join(f"{f}={feature_psi[f]:.4f}" for f in drifting)
        reasons.append(
            f"{len(drifting)} features with PSI > feature_psi_breach {limits.feature_psi_breach} "
            f"(more than max_feature_breaches {limits.max_feature_breaches}): {listed}"
        )
    if not (score_breach or feature_breach):
        reasons.append(
            f"no breach: score PSI {score_psi:.4f} <= {limits.score_psi_breach} and {len(drifting)} "
            f"feature(s) above {limits.feature_psi_breach} (at most {limits.max_feature_breaches} allowed)"
        )
    return score_breach or feature_breach, reasons


def decide(
    month: str,
    history: ModelHistory,
    limits: MonitoringDef,
    approval: Approval,
    drift: Drift | None = None,
    *,
    labels_ready: bool = False,
) -> PolicyDecision:
    """Return the month's action for a model: first fit, retrain or hold, who approves, and why.

    `limits` is the model's monitoring policy (its portfolio entry), `approval` who approves what is trained
    (approval_mode); `drift` is the champion's monitoring of the month (required when there is a champion);
    `labels_ready` says whether enough labelled vintages have matured to train (what a first fit waits for).
    """
    parse_month(month)
    if history.last_trained is not None and months_between(history.last_trained, month) < 0:
        raise OrchardError(f"last retrain month {history.last_trained} is after the monitored month {month}")
    pending = history.awaiting_approval if approval == "person" else None
    waiting = f"v{pending} awaits a person's approval: nothing new is trained until it is decided"

    if history.champion is None:
        if pending is not None:
            return PolicyDecision("hold", False, approval, [f"no champion yet; {waiting}"], month)
        if not labels_ready:
            reason = "no champion yet; not enough mature labelled vintages with both classes to train"
            return PolicyDecision("hold", False, approval, [reason], month)
        return PolicyDecision("first_fit", False, approval, ["first fit: no champion yet"], month)

    if drift is None:
        raise OrchardError(
            f"champion v{history.champion} has no monitoring of {month}: the policy needs its drift"
        )
    breach, reasons = _breach(drift, limits)
    if not breach:
        return PolicyDecision("hold", False, approval, reasons, month)
    if pending is not None:
        return PolicyDecision("hold", True, approval, [*reasons, f"retrain held: {waiting}"], month)
    if history.last_trained is None:
        return PolicyDecision("retrain", True, approval, [*reasons, "retrain: no earlier retrain"], month)

    elapsed = months_between(history.last_trained, month)
    retrain = elapsed >= limits.retrain_cooldown_months
    verdict = "retrain" if retrain else "retrain held"
    comparison = ">=" if retrain else "<"
    reasons.append(
        f"{verdict}: {elapsed} month(s) since last retrain {history.last_trained} "
        f"{comparison} retrain_cooldown_months {limits.retrain_cooldown_months}"
    )
    return PolicyDecision("retrain" if retrain else "hold", True, approval, reasons, month)
