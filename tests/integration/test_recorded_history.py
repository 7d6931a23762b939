"""The history the retraining policy reads (orchard/lifecycle/retraining.py), on a real MLflow store and
governance db in tmp_path: the champion in force when the month began, the last training before it, and a
version awaiting a person's approval."""

from __future__ import annotations

from pathlib import Path

from model_registry import registry
from monitoring.policy import ModelHistory
from orchard.lifecycle.retraining import recorded_history
from tests.conftest import make_settings
from tests.integration.test_registry import NAME, register


def test_the_recorded_history_before_a_month(tmp_path: Path) -> None:
    person = make_settings(tmp_path / "orchard", auto_approve=False)
    # Given nothing recorded / Then an empty history
    assert recorded_history(person, NAME, "2020-02") == ModelHistory()
    # Given v1 trained at 2020-01 and not decided yet (and a federated version, which has no training month)
    v1 = register(person, NAME, seed=1, train_key=f"{NAME}@2020-01").version
    register(person, NAME, seed=3, train_key="federated-job-1")
    # Then the month after sees its training and that it awaits a person; the month itself (redone) sees nothing
    assert recorded_history(person, NAME, "2020-02") == ModelHistory(None, "2020-01", v1)
    assert recorded_history(person, NAME, "2020-01") == ModelHistory()
    # Given a person promotes v1 in 2020-02
    registry.set_alias(
        person,
        NAME,
        "champion",
        v1,
        action="promote",
        reason="approved",
        approver="analyst",
        gate={"passed": True},
        effective_month="2020-02",
    )
    # Then 2020-02 began without a champion (nothing awaits any more) and 2020-03 began with v1
    assert recorded_history(person, NAME, "2020-02") == ModelHistory(None, "2020-01", None)
    assert recorded_history(person, NAME, "2020-03") == ModelHistory(v1, "2020-01", None)
    # Given v2 retrained at 2020-04, set as challenger, awaiting a person
    v2 = register(person, NAME, seed=2, train_key=f"{NAME}@2020-04").version
    registry.set_alias(
        person,
        NAME,
        "challenger",
        v2,
        action="set_challenger",
        reason="retrained",
        approver="orchard-policy",
        gate=None,
        effective_month="2020-04",
    )
    assert recorded_history(person, NAME, "2020-05") == ModelHistory(v1, "2020-04", v2)
    # And when the policy approves (auto_approve), nothing is ever awaited
    policy = make_settings(tmp_path / "orchard")
    assert recorded_history(policy, NAME, "2020-05") == ModelHistory(v1, "2020-04", None)
