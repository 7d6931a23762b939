"""End to end: a short lifecycle through the real CLI, Prefect, GE, Feast, MLflow and Evidently."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from mlflow import MlflowClient

from model_registry.registry import load_model
from orchard.settings import Settings
from orchard.testing.demo import demo_models
from orchard.testing.small_lifecycle import final_state, run_demo

MODEL_SPECS = demo_models()

pytestmark = pytest.mark.slow(seconds=100)  # with the session's small lifecycle (~70 s to build)


@pytest.fixture(scope="module")
def completed(
    small_lifecycle_run: tuple[Path, subprocess.CompletedProcess[str]],
) -> tuple[Path, subprocess.CompletedProcess[str]]:
    """One uninterrupted small lifecycle (the session's), shared by the assertions below."""
    return small_lifecycle_run


def test_demo_catches_the_bad_batch_and_keeps_it_out(
    completed: tuple[Path, subprocess.CompletedProcess[str]],
) -> None:
    # Given the simulator corrupted applications of 2019-03
    home, result = completed
    # Then it is quarantined with its validation result, and nothing of it reached silver
    quarantine = home / "lake" / "quarantine" / "applications" / "applications-2019-03"
    assert (quarantine / "validation.json").exists(), "quarantined batch has no validation result"
    assert not (home / "lake" / "silver" / "applications" / "2019-03.parquet").exists()
    record = json.loads((home / "state" / "months" / "2019-03.json").read_text())
    assert "applications-2019-03" in record["quarantined"]
    assert any("not_be_null" in b or "in_set" in b for b in record["quarantined"]["applications-2019-03"])
    assert "applications-2019-03" in result.stdout, "summary does not list the quarantined batch"


def test_the_demo_prints_no_library_warnings(
    completed: tuple[Path, subprocess.CompletedProcess[str]],
) -> None:
    # Given the small lifecycle's output / Then the tools' import-time and deprecation warnings stay out of it
    # (the one-line errors and the month lines are what a user reads)
    _, result = completed
    output = result.stdout + result.stderr
    assert "py.warnings" not in output and "DeprecationWarning" not in output, [
        line for line in output.splitlines() if "Warning" in line
    ][:5]


def test_demo_trains_a_champion_detects_the_shock_and_decides(
    completed: tuple[Path, subprocess.CompletedProcess[str]],
) -> None:
    home, result = completed
    state = final_state(home)
    aliases = {(name, alias): version for name, alias, version in state["aliases"]}
    assert ("application_pd", "champion") in aliases, "no champion after the lifecycle"
    months = state["months"]
    breaches = [m for m, r in months.items() if r["models"]["application_pd"]["breach"] and m >= "2019-07"]
    assert breaches and breaches[0] <= "2019-09", (
        f"shock from 2019-07 not detected within 3 months: {breaches}"
    )
    promotions = [p for r in months.values() if (p := r["models"]["application_pd"]["promotion"])]
    assert len(promotions) >= 2, "expected the first promotion and at least one retrain decision"
    assert promotions[-1]["action"] in {"promote", "reject"} and promotions[-1]["reason"]
    assert "Alias history" in result.stdout and "BREACH" in result.stdout
    # And the breach was emitted as a Prefect event (what a deployed automation reacts to)
    import sqlite3

    db = sqlite3.connect(home / "prefect" / "prefect.db")
    emitted = db.execute("select payload from events where event = 'orchard.monitor.breach'").fetchall()
    db.close()
    assert emitted and any('"model": "application_pd"' in row[0] for row in emitted), emitted


def test_every_stage_model_is_trained_carded_and_stratifies(
    completed: tuple[Path, subprocess.CompletedProcess[str]],
) -> None:
    home, result = completed
    state = final_state(home)
    champions = {name for name, alias, _ in state["aliases"] if alias == "champion"}
    # loss_forecast needs charge-offs (180 dpd: 6 months on book at the earliest) inside its window, which
    # this 9-month lifecycle cannot mature; `make demo` (36 months) trains it
    assert champions >= set(MODEL_SPECS) - {"loss_forecast"}, champions
    # every registered version has its model card (Markdown and HTML) with the approval status it was given
    store = MlflowClient(tracking_uri=f"sqlite:///{home / 'mlflow' / 'mlflow.db'}")
    for name, version, _ in state["versions"]:
        found = store.get_model_version(name, str(version))
        card = Path(store.download_artifacts(found.run_id, "model_card/model_card.md", str(home.parent)))
        text = card.read_text()
        assert "## Approval status" in text, f"{name} v{version}"
        # every stage model is a scorecard or carries its scorecard baseline; the joint LR's host part is not here
        assert ("## Points table" in text) == (name != "precredit_response_joint"), f"{name} v{version}"
        status = text.rsplit("## Approval status", 1)[1]
        assert any(s in status for s in ("champion", "rejected", "challenger")), (
            f"{name} v{version}: {status}"
        )
    # campaign months with a precredit champion are stratified into tiers A-D, and the summary shows them
    tiers = {m: r["models"]["precredit_response"]["tiers"] for m, r in state["months"].items()}
    counted = {m: t for m, t in tiers.items() if t}
    assert counted and all(set(t) == {"A", "B", "C", "D"} and sum(t.values()) > 0 for t in counted.values())
    assert "Campaign tiers by month" in result.stdout and "Lifecycle models" in result.stdout
    # every application decision of a month carries its reason codes
    scores = pd.read_parquet(home / "scores" / "application_pd" / f"{max(counted)}.parquet")
    assert len(scores) > 50 and scores["reason_code_1"].notna().all()
    # behaviour: for the real champions, more missed payments / worse dpd never lower the predicted risk
    settings = Settings(_env_file=None, home=home)  # type: ignore[call-arg]
    for name in ("application_pd", "application_fraud"):
        champion = load_model(settings, name, "champion")
        for feature in MODEL_SPECS[name].increasing:
            grid = np.vstack(
                [champion.predict_pd(scores.assign(**{feature: v})) for v in (0, 1, 2, 3, 6, 12)]
            )
            assert (np.diff(grid, axis=0) >= 0).all(), f"{name}: more {feature} lowered a PD"


def test_rerun_changes_nothing(
    completed: tuple[Path, subprocess.CompletedProcess[str]], prefect_server_env: dict[str, str]
) -> None:
    # Given a finished lifecycle
    home, _ = completed
    before = final_state(home)
    # When the demo runs again
    again = run_demo(home, **prefect_server_env)
    # Then no batch, version, alias move or month record is added or changed
    assert again.returncode == 0, again.stderr[-2000:]
    assert final_state(home) == before
    # And every month was read back from its record: no flow ran, no Prefect server was started
    assert "every month to 2019-09 is done: nothing to run" in again.stdout, again.stdout[:500]
    assert "starting a temporary Prefect server" not in again.stdout
