"""The joint (vertical federated) model in the session's small lifecycle: first fit through the gate, monitored
every month at both parties with only aggregates crossing, retrained after a breach through the gate, and the
host's active part always the champion's."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pandas as pd
import pytest

from model_registry.governance import recorded_gate
from model_registry.history import events
from model_registry.registry import champion_version, load_model
from monitoring.dashboards import EVENT_ACTIONS, series
from monitoring.reports import PSI_METRIC_TYPE, VALUE_METRIC_TYPE
from orchard.lifecycle.ledger import load_month
from orchard.months import month_range
from orchard.settings import Settings
from orchard.testing.small_lifecycle import SMALL, SMALL_JOINT, SMALL_POLICY, small_portfolio

pytestmark = pytest.mark.slow(seconds=60)  # with the session's small lifecycle (~70 s to build)

MODEL = "precredit_response_joint"


@pytest.fixture(scope="module")
def settings(small_lifecycle_run: tuple[Path, subprocess.CompletedProcess[str]]) -> Settings:
    home, result = small_lifecycle_run
    assert result.returncode == 0, result.stderr[-2000:]
    return Settings(_env_file=None, home=home, portfolio=small_portfolio(home), **SMALL)  # type: ignore[arg-type]


def _months(settings: Settings) -> dict[str, dict]:
    records = {}
    for month in month_range(settings.start_month, settings.end_month):
        record = load_month(settings, month)
        assert record is not None, f"{month} has no record"
        records[month] = record.models.get(MODEL) or {}
    return records


def _host_dir(settings: Settings) -> Path:
    return settings.federated_dir / "host_home" / "federated" / "host"


def test_the_joint_model_is_fitted_through_the_gate_and_becomes_champion(settings: Settings) -> None:
    # Given the joint model's month records
    records = _months(settings)
    fitted = [m for m, r in records.items() if r.get("trained")]
    assert fitted, "the joint model was never trained"
    first = records[fitted[0]]
    # Then its first fit was gated (a recorded gate with every required check) and promoted by the policy
    assert first["promotion"]["action"] == "promote", first["promotion"]
    gate = recorded_gate(settings, MODEL, first["trained"]["version"])
    assert gate is not None and gate["passed"]
    assert {c["name"] for c in gate["checks"]} >= {"discrimination", "stability", "calibration"}
    promotions = [e for e in events(settings, MODEL) if e.action == "promote"]
    assert promotions and promotions[0].version == first["trained"]["version"]
    assert champion_version(settings, MODEL) is not None


def test_every_month_after_the_first_fit_is_monitored_at_both_parties(settings: Settings) -> None:
    # Given the months after the first fit
    records = _months(settings)
    fitted = [m for m, r in records.items() if r.get("trained")]
    after = [m for m in records if m > fitted[0]]
    assert after, "the small lifecycle ends before the joint model could be monitored"
    monitoring = sorted((_host_dir(settings) / "monitoring").glob("*.json"))
    assert len(monitoring) >= len(after), "the host keeps its own record of each month's CSI"
    for month in after:
        entry = records[month]
        # Then the guest computed the score PSI and the CSI of its own and the host's features
        assert entry["champion"] is not None and entry["score_psi"] is not None, month
        assert entry["top_feature_psi"], month
        reasons = " ".join(entry["reasons"])
        assert "computed at the host" in reasons, reasons
    # And the host's answers were aggregates under opaque labels: no host feature name reached the guest
    host_names = json.loads((_host_dir(settings) / "table_spec.json").read_text())["features"]
    text = json.dumps(records)
    assert not any(f'"host:{f["name"]}"' in text for f in host_names)
    assert "host:host_feature_" in text
    # And one host process served every month: started once, it read each month's replaced table again
    log = (_host_dir(settings) / "party.log").read_text()
    assert log.count("host party listening") == 1, log[-3000:]
    assert log.count("read again") >= len(after), log[-3000:]


def test_a_breach_retrains_through_the_gate_and_the_host_keeps_the_champions_part(settings: Settings) -> None:
    # Given the small lifecycle's shock (SMALL shock_month) and the joint model's records
    records = _months(settings)
    breaches = [m for m, r in records.items() if r.get("breach")]
    assert breaches, "the shock never breached the joint model's monitoring"
    retrains = [m for m, r in records.items() if r.get("trained") and r.get("champion") is not None]
    assert retrains, "no breach led to a retrain"
    for month in retrains:
        entry = records[month]
        version = entry["trained"]["version"]
        # Then each retrain was compared with the champion on the same out-of-time rows by a recorded gate
        gate = recorded_gate(settings, MODEL, version)
        assert gate is not None
        figures = gate.get("figures") or {}
        assert figures.get("champion_version") == entry["champion"], figures
        assert entry["promotion"]["action"] in ("promote", "reject")
        assert "champion_oot_auc" in entry["trained"]["metrics"]
    # And the host's active part is the champion's, every other part retired or a refused candidate
    champion = champion_version(settings, MODEL)
    active = json.loads((_host_dir(settings) / "models" / "active.json").read_text())["part_id"]
    assert load_model(settings, MODEL, champion).host_part_id == active
    assert (
        not (_host_dir(settings) / "models" / "candidate.json").exists()
        or json.loads((_host_dir(settings) / "models" / "candidate.json").read_text()).get("part_id")
        != active
    )


def test_the_joint_models_dashboard_shows_what_its_months_recorded(settings: Settings) -> None:
    # Given the months in which the joint model's champion was monitored
    records = _months(settings)
    monitored = {m: r["score_psi"] for m, r in records.items() if r.get("score_psi") is not None}
    assert len(monitored) >= 2, records
    # Then its Evidently project holds each month's score PSI as recorded in the month's ledger
    assert series(settings, MODEL, PSI_METRIC_TYPE, {"scope": "score"}) == pytest.approx(monitored)
    # And the host's CSI under its opaque labels, beside the lender's own features' CSI
    for month, entry in records.items():
        for feature, value in entry.get("top_feature_psi", {}).items():
            stored = series(settings, MODEL, PSI_METRIC_TYPE, {"scope": "feature", "label": feature})
            assert stored[month] == pytest.approx(value), (month, feature)
    assert any(
        f.startswith("host:host_feature_") for r in records.values() for f in r.get("top_feature_psi", {})
    )
    # And each monitored month's alias events, counted per action (a retrain's decision falls in its month)
    for action in EVENT_ACTIONS:
        counted = series(settings, MODEL, VALUE_METRIC_TYPE, {"group": "events", "label": action})
        recorded = [e.effective_month for e in events(settings, MODEL) if e.action == action]
        assert counted == {m: float(recorded.count(m)) for m in monitored}, action
    # And the early estimate of every monitored month's vintage from the champion's stored PDs
    expected = series(settings, MODEL, VALUE_METRIC_TYPE, {"group": "vintage", "label": "expected_auc"})
    assert set(monitored) <= set(expected), expected
    assert all(0.5 < v < 1.0 for v in expected.values()), expected


def test_a_job_fits_on_its_window_of_labelled_vintages_only(settings: Settings) -> None:
    # Given the last month's retrain and the lender's table as of that month (the last split written)
    records = _months(settings)
    last = max(m for m, r in records.items() if r.get("trained"))
    guest = pd.read_parquet(settings.federated_dir / "split" / "guest.parquet")
    labelled = guest[guest["bad"].notna()]
    vintages = sorted(labelled["vintage"].astype(str).unique())
    window = vintages[-SMALL_JOINT["train_vintages"] :]
    oot = SMALL_POLICY["oot_months"]
    assert len(vintages) > len(window), "the run is too short for the window to leave a vintage out"
    # Then the job trained on the window's vintages before its out-of-time ones, not on the earlier vintages
    n_train = records[last]["trained"]["metrics"]["n_train"]
    in_window = int(labelled["vintage"].astype(str).isin(window[:-oot]).sum())
    before_oot = int(labelled["vintage"].astype(str).isin(vintages[:-oot]).sum())
    assert 0 < n_train <= in_window < before_oot, (n_train, in_window, before_oot)


def test_the_run_summary_lists_the_joint_models_versions(
    small_lifecycle_run: tuple[Path, subprocess.CompletedProcess[str]],
) -> None:
    # Given the small lifecycle's printed summary (after its month-by-month progress lines)
    _, result = small_lifecycle_run
    summary = result.stdout.split("Orchard lifecycle summary", 1)[-1]
    # Then its table of model versions and decisions lists the joint model beside the portfolio's models
    assert MODEL in summary, summary[-3000:]
