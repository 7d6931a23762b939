"""Train flow: fit, evaluate out of time and register a model, then the gated promotion decision."""

from __future__ import annotations

from prefect import flow, task
from prefect.cache_policies import NONE

from monitoring.policy import Approval
from orchard.lifecycle.promotion import PromotionOutcome, decide_promotion
from orchard.lifecycle.tools import Tools
from orchard.lifecycle.training import TrainOutcome, train_and_register
from orchard.model_specs import model_spec
from orchard.settings import Settings


@task(name="train-model", task_run_name="train {model} @ {month}", cache_policy=NONE)
def train_model(settings: Settings, model: str, month: str, tools: Tools | None = None) -> TrainOutcome:
    """Train and register one model on the labels mature at `month` (idempotent per model and month)."""
    return train_and_register(settings, model_spec(settings.portfolio_def, model), month, tools)


@task(
    name="promotion-decision", task_run_name="promotion {trained.model} v{trained.version}", cache_policy=NONE
)
def promotion_decision(
    settings: Settings,
    trained: TrainOutcome,
    month: str,
    approval: Approval | None = None,
    tools: Tools | None = None,
) -> PromotionOutcome:
    """Gate the new version against the champion and move the aliases (with an approval record)."""
    spec = model_spec(settings.portfolio_def, trained.model)
    return decide_promotion(settings, spec, trained, month, approval, tools)


@flow(name="train", flow_run_name="train {model} @ {month}", validate_parameters=False)
def train_flow(
    settings: Settings, model: str, month: str, approval: Approval | None = None
) -> PromotionOutcome:
    """Train a model (first fit or retrain) and send the result through the promotion gate and approval."""
    with Tools() as tools:
        trained = train_model(settings, model, month, tools)
        return promotion_decision(settings, trained, month, approval, tools)
