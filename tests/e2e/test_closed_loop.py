"""The closed loop on the session's small lifecycle: the simulated lender decides with Orchard's champion, and the
selection-bias report measures booked-only training and reject inference against the simulator's truth."""

from __future__ import annotations

import subprocess
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from model_registry.history import champion_at
from orchard.lifecycle.lender import LEGACY, decision_log
from orchard.lifecycle.selection_bias import render, selection_bias
from orchard.months import add_months, month_range
from orchard.settings import Settings
from orchard.simulate.policy import legacy_decision, legacy_score
from orchard.testing.small_lifecycle import SMALL, small_portfolio

pytestmark = pytest.mark.slow(seconds=60)  # with the session's small lifecycle (~70 s to build)


@pytest.fixture(scope="module")
def settings(small_lifecycle_run: tuple[Path, subprocess.CompletedProcess[str]]) -> Settings:
    home, result = small_lifecycle_run
    assert result.returncode == 0, result.stderr[-2000:]
    return Settings(_env_file=None, home=home, portfolio=small_portfolio(home), **SMALL)  # type: ignore[arg-type]


def test_the_champion_decides_from_the_month_after_its_first_promotion(settings: Settings) -> None:
    # Given the small lifecycle's decision log
    months = month_range(settings.start_month, settings.end_month)
    log = decision_log(settings, months)
    assert sorted(log["month"].unique()) == months, "every month's decisions are logged"
    champions = {m: champion_at(settings, "application_pd", add_months(m, -1)) for m in months}
    assert any(v is None for v in champions.values()) and any(v is not None for v in champions.values())
    for month, rows in log.groupby("month"):
        version = champions[str(month)]
        if version is None:
            # Then before the first champion the legacy rule decides alone
            assert (rows["policy"] == LEGACY).all(), month
            continue
        # Then afterwards the champion in force when the month began decides, with the API's cut-offs
        assert rows["policy"].str.startswith(f"application_pd v{version}").all(), month
        assert rows["pd"].notna().all() and set(rows["decision"]) <= {"approve", "decline", "refer"}
        cutoffs = settings.serving
        assert rows.loc[rows["pd"] >= cutoffs.decline_min_pd, "approved"].eq(False).all()
        approve = rows["decision"] == "approve"
        assert (
            rows.loc[approve, "approved"].all() and (rows.loc[approve, "pd"] <= cutoffs.approve_max_pd).all()
        )
        # And a referral is booked exactly when the legacy rule (manual underwriting) approves it
        if f"applications:{month}" in SMALL["corrupt_batches"]:
            continue  # its landed file is the corrupted one
        apps = pd.read_parquet(settings.landing_dir / "applications" / f"{month}.parquet")
        snapshot = pd.read_parquet(settings.landing_dir / "partner_users" / f"{month}.parquet")
        known = apps.merge(snapshot[["user_id", "age", "late_bill_payments_12m"]], on="user_id")
        legacy = legacy_decision(
            legacy_score(
                known["income_declared"].to_numpy(),
                known["late_bill_payments_12m"].to_numpy(),
                known["age"].to_numpy(),
                known["requested_amount"].to_numpy(),
            )
        )
        legacy_approves = dict(zip(known["application_id"], legacy == "approved", strict=True))
        referred = rows[rows["decision"] == "refer"]
        assert len(referred) > 0
        assert (referred["approved"] == referred["application_id"].map(legacy_approves)).all(), month
    # And the applications the lifecycle ingested carry those decisions (the corrupted batch aside)
    for month in months:
        if f"applications:{month}" in SMALL["corrupt_batches"]:
            continue
        landed = pd.read_parquet(settings.landing_dir / "applications" / f"{month}.parquet")
        logged = log[log["month"] == month]
        assert landed["application_id"].tolist() == logged["application_id"].tolist(), month
        assert ((landed["decision"] == "approved") == logged["approved"].to_numpy()).all(), month


def test_the_lender_scores_with_the_features_the_champion_is_monitored_with(settings: Settings) -> None:
    # Given the months the champion decided, and the monitoring's point-in-time scores of the same applications
    log = decision_log(settings)
    decided = log[log["policy"] != LEGACY]
    assert len(decided) > 100
    compared = 0
    for month, rows in decided.groupby("month"):
        scores = pd.read_parquet(settings.scores_dir / "application_pd" / f"{month}.parquet")
        apps = pd.read_parquet(settings.landing_dir / "applications" / f"{month}.parquet")
        statements = pd.read_parquet(settings.landing_dir / "repayments" / f"{month}.parquet")
        first_statement = statements.groupby("user_id")["event_ts"].min()
        cases = rows.merge(scores[["application_id", "pd"]], on="application_id", suffixes=("", "_monitored"))
        cases = cases.merge(apps[["application_id", "user_id", "event_ts"]], on="application_id")
        later = cases["user_id"].map(first_statement)
        known_at_start = ~(later < cases["event_ts"]).fillna(False).astype(bool)
        # Then every application whose customer had no statement earlier in the month scores the same PD
        # (the lender decides with what it knew at the month's start; the monitoring joins at the application)
        same = np.isclose(cases["pd"], cases["pd_monitored"], rtol=0, atol=1e-9)
        assert same[known_at_start.to_numpy()].all(), month
        compared += int(known_at_start.sum())
    assert compared > 100


def test_declined_applications_have_counterfactual_statements_only(settings: Settings) -> None:
    # Given the logged decisions and the counterfactual statements of every simulated month
    log = decision_log(settings)
    truth = pd.concat(
        pd.read_parquet(p) for p in sorted((settings.simulator_dir / "counterfactual").glob("*.parquet"))
    )
    # Then no booked application has one, and every logged declined one is followed (ids before the first
    # logged month are the burn-in's declined applications)
    ids = set(truth["application_id"])
    assert not ids & set(log.loc[log["approved"], "application_id"])
    logged = {i for i in ids if i >= log["application_id"].min()}
    declined = set(log.loc[~log["approved"], "application_id"])
    assert logged and logged <= declined
    last = log["month"].max()
    assert declined - set(log.loc[log["month"] == last, "application_id"]) <= ids, (
        "a declined loan is followed"
    )


def test_the_selection_bias_report_sets_booked_only_beside_parcelling_and_the_truth(
    settings: Settings,
) -> None:
    # When the report runs on the small lifecycle
    report = selection_bias(settings, holdout=2)
    names = [v["name"] for v in report["variants"]]
    # Then it fits booked-only, parcelling at three factors and the all-applicant fit
    assert names == [
        "booked only",
        "parcelling x1",
        "parcelling x1.5",
        "parcelling x2",
        "all applicants (truth)",
    ]
    booked_only, *_, oracle = report["variants"]
    assert oracle["trained_on"] > booked_only["trained_on"]
    # And every fit is judged on the same out-of-time samples, booked and declined adding up to all
    for variant in report["variants"]:
        b, d, a = variant["booked"], variant["declined"], variant["all"]
        assert (b["rows"], d["rows"], b["bads"] + d["bads"]) == (
            booked_only["booked"]["rows"],
            booked_only["declined"]["rows"],
            a["bads"],
        )
        assert a["rows"] == b["rows"] + d["rows"] > 0
    # And the declined applicants' true bad rate is above the booked ones' (the lender declines risk)
    assert booked_only["declined"]["observed_bad_rate"] > booked_only["booked"]["observed_bad_rate"]
    assert (settings.reports_dir / "selection_bias_application_pd.json").exists()
    table = render(report)
    assert any(line.startswith("| booked only |") for line in table)
