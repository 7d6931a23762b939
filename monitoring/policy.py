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

A model that declares an early-performance label (its `early_label`) adapts to a shock (see `Adaptation`):
- a breach is open while too few vintages since it have mature labels for a fit to learn from them (its
  development and out-of-time samples: `oot_months` + 1), even in a month that does not breach. Once enough
  vintages since the breach began have mature early labels (`policy.recalibration_vintages` to fit, one more
  held out for the gate), the champion is recalibrated, not held by the retrain cooldown (a recalibration keeps
  the ranking and is gated on calibration; a refused one is tried again the next month), and not again while
  the champion is a recalibration for the same breach; until then a breach retrains as for any model, its
  reason saying what the recalibration waits for;
- a recalibrated champion is provisional: once enough vintages since its breach have mature labels to fit and
  hold out, a retrain is due whether or not the month breaches (cooldown and approvals as for any retrain);
- so is a champion fitted before a breach's vintages could be learnt: once they can (the breach settles), a retrain
  is due whether or not the month breaches, until a version fitted since then is champion (monitoring may fall
  below its limits long before the shock's vintages are learnt, and a model must not stay pre-shock for that).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Literal

from orchard.errors import OrchardError
from orchard.months import months_between, parse_month
from orchard.portfolio.spec import MonitoringDef
from orchard.settings import GovernanceConfig

Action = Literal["first_fit", "retrain", "recalibrate", "hold"]
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

    def drift_share(self, limit: float) -> float:
        """Return the share of the features whose PSI exceeds limit (0 without features)."""
        return sum(v > limit for v in self.feature_psi.values()) / max(len(self.feature_psi), 1)


@dataclass(frozen=True)
class Adaptation:
    """What a model with an early-performance label can learn from at the month (computed by the caller)."""

    breach_since: str | None
    """The open breach: the first recorded breach with fewer than fit_needs mature vintages since (None: none)."""
    early_vintages: int = 0
    """Vintages from breach_since on whose early labels are all mature."""
    mature_vintages: int = 0
    """Vintages from breach_since on whose (target) labels are all mature."""
    fit_needs: int = 1
    """Mature vintages since the breach a fit needs to learn from it (its development and out-of-time samples)."""
    needed: int = 3
    """Early vintages a recalibration needs: those it is fitted on and one held out for its gate."""
    refit_ready: bool = False
    """A fit is due: the champion is a recalibration and enough vintages since its breach have mature labels for a
    fit, or it was fitted before the vintages of the newest settled breach could be learnt."""
    refit_why: str | None = None
    """Why the fit is due (the policy's reason), when refit_ready."""
    shortfall: str | None = None
    """Why the vintages a recalibration needs cannot be fitted on yet (too few events), or None."""
    answered: bool = False
    """The champion is already a recalibration for this breach."""


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
        """Whether a version is trained this month (first fit, retrain or recalibration)."""
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


def is_breach(drift: Drift, limits: MonitoringDef) -> bool:
    """Return whether the month's drift breaches the model's monitoring policy."""
    return breach_reasons(drift, limits)[0]


def breach_reasons(drift: Drift, limits: MonitoringDef) -> tuple[bool, list[str]]:
    """Return whether the month's drift breaches the policy, with the reasons (each names metric and threshold)."""
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
    adaptation: Adaptation | None = None,
) -> PolicyDecision:
    """Return the month's action for a model: first fit, retrain, recalibrate or hold, who approves, and why.

    `limits` is the model's monitoring policy (its portfolio entry), `approval` who approves what is trained
    (approval_mode); `drift` is the champion's monitoring of the month (required when there is a champion);
    `labels_ready` says whether enough labelled vintages have matured to train (what a first fit waits for);
    `adaptation` is given for a model with an early-performance label (see the module docstring).
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
    breach, reasons = breach_reasons(drift, limits)
    refit = adaptation is not None and adaptation.refit_ready
    # an open breach: too few vintages since it have mature labels for a fit (the month itself need not breach)
    unlearnt = (
        adaptation
        if adaptation and adaptation.breach_since and adaptation.mature_vintages < adaptation.fit_needs
        else None
    )
    not_yet = _not_recalibrated(unlearnt) if unlearnt is not None else None
    recalibrate = unlearnt is not None and not_yet is None and not refit  # a refit due comes first
    if not (breach or refit or recalibrate):
        return PolicyDecision("hold", False, approval, reasons, month)
    if refit and adaptation is not None:
        reasons.append(
            adaptation.refit_why or f"v{history.champion}: a fit on the vintages since the breach is due"
        )
    if pending is not None:
        return PolicyDecision("hold", breach, approval, [*reasons, f"retrain held: {waiting}"], month)
    if unlearnt is not None and recalibrate:
        # no cooldown: a recalibration keeps the ranking and is gated on calibration; a refused one is tried
        # again the next month, on the newer vintages
        return PolicyDecision(
            "recalibrate",
            breach,
            approval,
            [*reasons, f"recalibrate: {_stale(unlearnt)}; {_early(unlearnt)}"],
            month,
        )
    due = "no earlier retrain"
    if history.last_trained is not None:
        elapsed = months_between(history.last_trained, month)
        ready = elapsed >= limits.retrain_cooldown_months
        due = (
            f"{elapsed} month(s) since last retrain {history.last_trained} {'>=' if ready else '<'} "
            f"retrain_cooldown_months {limits.retrain_cooldown_months}"
        )
        if not ready:
            return PolicyDecision("hold", breach, approval, [*reasons, f"retrain held: {due}"], month)
    if not refit and not_yet is not None:
        return PolicyDecision(
            "retrain", breach, approval, [*reasons, f"retrain: {due}; no recalibration: {not_yet}"], month
        )
    return PolicyDecision("retrain", breach, approval, [*reasons, f"retrain: {due}"], month)


def _stale(open_breach: Adaptation) -> str:
    return (
        f"{open_breach.mature_vintages} vintage(s) since the breach of {open_breach.breach_since} have mature "
        f"labels, a fit needs {open_breach.fit_needs}"
    )


def _early(open_breach: Adaptation) -> str:
    return (
        f"{open_breach.early_vintages} vintage(s) since {open_breach.breach_since} have mature early labels, "
        f"a recalibration needs {open_breach.needed}"
    )


def _not_recalibrated(open_breach: Adaptation) -> str | None:
    """Return why an open breach is not recalibrated this month (None: it is)."""
    if open_breach.answered:
        return f"the champion is already a recalibration for the breach since {open_breach.breach_since}"
    if open_breach.early_vintages < open_breach.needed:
        return _early(open_breach)
    return open_breach.shortfall
