"""Monitor flow: score the month with the champion, PSI/CSI on frozen bins, Evidently, the drift policy."""

from __future__ import annotations

from prefect import flow, task
from prefect.cache_policies import NONE

from orchard.lifecycle.monitoring import MonitorOutcome, monitor_month, publish_dashboard
from orchard.lifecycle.stages import month_expected_loss, month_tiers
from orchard.model_specs import MODEL_SPECS
from orchard.settings import Settings


@task(name="monitor-model", task_run_name="monitor {model} @ {month}", cache_policy=NONE)
def monitor_model(
    settings: Settings,
    model: str,
    month: str,
    last_retrain: str | None,
    always_report: bool = True,
    version: int | None = None,
) -> MonitorOutcome | None:
    """Monitor one model's champion (or the given version) on one month (None while there is no champion)."""
    spec = MODEL_SPECS[model]
    return monitor_month(settings, spec, month, last_retrain, always_report=always_report, version=version)


@task(name="dashboard", task_run_name="dashboard {model} @ {month}", cache_policy=NONE)
def publish_month_dashboard(settings: Settings, model: str, month: str, outcome: MonitorOutcome) -> str:
    """Add the month's monitoring snapshot (with the month's alias events) to the risk managers' dashboard."""
    return publish_dashboard(settings, MODEL_SPECS[model], month, outcome)


@task(name="campaign-tiers", task_run_name="campaign tiers @ {month}", cache_policy=NONE)
def campaign_tiers(settings: Settings, month: str) -> dict[str, int] | None:
    """Stratify the month's campaign offers into tiers A-D with the precredit_response champion."""
    return month_tiers(settings, month)


@task(name="vintage-expected-loss", task_run_name="expected loss @ {month}", cache_policy=NONE)
def vintage_expected_loss(settings: Settings, month: str) -> dict[str, float] | None:
    """Forecast the expected loss of the month's booked vintage with the loss_forecast champion."""
    return month_expected_loss(settings, month)


@flow(name="monitor", flow_run_name="monitor {model} @ {month}", validate_parameters=False)
def monitor_flow(
    settings: Settings, model: str, month: str, last_retrain: str | None = None
) -> MonitorOutcome | None:
    """Monitor one model for one month."""
    return monitor_model(settings, model, month, last_retrain)
