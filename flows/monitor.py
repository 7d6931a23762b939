"""Monitor flow: the retraining policy's month of a model (PSI/CSI of its champion on frozen bins, Evidently, the
decision: first fit, retrain or hold), and what a model's kind adds to the month (tiers, expected loss)."""

from __future__ import annotations

from prefect import flow, task
from prefect.cache_policies import NONE

from orchard.lifecycle.retraining import MonthPolicy, policy_month
from orchard.lifecycle.stages import month_expected_loss, month_tiers
from orchard.lifecycle.tools import Tools
from orchard.model_specs import model_spec
from orchard.settings import Settings


@task(name="monitor-model", task_run_name="monitor {model} @ {month}", cache_policy=NONE)
def monitor_model(
    settings: Settings, model: str, month: str, always_report: bool = True, tools: Tools | None = None
) -> MonthPolicy:
    """Monitor the champion in force when the month began (if any) and decide from the recorded history."""
    spec = model_spec(settings.portfolio_def, model)
    return policy_month(settings, spec, month, always_report=always_report, tools=tools)


@task(name="campaign-tiers", task_run_name="tiers {model} @ {month}", cache_policy=NONE)
def campaign_tiers(
    settings: Settings, model: str, month: str, tools: Tools | None = None
) -> dict[str, int] | None:
    """Stratify the month's cases into tiers A-D (response x risk) with a tiers model's champion."""
    return month_tiers(settings, model_spec(settings.portfolio_def, model), month, tools)


@task(name="vintage-expected-loss", task_run_name="expected loss {model} @ {month}", cache_policy=NONE)
def vintage_expected_loss(
    settings: Settings, model: str, month: str, tools: Tools | None = None
) -> dict[str, float] | None:
    """Forecast the expected loss of the month's booked vintage with an expected-loss model's champion."""
    return month_expected_loss(settings, model_spec(settings.portfolio_def, model), month, tools)


@flow(name="monitor", flow_run_name="monitor {model} @ {month}", validate_parameters=False)
def monitor_flow(settings: Settings, model: str, month: str) -> MonthPolicy:
    """Monitor one model for one month and decide what the retraining policy does."""
    with Tools() as tools:
        return monitor_model(settings, model, month, tools=tools)
