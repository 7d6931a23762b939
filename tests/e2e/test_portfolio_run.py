"""`orchard run --portfolio`: a seventh model is one spec entry, and the generic label equals the named one."""

from __future__ import annotations

import json
import shutil
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from orchard.model_specs import model_spec
from orchard.populations import population
from orchard.settings import Settings
from orchard.testing.demo import demo_variant, simulated_silver
from orchard.testing.small_lifecycle import SMALL_LABELS, SMALL_POLICY, run_orchard

pytestmark = pytest.mark.slow(seconds=40)

SEVENTH = "application_dpd30"
GENERIC_LABEL = {
    "description": "30+ DPD (or charge-off) within 2 months of booking, as a generic performance label",
    "performance": {
        "source": "repayments",
        "match": {"application_id": "application_id"},
        "event": "dpd >= 30 or status == 'charged_off'",
        "within_months": 2,
    },
}


def _with_seventh_model(folder: Path) -> Path:
    """Copy the small lifecycle's demo portfolio into folder and add one label and one model entry (no code)."""
    demo_variant(folder, policy=SMALL_POLICY, labels=SMALL_LABELS)
    document = yaml.safe_load((folder / "portfolio.yaml").read_text())
    document["labels"]["dpd30_2m"] = GENERIC_LABEL
    document["models"][SEVENTH] = {
        "purpose": "probability that a booked application goes 30+ days past due within 2 months",
        "population": {
            "source": "applications",
            "key": "application_id",
            "entity": "user_id",
            "trainable": "decision == 'approved'",
        },
        "label": "dpd30_2m",
        "views": ["partner_activity", "credit_history"],
        "features": [
            "income_est_monthly",
            "late_bill_payments_12m",
            "spend_to_income",
            "max_dpd_3m",
            "missed_payments_3m",
        ],
        "request_features": ["requested_amount", "term_months", "employment_type"],
        "categorical": ["employment_type"],
        "increasing": ["late_bill_payments_12m", "max_dpd_3m", "missed_payments_3m"],
    }
    (folder / "portfolio.yaml").write_text(yaml.safe_dump(document, sort_keys=False))
    return folder


def _seventh_model_lake(tmp_path: Path, end_month: str, **population: object) -> Settings:
    """A small simulated silver lake (2,000 users from 2019-01) under the seventh-model portfolio, its
    population keys set over the entry's own."""
    folder = _with_seventh_model(tmp_path / "portfolio")
    if population:
        document = yaml.safe_load((folder / "portfolio.yaml").read_text())
        document["models"][SEVENTH]["population"].update(population)
        (folder / "portfolio.yaml").write_text(yaml.safe_dump(document, sort_keys=False))
    settings = Settings(
        _env_file=None,
        home=tmp_path / "o",
        portfolio=folder,
        n_users=2000,  # type: ignore[call-arg]
        end_month=end_month,
        corrupt_batches=[],
    )
    return simulated_silver(settings)


def test_the_generic_performance_label_equals_the_named_strategy(tmp_path: Path) -> None:
    # Given a small simulated lake and the seventh model, whose label is the named dpd90 rule written as data
    settings = _seventh_model_lake(tmp_path, "2019-12")
    months = [f"2019-{m:02d}" for m in range(1, 13)]
    # When building both populations with labels known at 2019-10
    named = population(settings, model_spec(settings.portfolio_def, "application_pd"), months, "2019-10")
    generic = population(settings, model_spec(settings.portfolio_def, SEVENTH), months, "2019-10")
    # Then the same cases are learnable, mature and bad
    pd.testing.assert_series_equal(named["application_id"], generic["application_id"])
    for column in ("eligible", "mature"):
        assert (named[column].to_numpy() == generic[column].to_numpy()).all(), column
    booked = named["eligible"].to_numpy(dtype=bool)
    assert np.array_equal(named["bad"].to_numpy()[booked], generic["bad"].to_numpy()[booked], equal_nan=True)
    assert named.loc[booked, "mature"].sum() > 100 and generic.loc[booked, "bad"].sum() > 10


def test_max_per_month_keeps_a_stable_sample_of_each_months_cases(tmp_path: Path) -> None:
    # Given the seventh model's population capped at 40 cases a month, over a small simulated lake
    settings = _seventh_model_lake(tmp_path, "2019-06", max_per_month=40)
    months = [f"2019-{m:02d}" for m in range(1, 7)]
    capped = model_spec(settings.portfolio_def, SEVENTH)
    uncapped = replace(capped, max_per_month=None)
    # When building the population twice, and once without the cap
    first = population(settings, capped, months, "2019-06")
    again = population(settings, capped, months, "2019-06")
    whole = population(settings, uncapped, months, "2019-06")
    # Then each month keeps at most 40 cases (every month has more), the same ones every time, each one a case of
    # the whole population with the same label
    per_month = first["event_timestamp"].dt.strftime("%Y-%m").value_counts()
    assert (per_month == 40).all() and len(per_month) == 6, per_month
    assert (whole["event_timestamp"].dt.strftime("%Y-%m").value_counts() > 40).all()
    pd.testing.assert_frame_equal(first, again)
    merged = first.merge(whole, on="application_id", suffixes=("", "_whole"))
    assert len(merged) == len(first)
    assert merged["bad"].equals(merged["bad_whole"]) and merged["mature"].equals(merged["mature_whole"])
    # And the demo's behaviour model declares its cap in the portfolio, not in a setting
    assert model_spec(Settings(_env_file=None).portfolio_def, "behavior_pd").max_per_month == 2500  # type: ignore[call-arg]


def test_a_seventh_model_is_one_spec_entry(tmp_path: Path, prefect_server_env: dict[str, str]) -> None:
    # Given the demo portfolio with a seventh model added as data only
    folder = _with_seventh_model(tmp_path / "portfolio")
    home = tmp_path / "orchard"
    # When `orchard run` runs the small lifecycle on it, up to the month the new model is first promoted
    result = run_orchard(
        home, "run", "--portfolio", str(folder), "--until", "2019-07", timeout=1200, **prefect_server_env
    )
    assert result.returncode == 0, f"{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    # Then every month records the seven models (and the joint model) the same way, and the seventh was trained
    # and promoted
    records = [json.loads(p.read_text()) for p in sorted((home / "state" / "months").glob("*.json"))]
    assert all(
        len(r["models"]) == 8 and {SEVENTH, "precredit_response_joint"} <= set(r["models"]) for r in records
    )
    promotions = [m["promotion"] for r in records if (m := r["models"][SEVENTH])["promotion"]]
    assert any(p["action"] == "promote" for p in promotions), promotions
    assert SEVENTH in result.stdout, "the summary's models table lists the seventh model"
    # And its Feast feature service exists beside the demo's six
    registry = home / "feast" / "registry.db"
    assert registry.exists()
    shutil.rmtree(folder)  # the run copied nothing it needs from the portfolio folder afterwards
