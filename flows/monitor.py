"""Monitor flow: score the month with the champion, PSI/CSI on frozen bins, Evidently, the drift policy."""

from __future__ import annotations

from prefect import flow, task
from prefect.cache_policies import NONE

from orchard.lifecycle.monitoring import MonitorOutcome, monitor_month, publish_dashboard
from orchard.lifecycle.stages import month_expected_loss, month_tiers
from orchard.model_specs import model_spec
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
    spec = model_spec(settings.portfolio_def, model)
    return monitor_month(settings, spec, month, last_retrain, always_report=always_report, version=version)


@task(name="dashboard", task_run_name="dashboard {model} @ {month}", cache_policy=NONE)
def publish_month_dashboard(settings: Settings, model: str, month: str, outcome: MonitorOutcome) -> str:
    """Add the month's monitoring snapshot (with the month's alias events) to the risk managers' dashboard."""
    return publish_dashboard(settings, model_spec(settings.portfolio_def, model), month, outcome)


@task(name="campaign-tiers", task_run_name="tiers {model} @ {month}", cache_policy=NONE)
def campaign_tiers(settings: Settings, model: str, month: str) -> dict[str, int] | None:
    """Stratify the month's cases into tiers A-D (response x risk) with a tiers model's champion."""
    return month_tiers(settings, model_spec(settings.portfolio_def, model), month)


@task(name="vintage-expected-loss", task_run_name="expected loss {model} @ {month}", cache_policy=NONE)
def vintage_expected_loss(settings: Settings, model: str, month: str) -> dict[str, float] | None:
    """Forecast the expected loss of the month's booked vintage with an expected-loss model's champion."""
    return month_expected_loss(settings, model_spec(settings.portfolio_def, model), month)


@flow(name="monitor", flow_run_name="monitor {model} @ {month}", validate_parameters=False)
def monitor_flow(
    settings: Settings, model: str, month: str, last_retrain: str | None = None
) -> MonitorOutcome | None:
    """Monitor one model for one month."""
    return monitor_model(settings, model, month, last_retrain)
