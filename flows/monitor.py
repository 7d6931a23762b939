"""Monitor flow: score the month with the champion, PSI/CSI on frozen bins, Evidently, the drift policy."""

from __future__ import annotations

from prefect import flow, task
from prefect.cache_policies import NONE

from orchard.lifecycle.monitoring import MonitorOutcome, monitor_month, publish_dashboard
from orchard.model_specs import MODEL_SPECS
from orchard.settings import Settings


@task(name="monitor-model", task_run_name="monitor {model} @ {month}", cache_policy=NONE)
def monitor_model(
    settings: Settings, model: str, month: str, last_retrain: str | None
) -> MonitorOutcome | None:
    """Monitor one model's champion on one month (None while the model has no champion)."""
    return monitor_month(settings, MODEL_SPECS[model], month, last_retrain)


@task(name="dashboard", task_run_name="dashboard {model} @ {month}", cache_policy=NONE)
def publish_month_dashboard(settings: Settings, model: str, month: str, outcome: MonitorOutcome) -> str:
    """Add the month's monitoring snapshot (with the month's alias events) to the risk managers' dashboard."""
    return publish_dashboard(settings, MODEL_SPECS[model], month, outcome)


@flow(name="monitor", flow_run_name="monitor {model} @ {month}", validate_parameters=False)
def monitor_flow(
    settings: Settings, model: str, month: str, last_retrain: str | None = None
) -> MonitorOutcome | None:
    """Monitor one model for one month."""
    return monitor_model(settings, model, month, last_retrain)
