"""Deployed entry points (JSON parameters, settings built on the worker) and the retraining automation.

prefect.yaml points every deployment at a flow here: each builds Settings from the worker's environment
(ORCHARD_*), then runs the same flow the embedded profile runs. The monitor deployment applies the retraining
policy (monitoring/policy.py) to the recorded history, as the embedded lifecycle does: it fits a model's first
champion itself, and emits the event `orchard.monitor.breach` when a breach past the cooldown asks for a
retrain; the automation (declared in prefect.yaml as the train deployment's trigger, or created by
`ensure_retraining_automation`) runs the train deployment for the model and month named in the event.

Each entry point imports its flow inside its body, on purpose: a worker loading one deployment imports that
flow's stack only.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, cast

from prefect import flow
from prefect.automations import Automation
from prefect.events import emit_event
from prefect.events.actions import RunDeployment
from prefect.events.schemas.automations import EventTrigger, Posture

from orchard.months import add_months
from orchard.settings import Settings

BREACH_EVENT = "orchard.monitor.breach"
RETRAIN_AUTOMATION = "orchard-retrain-on-breach"
TRAIN_DEPLOYMENT = "train-deployed/train-application_pd"


def _settings() -> Settings:
    from orchard.runtime import load_settings, prepare

    return prepare(load_settings())


def _month(month: str | None) -> str:
    """The month a scheduled run works on: the given one, else the last complete calendar month."""
    return month or add_months(datetime.now(UTC).strftime("%Y-%m"), -1)


def breach_event_payload(
    model: str, month: str, version: int, reasons: list[str], metrics: dict[str, float] | None = None
) -> dict[str, Any]:
    """Return the payload of a breach event (what the retraining deployment receives)."""
    return {"model": model, "month": month, "version": version, "reasons": reasons, "metrics": metrics or {}}


def breach_metrics(outcome: Any) -> dict[str, float]:
    """Return the figures a breach event carries: score PSI, drift share and the largest feature CSIs."""
    top = dict(sorted(outcome.feature_psi.items(), key=lambda kv: -kv[1])[:5])
    return {
        "score_psi": outcome.score_psi,
        "drift_share": outcome.drift_share,
        **{f"csi_{k}": v for k, v in top.items()},
    }


def emit_breach(
    model: str, month: str, version: int, reasons: list[str], metrics: dict[str, float] | None = None
) -> None:
    """Emit `orchard.monitor.breach` for a model (the resource the automation matches on)."""
    emit_event(
        BREACH_EVENT,
        resource={"prefect.resource.id": f"orchard.model.{model}", "prefect.resource.name": model},
        payload=breach_event_payload(model, month, version, reasons, metrics),
    )


def retraining_automation(deployment_id: Any) -> Automation:
    """Return the automation: on each `orchard.monitor.breach`, run the train deployment for that model/month."""
    return Automation(
        name=RETRAIN_AUTOMATION,
        description="A drift-policy breach retrains the model named in the event (then the gated promotion).",
        trigger=EventTrigger(
            expect={BREACH_EVENT},
            match={"prefect.resource.id": "orchard.model.*"},
            posture=Posture.Reactive,
            threshold=1,
        ),
        actions=[
            RunDeployment(
                source="selected",
                deployment_id=deployment_id,
                parameters={"model": "{{ event.payload.model }}", "month": "{{ event.payload.month }}"},
            )
        ],
    )


def ensure_retraining_automation(deployment_name: str = TRAIN_DEPLOYMENT) -> Automation:
    """Create the retraining automation on the current Prefect API (replacing one of the same name)."""
    from prefect.client.orchestration import get_client

    with get_client(sync_client=True) as client:
        deployment = client.read_deployment_by_name(deployment_name)
        for existing in client.read_automations_by_name(RETRAIN_AUTOMATION):
            client.delete_automation(existing.id)
    # Prefect types create() as "Automation or its coroutine": outside an async flow or task it runs the sync one
    return cast(Automation, retraining_automation(deployment.id).create())


@flow(name="ingest-deployed", flow_run_name="ingest {month}")
def ingest_deployed(month: str | None = None) -> int:
    """Ingest one month of every source (scheduled: the last complete month)."""
    from flows.ingest import ingest_flow

    return len(ingest_flow(_settings(), _month(month)))


@flow(name="validate-deployed", flow_run_name="validate {month}")
def validate_deployed(month: str | None = None) -> int:
    """Validate one month's bronze batches against their contracts."""
    from flows.validate import validate_flow

    return len(validate_flow(_settings(), _month(month)))


@flow(name="features-deployed", flow_run_name="features {month}")
def features_deployed(month: str | None = None) -> dict[str, float]:
    """Build the offline features and materialize the month online."""
    from flows.features import features_flow

    return features_flow(_settings(), _month(month))


@flow(name="train-deployed", flow_run_name="train {model} @ {month}")
def train_deployed(model: str, month: str | None = None) -> dict[str, Any]:
    """Retrain one model and gate its promotion."""
    from dataclasses import asdict

    from flows.train import train_flow

    return asdict(train_flow(_settings(), model, _month(month)))


@flow(name="score-deployed", flow_run_name="score {model} @ {month}")
def score_deployed(model: str, month: str | None = None) -> int:
    """Batch-score a month's applications with the model's champion; return the rows scored."""
    from flows.score import score_flow

    return score_flow(_settings(), model, _month(month)).rows


@flow(name="monitor-deployed", flow_run_name="monitor {model} @ {month}")
def monitor_deployed(model: str, month: str | None = None) -> dict[str, Any]:
    """The retraining policy's month of a model, decided from the recorded history (as the lifecycle does).

    With a champion: monitor it; a breach past the cooldown emits `orchard.monitor.breach` (the train deployment's
    trigger). Without one: once enough labels have matured, fit the first champion here, through the same gates
    and approval as the lifecycle.
    """
    from dataclasses import asdict

    from flows.monitor import monitor_flow
    from flows.train import train_flow

    settings, month = _settings(), _month(month)
    step = monitor_flow(settings, model, month)
    outcome, decision = step.outcome, step.decision
    result: dict[str, Any] = {
        **(asdict(outcome) if outcome is not None else {"model": model, "month": month}),
        "action": decision.action,
        "breach": decision.breach,
        "retrain": decision.retrain,
        "approval": decision.approval,
        "reasons": list(decision.reasons),
    }
    if outcome is not None and decision.retrain:
        emit_breach(model, month, outcome.version, list(decision.reasons), breach_metrics(outcome))
    if decision.action == "first_fit":
        result["promotion"] = asdict(train_flow(settings, model, month, decision.approval))
    return result


@flow(name="federated-deployed", flow_run_name="federated {job_id}")
def federated_deployed(job_id: str, epochs: int = 5) -> dict[str, Any]:
    """Run the vertical federated training job between the two parties."""
    from flows.federated import federated_training

    return federated_training(_settings(), job_id, epochs)
