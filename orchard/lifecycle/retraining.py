"""One model's month under the retraining policy, the same in both profiles: read the recorded history, monitor
the champion in force when the month began, and let the pure policy (monitoring/policy.py) decide.

The history is what both profiles record and a deployed flow can see: the registry's versions (each trained at
the month of its train key) and the governance store's alias events and approvals. Only what was recorded before
the month counts, so a month redone after an interruption decides exactly as its first attempt did.
"""

from __future__ import annotations

from dataclasses import dataclass

from model_registry.history import (
    CHAMPION_ALIAS,
    AliasEvent,
    approvals_of,
    event_in_force_by_month,
    events,
)
from model_registry.registry import trained_months
from monitoring.policy import ModelHistory, PolicyDecision, approval_mode, decide
from orchard.lake import silver_months
from orchard.lifecycle.monitoring import MonitorOutcome, monitor_month
from orchard.lifecycle.tools import Tools
from orchard.lifecycle.training import ready_to_train
from orchard.model_specs import ModelSpec, model_specs
from orchard.months import add_months
from orchard.settings import Settings


@dataclass(frozen=True)
class MonthPolicy:
    """The champion's monitoring of the month (None without a champion) and the policy's decision."""

    outcome: MonitorOutcome | None
    decision: PolicyDecision


def recorded_history(settings: Settings, model: str, month: str) -> ModelHistory:
    """Return what the registry and the governance store recorded about a model before a month."""
    recorded = events(settings, model)
    champion = _champion_in_force(recorded, month)
    trained = {version: at for version, at in trained_months(settings, model).items() if at < month}
    waiting: list[int] = []
    # only a person's approval is ever awaited (the policy decides as it trains): skip the read otherwise
    if approval_mode(settings.governance) == "person":
        decided = {a.version for a in approvals_of(settings, model)} | {
            e.version for e in recorded if e.action != "set_challenger"
        }
        waiting = [v for v in trained if v not in decided and (champion is None or v > champion)]
    return ModelHistory(
        champion=champion,
        last_trained=max(trained.values(), default=None),
        awaiting_approval=max(waiting, default=None),
    )


def _champion_in_force(recorded: list[AliasEvent], month: str) -> int | None:
    """Return the champion version in force when the month began (None: none yet), from the alias events."""
    in_force = event_in_force_by_month(
        [e for e in recorded if e.alias == CHAMPION_ALIAS], add_months(month, -1)
    )
    return in_force.version if in_force else None


def monitored_models(settings: Settings, month: str) -> list[ModelSpec]:
    """Return the models whose champion is monitored on a month: each with a champion in force when the month
    began and a validated batch of its source in the month (what policy_month scores)."""
    return [
        spec
        for spec in model_specs(settings.portfolio_def).values()
        if month in silver_months(settings, spec.source)
        and _champion_in_force(events(settings, spec.name, CHAMPION_ALIAS), month) is not None
    ]


def policy_month(
    settings: Settings, spec: ModelSpec, month: str, *, always_report: bool = True, tools: Tools | None = None
) -> MonthPolicy:
    """Monitor a model's champion on a month (if it has one) and decide: first fit, retrain or hold."""
    history = recorded_history(settings, spec.name, month)
    if history.champion is not None:
        outcome, decision = monitor_month(
            settings, spec, month, history, always_report=always_report, tools=tools
        )
        return MonthPolicy(outcome, decision)
    waiting = history.awaiting_approval is not None and approval_mode(settings.governance) == "person"
    ready = not waiting and ready_to_train(settings, spec, month)
    decision = decide(
        month, history, spec.policy.monitoring, approval_mode(settings.governance), labels_ready=ready
    )
    return MonthPolicy(None, decision)
