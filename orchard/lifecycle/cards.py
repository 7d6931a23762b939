"""The model card of a lifecycle version, (re)logged whenever its approval status changes.

Built from what the version's run holds (evaluation.json, feature_iv.json, the scorecard baseline's bins and
points, lineage.json, gate_result.json) and the model spec (purpose, population, label and maturity), so a
card can be rendered again after a restart without refitting anything.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from mlflow import MlflowClient
from mlflow.exceptions import MlflowException

from model_registry.model_card import POINTS_COLUMNS, ModelCard, build_model_card, log_model_card
from model_registry.registry import get_version, load_model
from model_registry.tracking import mlflow_client, read_run_json
from orchard.credit.scorecard import Scorecard
from orchard.errors import OrchardError
from orchard.lifecycle.tools import Tools
from orchard.model_specs import ModelSpec
from orchard.settings import Settings

SAMPLES = {
    "train": "train",
    "test": "test (random 20% of development)",
    "oot": "out-of-time",
    "recent_early": "since the breach, early label (recalibrated on)",
    "holdout_early": "held out since the breach, early label",
}


def _maturity(spec: ModelSpec) -> str:
    rule = spec.label_rule
    if rule is not None and rule.performance is not None:
        event = rule.performance
        return f"{event.within_months} months after the case (outcomes in {event.source} observable by then)"
    if rule is not None and rule.outcome_date is not None:
        return f"{rule.outcome_date.within_months} months after the case (its {rule.outcome_date.column})"
    if rule is not None and rule.observed is not None:
        return (
            f"as extracted: {rule.observed.column} at the data's extraction date, however long each case had "
            "been observed by then"
        )
    window = rule.within_months if rule is not None else None
    windows = {
        "dpd90": f"{window} months after the case (statements observable by then)",
        "first_payment_default": "1 month after booking (the first statement)",
        "charge_off": f"{window} months after booking",
        "response_approved": "the end of the offer month (the campaign's response window)",
        "cure": f"{window} statements after the collection action",
    }
    return windows[spec.label_kind]


def _limitations(spec: ModelSpec, kind: str, simulated: bool, params: dict[str, Any]) -> list[str]:
    notes = []
    recalibration = params.get("recalibration")
    if isinstance(recalibration, dict) and "from_version" in recalibration:
        notes.append(
            f"A recalibration of v{recalibration['from_version']} for the breach since {recalibration['since']}: "
            "its ranking and reason codes, its log-odds re-mapped on the early label of the vintages since. It "
            "assumes the early-to-label relation measured before the breach holds after it; it is refitted once "
            "the label itself matures for those vintages."
        )
    if simulated:
        notes.append(
            "Trained on simulated data (orchard.simulate): figures show the method, not a real portfolio."
        )
    if spec.trainable:
        notes.append(
            f"Learnt only from cases where {spec.trainable}; the others have no outcome (no reject inference)."
        )
    if kind != "scorecard":
        notes.append(
            "The points table is the scorecard baseline's, fitted on the same development rows; the registered "
            f"model is {kind} (its reason codes come from per-feature contributions)."
        )
    if spec.kind == "tiers":
        notes.append("The simulator models no uplift from an offer: 'response' means the prospect applied.")
    if spec.kind == "expected_loss":
        notes.append("LGD and EAD are development-window averages; they do not move with the macro cycle.")
    return notes


def lifecycle_card(
    settings: Settings,
    spec: ModelSpec,
    version: int,
    approval_status: str,
    approver: str | None,
    tools: Tools | None = None,
) -> dict[str, str]:
    """Render the card of a registered lifecycle version with its approval status; log it (md + html)."""
    client = mlflow_client(settings)
    run_id = get_version(client, spec.name, version).run_id
    if not run_id:
        raise OrchardError(f"model {spec.name!r} version {version} was registered without an MLflow run")
    evaluations: dict[str, Any] = read_run_json(client, run_id, "evaluation.json")
    lineage: dict[str, Any] = read_run_json(client, run_id, "lineage.json")
    baseline = Scorecard.from_dict(read_run_json(client, run_id, "scorecard_baseline.json"))
    model = load_model(settings, spec.name, version, tools.models if tools else None)
    metrics = client.get_run(run_id).data.metrics
    stability = {"score: development vs out-of-time": metrics.get("score_psi_dev_oot", float("nan"))}
    decision_psi = _gate_score_psi(client, run_id)
    if decision_psi is not None:
        stability["score: development vs decision month"] = decision_psi
    card = build_model_card(
        name=spec.name,
        version=version,
        model=model,
        purpose=spec.purpose,
        population=spec.population,
        label=spec.label,
        maturity=_maturity(spec),
        data_window=f"development {lineage.get('train_window')}, out-of-time {lineage['extra'].get('oot_window')}",
        lineage={k: v for k, v in lineage.items() if k != "extra"} | {"as_of": lineage["extra"].get("as_of")},
        performance={SAMPLES[k]: evaluations[k] for k in SAMPLES if k in evaluations},
        feature_iv=baseline.selection.get("candidate_iv", {}),
        stability=stability,
        limitations=_limitations(
            spec, str(model.kind), settings.portfolio_def.simulated, getattr(model, "params", None) or {}
        ),
        approval_status=approval_status,
        approver=approver,
    )
    if card.points_table is None:
        card = _with_baseline_points(card, baseline)
    return log_model_card(settings, spec.name, version, card)


def _gate_score_psi(client: MlflowClient, run_id: str) -> float | None:
    """Return the score PSI the stability gate measured (None before the version was gated)."""
    try:
        gate = read_run_json(client, run_id, "gate_result.json")
    except (OSError, MlflowException):
        return None
    for check in gate.get("checks", []):
        value = check.get("figures", {}).get("score_psi")
        if check.get("name") == "stability" and value is not None:
            return float(value)
    return None


def _with_baseline_points(card: ModelCard, baseline: Scorecard) -> ModelCard:
    return replace(
        card, points_table=baseline.points_table().loc[:, list(POINTS_COLUMNS)], bands=baseline.bands_table()
    )
