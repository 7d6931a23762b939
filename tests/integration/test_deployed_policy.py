"""The deployed flows (flows/automations.py) decide retraining from the recorded history, as the lifecycle does.

Each test fills a small simulated lake (the demo's landing files copied to silver, Feast applied: the contracts
are tested elsewhere), points the deployed flows' environment (ORCHARD_*) at it, and runs them on a real
temporary Prefect server with the real MLflow store under tmp_path. application_pd first has enough mature
vintages at 2019-07 with these settings.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from model_registry.history import approvals_of
from model_registry.registry import champion_version, trained_months
from orchard.feature_store import apply_definitions, update_offline_tables
from orchard.settings import Settings, tool_environment
from orchard.testing.demo import SHORT_LABELS, demo_variant, simulated_silver

pytestmark = pytest.mark.slow

MODEL = "application_pd"
FIRST_FIT = "2019-07"
# every score moves a little from one month to the next: with this limit each monitored month breaches
ALWAYS_BREACH = 1e-9
SMALL = {"n_users": 3000, "start_month": "2019-01", "end_month": "2019-08", "corrupt_batches": []}
SMALL_POLICY = {
    "min_mature_vintages": 3,
    "oot_months": 1,
    "gates": {"calibration_tolerance": 0.3},
    "monitoring": {"score_psi_breach": ALWAYS_BREACH, "retrain_cooldown_months": 3},
}


def deployed_lake(home: Path, monkeypatch: pytest.MonkeyPatch) -> Settings:
    """Fill a small lake under home and point the deployed flows' environment at it (restored after the test)."""
    portfolio = demo_variant(home.parent / "portfolio", policy=SMALL_POLICY, labels=SHORT_LABELS)
    settings = Settings(_env_file=None, home=home, portfolio=portfolio, **SMALL)  # type: ignore[arg-type]
    simulated_silver(settings)
    update_offline_tables(settings)
    apply_definitions(settings)
    for name, value in {"home": home, "portfolio": portfolio, **SMALL}.items():
        text = str(value).replace("'", '"') if isinstance(value, list) else str(value)
        monkeypatch.setenv(f"ORCHARD_{name.upper()}", text)
    # the deployed flows point the tools at the settings' home themselves; recorded here to be restored
    for key, value in tool_environment(settings).items():
        monkeypatch.setenv(key, value)
    return settings


@pytest.fixture
def breaches(monkeypatch: pytest.MonkeyPatch) -> list[dict[str, Any]]:
    """The breach events the deployed flows emit (what the retraining automation would act on)."""
    import flows.automations

    emitted: list[dict[str, Any]] = []
    monkeypatch.setattr(
        flows.automations,
        "emit_breach",
        lambda model, month, *rest, **kw: emitted.append({"model": model, "month": month}),
    )
    return emitted


def test_deployed_monitor_holds_a_breach_inside_the_cooldown_of_the_recorded_retrain(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, prefect_harness: None, breaches: list[dict[str, Any]]
) -> None:
    from flows.automations import monitor_deployed, train_deployed

    # Given a champion trained by the deployed train flow at 2019-07 (cooldown: 3 months)
    settings = deployed_lake(tmp_path / "orchard", monkeypatch)
    trained = train_deployed(MODEL, FIRST_FIT)
    assert trained["action"] == "promote", trained
    # When the deployed monitor runs the next month, on a score that breaches
    result = monitor_deployed(MODEL, "2019-08")
    # Then the breach is seen, but the retrain is held: the recorded 2019-07 training is one month old
    assert result["breach"], result
    assert result["retrain"] is False, result["reasons"]
    assert any("retrain held: 1 month(s) since last retrain 2019-07" in r for r in result["reasons"]), result
    assert breaches == [], "a held breach must not start the retraining deployment"
    assert champion_version(settings, MODEL) == trained["version"]


def test_a_deployed_monitor_run_fits_the_first_champion_through_the_gates_and_approval(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, prefect_harness: None, breaches: list[dict[str, Any]]
) -> None:
    from flows.automations import monitor_deployed

    # Given a deployment with no champion: before enough labels have matured it holds and registers nothing
    settings = deployed_lake(tmp_path / "orchard", monkeypatch)
    early = monitor_deployed(MODEL, "2019-06")
    assert early["action"] == "hold" and "not enough mature" in early["reasons"][0], early
    assert champion_version(settings, MODEL) is None and trained_months(settings, MODEL) == {}
    # When the deployed monitor runs once they have
    result = monitor_deployed(MODEL, FIRST_FIT)
    # Then it fits the first version, gates it and the policy approves it: the champion, recorded at 2019-07
    assert result["action"] == "first_fit", result
    promotion = result["promotion"]
    assert promotion["action"] == "promote" and promotion["champion_before"] is None, promotion
    assert promotion["gate"]["passed"] is True, promotion["gate"]
    assert champion_version(settings, MODEL) == promotion["version"]
    assert trained_months(settings, MODEL) == {promotion["version"]: FIRST_FIT}
    [approval] = approvals_of(settings, MODEL)
    assert (approval.mode, approval.outcome, approval.effective_month) == ("policy", "approved", FIRST_FIT)
    assert breaches == [], "a first fit is no drift breach"
