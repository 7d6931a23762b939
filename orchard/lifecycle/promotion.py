"""The promotion decision: first model becomes champion; a challenger must pass the gate on the same window."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

from model_registry.gates import log_gate_result, promotion_gate
from model_registry.registry import champion_version, load_model, record_rejection, set_alias
from orchard.credit.metrics import evaluate
from orchard.lifecycle.datasets import application_frame, labelled
from orchard.lifecycle.training import TrainOutcome
from orchard.model_specs import ModelSpec
from orchard.months import month_range
from orchard.settings import Settings


@dataclass(frozen=True)
class PromotionOutcome:
    """What happened to a freshly trained version, and why."""

    model: str
    version: int
    action: str  # 'promote' | 'reject' | 'unchanged'
    reason: str
    champion_before: int | None
    gate: dict = field(default_factory=dict)


def _window_vintages(window: str) -> list[str]:
    start, _, end = window.partition("..")
    return month_range(start, end)


def decide_promotion(
    settings: Settings, spec: ModelSpec, trained: TrainOutcome, month: str
) -> PromotionOutcome:
    """Gate a new version against the champion on its out-of-time window and move aliases accordingly."""
    champion = champion_version(settings, spec.name)
    approver = settings.policy_approver
    if champion == trained.version:
        return PromotionOutcome(spec.name, trained.version, "unchanged", "already champion", champion)
    if champion is None:
        reason = f"first model of {spec.name}: no champion yet (oot auc {trained.metrics['oot_auc']:.3f})"
        set_alias(
            settings,
            spec.name,
            "champion",
            trained.version,
            action="promote",
            reason=reason,
            approver=approver,
            gate=None,
            effective_month=month,
        )
        return PromotionOutcome(spec.name, trained.version, "promote", reason, None)

    set_alias(
        settings,
        spec.name,
        "challenger",
        trained.version,
        action="set_challenger",
        reason=f"retrained at {month}",
        approver=approver,
        gate=None,
        effective_month=month,
    )
    vintages = _window_vintages(trained.oot_window)
    frame = application_frame(settings, spec, vintages, month).frame
    window = labelled(frame, vintages)
    champion_model = load_model(settings, spec.name, champion)
    challenger_model = load_model(settings, spec.name, trained.version)
    y = window["bad"].to_numpy()
    champion_eval = evaluate(y, champion_model.predict_pd(window)).to_dict()
    challenger_eval = evaluate(y, challenger_model.predict_pd(window)).to_dict()
    gate = promotion_gate(
        champion_eval, challenger_eval, settings.promotion_margin_auc, window=trained.oot_window
    )
    log_gate_result(settings, spec.name, trained.version, gate, trained.oot_window)
    gate_dict = asdict(gate)
    reason = "; ".join(gate.reasons)
    if gate.passed and settings.auto_approve:
        set_alias(
            settings,
            spec.name,
            "champion",
            trained.version,
            action="promote",
            reason=f"gate passed, approved by policy: {reason}",
            approver=approver,
            gate=gate_dict,
            effective_month=month,
        )
        return PromotionOutcome(spec.name, trained.version, "promote", reason, champion, gate_dict)
    why = reason if not gate.passed else f"gate passed but awaits a person's approval: {reason}"
    record_rejection(
        settings,
        spec.name,
        trained.version,
        reason=why,
        approver=approver,
        gate=gate_dict,
        effective_month=month,
    )
    return PromotionOutcome(spec.name, trained.version, "reject", why, champion, gate_dict)
