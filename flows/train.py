"""Train flow: fit, evaluate out of time and register a model, then the gated promotion decision."""

from __future__ import annotations

from prefect import flow, task
from prefect.cache_policies import NONE

from model_registry.registry import champion_version
from monitoring.policy import Action, Approval
from orchard.errors import OrchardError
from orchard.lifecycle.promotion import PromotionOutcome, decide_promotion
from orchard.lifecycle.recalibration import recalibrate_and_register
from orchard.lifecycle.tools import Tools
from orchard.lifecycle.training import TrainOutcome, train_and_register
from orchard.model_specs import model_spec
from orchard.settings import Settings


@task(name="train-model", task_run_name="{action} {model} @ {month}", cache_policy=NONE)
def train_model(
    settings: Settings, model: str, month: str, tools: Tools | None = None, action: Action = "retrain"
) -> TrainOutcome:
    """Make one model's version of the month (idempotent per model and month): trained on the labels mature at
    `month`, or, when the policy says `recalibrate`, the champion re-mapped to the vintages since its breach."""
    spec = model_spec(settings.portfolio_def, model)
    if action == "recalibrate":
        champion = champion_version(settings, model)
        if champion is None:
            raise OrchardError(f"{model} has no champion to recalibrate at {month}")
        return recalibrate_and_register(settings, spec, champion, month, tools)
    return train_and_register(settings, spec, month, tools)


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
    settings: Settings, model: str, month: str, approval: Approval | None = None, action: Action = "retrain"
) -> PromotionOutcome:
    """Train a model (first fit, retrain or recalibration) and send the result through the gate and approval."""
    with Tools() as tools:
        trained = train_model(settings, model, month, tools, action)
        return promotion_decision(settings, trained, month, approval, tools)
