"""The promotion decision: every new version is gated on its out-of-time window, then approved or refused."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np
import pandas as pd

from model_registry.gates import GateInputs, GatePolicy, challenger_gate, gate_dict, log_gate_result
from model_registry.governance import request_promotion
from model_registry.history import approvals_of
from model_registry.registry import champion_version, load_model, record_rejection, set_alias
from monitoring.policy import Approval, approval_mode
from orchard.credit.psi import ReferenceProfile, psi
from orchard.credit.recalibration import Recalibration
from orchard.lifecycle.cards import lifecycle_card
from orchard.lifecycle.datasets import labelled, model_frame
from orchard.lifecycle.recalibration import early_pd
from orchard.lifecycle.references import profile_path
from orchard.lifecycle.tools import Tools
from orchard.lifecycle.training import TrainOutcome
from orchard.model_specs import ModelSpec
from orchard.months import month_range
from orchard.portfolio.spec import FairnessDef, PolicyDef
from orchard.settings import Settings


@dataclass(frozen=True)
class PromotionOutcome:
    """What happened to a freshly trained version, and why."""

    model: str
    version: int
    action: str  # 'promote' | 'reject' | 'await_approval' | 'unchanged'
    reason: str
    champion_before: int | None
    gate: dict = field(default_factory=dict)


def gate_policy(policy: PolicyDef) -> GatePolicy:
    """Build the gate thresholds from a model's policy (the portfolio's, with the model's overrides)."""
    gates = policy.gates
    return GatePolicy(
        margin_auc=policy.promotion_margin_auc,
        max_auc_drop=gates.max_auc_drop,
        max_ks_drop=gates.max_ks_drop,
        max_score_psi=gates.max_score_psi,
        calibration_bands=gates.calibration_bands,
        calibration_tolerance=gates.calibration_tolerance,
        calibration_z=gates.calibration_z,
        fairness_enforced=gates.fairness_enforced,
        approval_rate=gates.fairness_approval_rate,
        max_approval_rate_gap=gates.max_approval_rate_gap,
        max_group_auc_gap=gates.max_group_auc_gap,
        min_group_size=gates.min_group_size,
    )


def protected_groups(fairness: FairnessDef | None, window: pd.DataFrame) -> tuple[np.ndarray | None, str]:
    """Return each row's group of the portfolio's protected attribute (banded if numeric) and its name."""
    if fairness is None or fairness.column not in window.columns:
        return None, "group"
    values = window[fairness.column]
    if fairness.bins is not None:
        labels = list(fairness.labels) if fairness.labels else None
        values = pd.cut(values.astype(float), bins=list(fairness.bins), labels=labels, right=False)
    return values.astype(str).replace("nan", "unknown").to_numpy(), fairness.name


def _window_vintages(window: str) -> list[str]:
    start, _, end = window.partition("..")
    return month_range(start, end)


class ScoringModel(Protocol):
    """What the score PSI needs of a model: score points (every kind of Orchard model gives them)."""

    def score(self, df: pd.DataFrame) -> np.ndarray: ...


def recent_score_psi(
    settings: Settings, spec: ModelSpec, trained: TrainOutcome, model: ScoringModel, month: str, tools: Tools
) -> float:
    """Return the score PSI of a version: its development sample (frozen bins) vs this month's applications."""
    profile = ReferenceProfile.from_dict(
        json.loads(profile_path(settings, spec.name, trained.train_key).read_text())
    )
    recent = model_frame(settings, spec, [month], month, with_labels=False, tools=tools).frame
    current = recent[spec.features].copy()
    current["score"] = model.score(recent)
    return float(psi(profile, current)["score"])


def evaluate_gate(
    settings: Settings, spec: ModelSpec, trained: TrainOutcome, champion: int | None, month: str, tools: Tools
) -> dict:
    """Run every gate on the version's out-of-time window, log the result on the version, return it.

    A recalibration is judged on its held-out vintage's early labels: both models' PDs are taken to the early
    label through the recalibration's own bridge, so the two are compared on one scale.
    """
    vintages = _window_vintages(trained.oot_window)
    recalibration = trained.method == "recalibration"
    labels = spec.with_early_label() if recalibration else spec
    window = labelled(model_frame(settings, labels, vintages, month, tools=tools).frame, vintages)
    challenger_model = load_model(settings, spec.name, trained.version, tools.models)
    as_labelled = _early_scale(challenger_model) if recalibration else (lambda p: p)
    champion_pd = None
    if champion is not None:
        champion_pd = as_labelled(load_model(settings, spec.name, champion, tools.models).predict_pd(window))
    groups, group_name = protected_groups(settings.portfolio_def.fairness, window)
    inputs = GateInputs(
        window=trained.oot_window + (" (early label)" if recalibration else ""),
        y=window["bad"].to_numpy(),
        challenger_pd=as_labelled(challenger_model.predict_pd(window)),
        champion_pd=champion_pd,
        champion_version=champion,
        challenger_version=trained.version,
        score_psi=recent_score_psi(settings, spec, trained, challenger_model, month, tools),
        groups=groups,
        group_name=group_name,
    )
    gate = challenger_gate(inputs, gate_policy(spec.policy), recalibration=recalibration)
    log_gate_result(settings, spec.name, trained.version, gate, trained.oot_window)
    return gate_dict(gate)


def _early_scale(model: Any) -> Callable[[np.ndarray], np.ndarray]:
    """Return the map from a target PD to the early-label PD it stands for (a recalibrated model's bridge)."""
    fitted = Recalibration.from_dict(model.params["recalibration"])
    return lambda target_pd: early_pd(fitted, target_pd)


CARD_STATUS = {
    "promote": "champion",
    "reject": "rejected",
    "await_approval": "pending",
    "unchanged": "champion",
}


def decide_promotion(
    settings: Settings,
    spec: ModelSpec,
    trained: TrainOutcome,
    month: str,
    approval: Approval | None = None,
    tools: Tools | None = None,
) -> PromotionOutcome:
    """Gate a new version, decide, and log its model card with the approval status the decision gave it.

    `approval` is who approves it, as the retraining policy said (default: the settings' policy).
    """
    tools = tools or Tools()
    outcome = _decide(settings, spec, trained, month, approval or approval_mode(settings.governance), tools)
    status = CARD_STATUS[outcome.action]
    if outcome.action == "unchanged" and champion_version(settings, spec.name) != trained.version:
        status = "challenger"
    lifecycle_card(settings, spec, trained.version, status, settings.governance.policy_approver, tools)
    return outcome


def recorded_decision(
    settings: Settings, spec: ModelSpec, trained: TrainOutcome, month: str
) -> PromotionOutcome | None:
    """Return the policy's decision already recorded for this version and month (a month being redone)."""
    for approval in approvals_of(settings, spec.name):
        if (approval.version, approval.mode, approval.effective_month) != (trained.version, "policy", month):
            continue
        gate = approval.gate or {}
        summary = "; ".join(gate.get("reasons", []))
        action = {"approved": "promote", "refused": "reject", "unchanged": "unchanged"}[approval.outcome]
        reason = summary if action == "promote" else approval.refusal or summary
        return PromotionOutcome(spec.name, trained.version, action, reason, approval.champion_before, gate)
    return None


def _decide(
    settings: Settings, spec: ModelSpec, trained: TrainOutcome, month: str, approval: Approval, tools: Tools
) -> PromotionOutcome:
    """Gate a new version against the champion; the policy approves or refuses it, with a record either way."""
    done = recorded_decision(settings, spec, trained, month)
    if done is not None:
        return done
    champion = champion_version(settings, spec.name)
    approver = settings.governance.policy_approver
    if champion == trained.version:
        return PromotionOutcome(spec.name, trained.version, "unchanged", "already champion", champion)
    if champion is not None:
        set_alias(
            settings,
            spec.name,
            "challenger",
            trained.version,
            action="set_challenger",
            reason=f"{'recalibrated' if trained.method == 'recalibration' else 'retrained'} at {month} after a drift breach",
            approver=approver,
            gate=None,
            effective_month=month,
        )
    gate = evaluate_gate(settings, spec, trained, champion, month, tools)
    summary = "; ".join(gate["reasons"])
    if approval == "person":
        return PromotionOutcome(
            spec.name,
            trained.version,
            "await_approval",
            f"gate recorded, awaiting a person's approval: {summary}",
            champion,
            gate,
        )
    record = request_promotion(
        settings,
        spec.name,
        trained.version,
        approver=approver,
        mode="policy",
        gate=gate,
        effective_month=month,
        reason=f"policy approval at {month}: {summary}",
    )
    if record.outcome == "approved":
        return PromotionOutcome(spec.name, trained.version, "promote", summary, champion, gate)
    if record.outcome == "unchanged":
        return PromotionOutcome(
            spec.name, trained.version, "unchanged", record.refusal or summary, champion, gate
        )
    why = record.refusal or summary
    record_rejection(
        settings, spec.name, trained.version, reason=why, approver=approver, gate=gate, effective_month=month
    )
    return PromotionOutcome(spec.name, trained.version, "reject", why, champion, gate)
