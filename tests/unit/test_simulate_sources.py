"""Tests of the simulator's campaigns and collections: consistency with the engine's sources, and isolation."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from orchard.months import add_months, month_end, month_range, month_start
from orchard.settings import Settings
from orchard.simulate import SimulationSummary, landing_path, simulate
from orchard.simulate.campaigns import OFFER_SHARE, offer_amounts
from orchard.simulate.collection_actions import (
    CONTACT_RESULTS,
    collection_action,
    contact_probabilities,
    recovery_rate_mean,
)
from orchard.simulate.lifecycle import engine_months, simulate_months
from orchard.simulate.run import SIMULATED_SOURCES
from orchard.testing.demo import demo_sources
from tests.conftest import make_settings

SOURCES = demo_sources()

START, END = "2019-07", "2020-06"
BAD_CAMPAIGNS, BAD_COLLECTIONS = "2019-09", "2019-10"
ENGINE_SOURCES = ("partner_users", "applications", "repayments")


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Settings, SimulationSummary]:
    """One small simulation (2000 users, 12 months, shock in the middle) with one bad batch per new source."""
    settings = make_settings(
        tmp_path_factory.mktemp("sim") / "orchard",
        start_month=START,
        end_month=END,
        shock_month="2020-01",
        corrupt_batches=[f"campaigns:{BAD_CAMPAIGNS}", f"collections:{BAD_COLLECTIONS}"],
    )
    return settings, simulate(settings)


def _read_all(settings: Settings, source: str, skip: str | None = None) -> pd.DataFrame:
    frames = []
    for month in month_range(START, END):
        if month != skip:
            frames.append(pd.read_parquet(landing_path(settings, source, month)).assign(month=month))
    return pd.concat(frames, ignore_index=True)


def test_every_source_is_simulated() -> None:
    # Then the simulator writes every source the lake ingests (the flows iterate over SOURCES)
    assert set(SIMULATED_SOURCES) == set(SOURCES), "a source without simulated landing files"


# --- campaigns ----------------------------------------------------------------------------------------


def test_responses_are_the_same_months_applications_of_the_same_user(
    run: tuple[Settings, SimulationSummary],
) -> None:
    # Given the clean offers and every application
    settings, _ = run
    offers = _read_all(settings, "campaigns", skip=BAD_CAMPAIGNS)
    apps = _read_all(settings, "applications")
    assert 0 < offers["responded"].sum() < len(offers), "both responses and non-responses occur"
    # Then responded is 1 exactly when an application id is given
    assert (offers["responded"] == offers["application_id"].notna()).all(), "responded <=> application_id"
    # And each response is an application of the offer's month by the offered user
    responses = offers[offers["responded"] == 1]
    merged = responses.merge(apps, on="application_id", how="left", suffixes=("", "_app"))
    assert merged["month_app"].notna().all(), "every response id exists in applications"
    assert (merged["month_app"] == merged["month"]).all(), "the application is of the offer's month"
    assert (merged["user_id_app"] == merged["user_id"]).all(), "the application is the offered user's"
    # And no offered user who applied that month is missed
    applied = offers.merge(apps[["user_id", "month"]], on=["user_id", "month"], how="inner")
    assert (applied["responded"] == 1).all(), "an offered user who applied in the month responded"


def test_offers_go_to_snapshot_users_without_credit(
    run: tuple[Settings, SimulationSummary],
) -> None:
    # Given the clean offers, the snapshots and the statements
    settings, _ = run
    offers = _read_all(settings, "campaigns", skip=BAD_CAMPAIGNS)
    users = _read_all(settings, "partner_users")
    reps = _read_all(settings, "repayments")
    # Then every offered user is in the month's snapshot
    snap = offers.merge(
        users[["user_id", "month", "income_est_monthly"]], on=["user_id", "month"], how="left"
    )
    assert snap["income_est_monthly"].notna().all(), "offered users are active in the month"
    # And had no loan open at the month's start (an open loan has a statement in the month)
    with_loan = offers.merge(reps[["user_id", "month"]].drop_duplicates(), on=["user_id", "month"])
    assert with_loan.empty, f"{len(with_loan)} offers to users with an open loan"
    # And no loan charged off before (visible ones: charged off inside the written window)
    charged = reps[reps["status"] == "charged_off"].groupby("user_id")["month"].min()
    first_charge = offers["user_id"].map(charged).fillna(END)
    assert not (first_charge < offers["month"]).any(), "offer to a user with an earlier charge-off"
    # And the amount shown is 1.5x the snapshot's income estimate, rounded to 50, in range
    expected = offer_amounts(snap["income_est_monthly"].to_numpy())
    np.testing.assert_array_equal(snap["offer_amount"].to_numpy(), expected, "offer_amount from income")


def test_a_fixed_share_of_the_eligible_users_get_an_offer() -> None:
    # Given the engine's view of who was eligible (no open loan, never charged off, burn-in included)
    start, end, burn_in = "2019-01", "2019-06", 12
    facts = {
        month: (columns["partner_users"]["user_id"], f)
        for month, columns, f in engine_months(3_000, add_months(start, -burn_in), end, "2020-02", 5)
    }
    eligible_total = offered_total = 0
    for month, columns in simulate_months(3_000, start, end, "2020-02", 5, burn_in_months=burn_in):
        users, f = facts[month]
        eligible = set(users[~f.open_loan_at_start & ~f.charged_off_at_start])
        offered = set(columns["campaigns"]["user_id"])
        # Then only eligible users get an offer, one each
        assert offered <= eligible, f"{len(offered - eligible)} ineligible users offered in {month}"
        assert len(offered) == len(columns["campaigns"]["user_id"]), f"one offer per user in {month}"
        eligible_total += len(eligible)
        offered_total += len(offered)
    # And the offered share is OFFER_SHARE up to sampling noise (4 binomial standard errors)
    share = offered_total / eligible_total
    noise = 4 * np.sqrt(OFFER_SHARE * (1 - OFFER_SHARE) / eligible_total)
    assert abs(share - OFFER_SHARE) < noise, f"offered share {share:.4f} of {eligible_total} eligible"
    assert any(f.charged_off_at_start.any() for _, f in facts.values()), "burn-in charge-offs are excluded"


def test_offer_ids_times_and_campaign_ids(run: tuple[Settings, SimulationSummary]) -> None:
    # Given the clean offers
    settings, _ = run
    offers = _read_all(settings, "campaigns", skip=BAD_CAMPAIGNS)
    # Then ids are 'O' + 9 digits, unique across months and in send-time order
    assert offers["offer_id"].str.fullmatch(r"O\d{9}").all(), "offer id format"
    assert offers["offer_id"].is_unique, "offer ids unique across months"
    in_id_order = offers.sort_values("offer_id")
    assert in_id_order["event_ts"].is_monotonic_increasing, "ids follow send time"
    # And offers go out on the 1st between 09:00 and 17:00 UTC, in the month's campaign
    day = offers["month"].map(month_start)
    sent = offers["event_ts"] - day
    assert sent.between(pd.Timedelta(hours=9), pd.Timedelta(hours=17)).all(), "sent 09:00-17:00 on the 1st"
    assert (offers["campaign_id"] == "CMP-" + offers["month"]).all(), "campaign id of the month"
    assert set(offers["offer_channel"]) == {"push", "sms", "in_app"}, "every channel used"


# --- collections --------------------------------------------------------------------------------------


def test_collections_follow_delinquent_and_charged_off_statements_one_to_one(
    run: tuple[Settings, SimulationSummary],
) -> None:
    # Given the clean collection rows and the statements of the same months
    settings, _ = run
    actions = _read_all(settings, "collections", skip=BAD_COLLECTIONS)
    reps = _read_all(settings, "repayments", skip=BAD_COLLECTIONS)
    collected = reps[reps["status"].isin(["delinquent", "charged_off"])]
    key = ["application_id", "months_on_book"]
    merged = actions.merge(collected, on=key, how="outer", suffixes=("", "_stmt"), indicator=True)
    # Then there is exactly one row per delinquent or charged-off statement
    assert (merged["_merge"] == "both").all(), merged["_merge"].value_counts().to_dict()
    assert not actions.duplicated(key).any(), "one action per statement"
    assert (merged["user_id"] == merged["user_id_stmt"]).all(), "borrower of the statement"
    assert (merged["dpd"] == merged["dpd_stmt"]).all(), "dpd of the statement"
    overdue = (merged["amount_due"] - merged["amount_paid"]).clip(lower=0)
    np.testing.assert_allclose(
        merged["amount_overdue"], overdue, atol=0.011, err_msg="arrears of the statement"
    )
    # And the action follows 1-10 days after the statement, capped at the month's last day 23:00
    delay = merged["event_ts"] - merged["event_ts_stmt"]
    cap = merged["month"].map(month_end) - pd.Timedelta(hours=1)
    on_time = delay.isin([pd.Timedelta(days=d) for d in range(1, 11)])
    capped = (merged["event_ts"] == cap) & (delay <= pd.Timedelta(days=10))
    assert (on_time | capped).all(), "event_ts 1..10 days after the statement or capped"
    # And write-offs are exactly the charged-off statements; the other actions follow dpd
    write_off = merged["action"] == "write_off"
    assert (write_off == (merged["status"] == "charged_off")).all(), "write_off <=> charged_off"
    by_dpd = merged[~write_off]
    bucket = pd.cut(by_dpd["dpd"], [0, 30, 60, 120, 720], labels=["sms", "call", "field_visit", "agency"])
    assert (by_dpd["action"] == bucket.astype(str)).all(), "action by dpd bucket"
    assert set(merged["action"]) == {"sms", "call", "field_visit", "agency", "write_off"}, "every action seen"


def test_recoveries_only_on_write_offs_and_within_the_balance(
    run: tuple[Settings, SimulationSummary],
) -> None:
    # Given the clean collection rows joined to their statements
    settings, _ = run
    actions = _read_all(settings, "collections", skip=BAD_COLLECTIONS)
    reps = _read_all(settings, "repayments", skip=BAD_COLLECTIONS)
    merged = actions.merge(reps, on=["application_id", "months_on_book"], suffixes=("", "_stmt"))
    write_off = merged["action"] == "write_off"
    # Then nothing is recovered before the write-off, and a write-off recovers a part of the balance
    assert (merged.loc[~write_off, "recovered_amount"] == 0).all(), "recovery only at write-off"
    recovered, balance = merged.loc[write_off, "recovered_amount"], merged.loc[write_off, "balance"]
    assert write_off.sum() > 30, "enough write-offs to check"
    assert ((recovered >= 0) & (recovered <= balance)).all(), "recovered in [0, balance]"
    rate = (recovered / balance).mean()
    assert 0.1 < rate < 0.45, f"mean recovery rate {rate:.3f} (written-off borrowers have low z)"


def test_contact_results_and_recovery_depend_on_creditworthiness_and_stress() -> None:
    # Given borrowers differing in z, and calm vs stressed months
    z = np.array([-1.5, 0.0, 1.5])
    dpd = np.full(3, 60)
    calm, stressed = contact_probabilities(z, dpd, 0.0), contact_probabilities(z, dpd, 1.0)
    promise, no_contact = CONTACT_RESULTS.index("promise_to_pay"), CONTACT_RESULTS.index("no_contact")
    # Then probabilities sum to one, better z promises more, stress leaves more out of reach
    np.testing.assert_allclose(calm.sum(axis=1), 1.0, err_msg="probabilities sum to 1")
    assert np.all(np.diff(calm[:, promise]) > 0), "better z -> more promise_to_pay"
    assert np.all(stressed[:, no_contact] > calm[:, no_contact]), "stress -> more no_contact"
    # And the recovery rate's mean is 0.35 at z = 0, higher for better z, lower under stress
    assert recovery_rate_mean(np.array([0.0]), 0.0)[0] == pytest.approx(0.35), "0.35 at z = 0"
    assert np.all(np.diff(recovery_rate_mean(z, 0.0)) > 0), "better z recovers more"
    assert np.all(recovery_rate_mean(z, 1.0) < recovery_rate_mean(z, 0.0)), "stress recovers less"
    # And the action is set by the dpd bucket, write-off by the status
    dpds = np.array([30, 60, 90, 120, 150, 180])
    status = np.array(["delinquent"] * 5 + ["charged_off"], dtype=object)
    assert list(collection_action(dpds, status)) == [
        "sms",
        "call",
        "field_visit",
        "field_visit",
        "agency",
        "write_off",
    ]


# --- corruption and isolation --------------------------------------------------------------------------


def test_corrupted_new_source_batches_carry_their_defects(run: tuple[Settings, SimulationSummary]) -> None:
    # Given the corrupted campaigns and collections batches
    settings, summary = run
    offers = pd.read_parquet(landing_path(settings, "campaigns", BAD_CAMPAIGNS))
    actions = pd.read_parquet(landing_path(settings, "collections", BAD_COLLECTIONS))
    reports = {r.batch_id: r for r in summary.corrupted_batches}
    # Then each carries the documented defects, as counted in the report
    offer_report = reports[f"campaigns-{BAD_CAMPAIGNS}"]
    assert (offers["offer_amount"] < 0).sum() == offer_report.negative_amounts >= 3, "negative offer_amount"
    assert (offers["offer_channel"] == "fax").sum() == offer_report.unknown_categories, "offer_channel fax"
    assert offers["offer_id"].isna().sum() == offer_report.null_ids, "null offer ids"
    action_report = reports[f"collections-{BAD_COLLECTIONS}"]
    assert (actions["amount_overdue"] < 0).sum() == action_report.negative_amounts >= 3, "negative overdue"
    assert (actions["action"] == "prison").sum() == action_report.unknown_categories, "action prison"
    dupes = actions.dropna(subset=["application_id"]).duplicated(["application_id", "months_on_book"])
    assert dupes.sum() == action_report.duplicated_keys, "duplicated compound keys"


def test_new_sources_leave_the_engine_sources_unchanged() -> None:
    # Given the engine alone and the full simulator (with campaigns and collections) on the same settings
    start, end, burn_in = "2019-01", "2019-06", 6
    engine = {
        month: columns
        for month, columns, _ in engine_months(2_000, add_months(start, -burn_in), end, "2019-04", 3)
        if month >= start
    }
    full = dict(simulate_months(2_000, start, end, "2019-04", 3, burn_in_months=burn_in))
    # Then the three engine sources are identical, array by array, and the new sources were produced
    assert list(full) == list(engine) == month_range(start, end), "same months"
    for month, columns in engine.items():
        assert len(full[month]["campaigns"]["offer_id"]) > 0, f"offers in {month}"
        assert len(full[month]["collections"]["application_id"]) > 0, f"collections in {month}"
        for source in ENGINE_SOURCES:
            for name, values in columns[source].items():
                assert np.array_equal(full[month][source][name], values), f"{source}.{name} {month} changed"
