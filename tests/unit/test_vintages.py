"""Unit tests of performance by vintage: matured AUC/KS/bad rate and the CBPE-style early estimate."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from monitoring.vintages import early_estimate, expected_auc_ks, matured_performance, performance_by_vintage
from orchard.credit.metrics import auc, ks
from orchard.errors import OrchardError


def _book() -> tuple[pd.DataFrame, pd.DataFrame]:
    """Three vintages: 2019-01 mature, 2019-02 mature but one class only, 2019-03 partly immature."""
    scores = pd.DataFrame(
        {
            "application_id": [f"a{i}" for i in range(12)],
            "vintage": ["2019-01"] * 5 + ["2019-02"] * 3 + ["2019-03"] * 4,
            "pd": [0.9, 0.2, 0.6, 0.1, 0.3, 0.2, 0.1, 0.3, 0.5, 0.2, 0.4, 0.1],
            "score": range(12),
        }
    )
    labels = pd.DataFrame(
        {
            "application_id": [f"a{i}" for i in range(12)],
            "vintage": scores["vintage"],
            "mature": [True] * 8 + [True, False, True, False],
            "bad": [1, 0, 0, 0, 1, 0, 0, 0, 1, np.nan, 0, np.nan],
        }
    )
    return scores, labels


def test_reports_only_newly_matured_vintages_with_hand_checked_figures() -> None:
    # Given three vintages at as_of 2019-08, where 2019-03 still has immature loans
    scores, labels = _book()
    # When the matured performance is computed for the first time
    table = matured_performance(scores, labels, "2019-08", already_reported=set())
    # Then 2019-01 and 2019-02 are reported; 2019-01's figures equal the metrics on its five loans
    assert table["vintage"].tolist() == ["2019-01", "2019-02"], "only fully mature vintages"
    first = table.set_index("vintage").loc["2019-01"]
    y, p = [1, 0, 0, 0, 1], [0.9, 0.2, 0.6, 0.1, 0.3]
    assert (first["n"], first["n_bad"], first["bad_rate"]) == (5, 2, pytest.approx(0.4))
    assert first["auc"] == pytest.approx(auc(y, p)) and first["ks"] == pytest.approx(ks(y, p))
    assert first["mean_pd"] == pytest.approx(np.mean(p)) and first["reported_at"] == "2019-08"
    # And a one-class vintage has an undefined (NaN) AUC/KS rather than an error
    second = table.set_index("vintage").loc["2019-02"]
    assert math.isnan(second["auc"]) and math.isnan(second["ks"]) and second["bad_rate"] == 0.0


def test_already_reported_and_future_vintages_are_skipped() -> None:
    scores, labels = _book()
    # Given 2019-01 reported last month / Then only 2019-02 is new
    table = matured_performance(scores, labels, "2019-08", already_reported={"2019-01"})
    assert table["vintage"].tolist() == ["2019-02"], "a vintage is reported once"
    # Given as_of before 2019-02 / Then 2019-02 is not yet in scope
    early = matured_performance(scores, labels, "2019-01", already_reported=set())
    assert early["vintage"].tolist() == ["2019-01"], "vintages after as_of are not reported"
    # Given nothing new / Then an empty frame with the documented columns
    none = matured_performance(scores, labels, "2019-08", already_reported={"2019-01", "2019-02"})
    assert none.empty and "auc" in none.columns


def test_matured_performance_rejects_inconsistent_input() -> None:
    scores, labels = _book()
    with pytest.raises(OrchardError, match="disagree on the vintage"):
        matured_performance(scores, labels.assign(vintage="2019-05"), "2019-08", set())
    with pytest.raises(OrchardError, match="more than once"):
        matured_performance(pd.concat([scores, scores.head(1)]), labels, "2019-08", set())
    with pytest.raises(OrchardError, match="missing column\\(s\\) mature"):
        matured_performance(scores, labels.drop(columns="mature"), "2019-08", set())
    with pytest.raises(OrchardError, match="probabilities"):
        matured_performance(scores.assign(pd=scores["pd"] * 3), labels, "2019-08", set())


def test_expected_auc_equals_the_pairwise_definition() -> None:
    # Given PDs with ties / When compared with the O(n^2) definition in the module docstring
    rng = np.random.default_rng(1)
    p = np.round(rng.beta(1, 6, 80), 2)
    numerator = denominator = 0.0
    for i in range(p.size):
        for j in range(p.size):
            if i != j:
                weight = p[i] * (1 - p[j])
                denominator += weight
                numerator += weight * (1.0 if p[i] > p[j] else 0.5 if p[i] == p[j] else 0.0)
    expected, _ = expected_auc_ks(p)
    # Then the vectorised value equals it
    assert expected == pytest.approx(numerator / denominator, abs=1e-12)


def test_expected_auc_and_bad_rate_track_outcomes_drawn_from_calibrated_pds() -> None:
    # Given calibrated PDs: outcomes drawn as Bernoulli(p)
    rng = np.random.default_rng(2)
    p = rng.beta(1.2, 10, 3000)
    draws = [(rng.random(p.size) < p).astype(int) for _ in range(60)]
    # When estimated before any outcome is known
    table = early_estimate(pd.DataFrame({"vintage": "2020-04", "pd": p}))
    row = table.iloc[0]
    # Then the mean realised AUC, KS and bad rate are close to the estimate
    assert row["expected_bad_rate"] == pytest.approx(p.mean())
    assert row["expected_auc"] == pytest.approx(np.mean([auc(y, p) for y in draws]), abs=0.005)
    assert row["expected_ks"] == pytest.approx(np.mean([ks(y, p) for y in draws]), abs=0.03)
    assert np.mean([y.mean() for y in draws]) == pytest.approx(row["expected_bad_rate"], abs=0.003)


def test_early_estimate_per_vintage_and_its_refusals() -> None:
    scores = pd.DataFrame({"vintage": ["2020-01", "2020-01", "2020-02"], "pd": [0.1, 0.3, 0.2]})
    table = early_estimate(scores)
    # Then one row per vintage; a single loan has no pair, so its expected AUC/KS are NaN
    assert table["vintage"].tolist() == ["2020-01", "2020-02"] and table["n"].tolist() == [2, 1]
    assert table.loc[0, "expected_auc"] == pytest.approx(1.0 * 0.3 * 0.9 / (0.1 * 0.7 + 0.3 * 0.9))
    assert math.isnan(table.loc[1, "expected_auc"])
    with pytest.raises(OrchardError, match="calibrated"):
        early_estimate(scores, calibrated=False)
    with pytest.raises(OrchardError, match="missing or non-numeric"):
        early_estimate(scores.assign(pd=[0.1, None, 0.2]))


def test_estimate_sits_beside_the_realised_value() -> None:
    # Given an estimate for two vintages and the realised value of the first
    estimated = early_estimate(
        pd.DataFrame({"vintage": ["2020-01"] * 3 + ["2020-02"] * 2, "pd": [0.1, 0.2, 0.3, 0.2, 0.4]})
    )
    scores, labels = _book()
    realised = matured_performance(scores, labels, "2019-08", set()).assign(vintage=["2020-01", "2019-12"])
    # When merged
    table = performance_by_vintage(realised, estimated).set_index("vintage")
    # Then each vintage has its status; matured ones carry both the estimate and the realised value
    assert table["status"].to_dict() == {"2019-12": "matured", "2020-01": "matured", "2020-02": "estimate"}
    assert (
        table.loc["2020-01", "expected_bad_rate"] == pytest.approx(0.2)
        and table.loc["2020-01", "bad_rate"] == 0.4
    )
    assert math.isnan(table.loc["2020-02", "auc"]), "no realised AUC before maturity"


def test_the_estimate_is_compared_on_the_cases_it_describes_and_all_applicants_are_shown_apart() -> None:
    # Given a vintage of six applicants, three booked (PD 0.1, 0.2, 0.3; one of them bad), three declined with high
    # PDs (the ones a lender turns down): the all-applicants estimate describes another population
    pds = {"a": 0.1, "b": 0.2, "c": 0.3, "d": 0.7, "e": 0.8, "f": 0.9}
    scores = pd.DataFrame({"application_id": list(pds), "vintage": "2020-01", "pd": list(pds.values())})
    booked = scores[scores["application_id"].isin(["a", "b", "c"])]
    labels = booked[["application_id", "vintage"]].assign(mature=True, bad=[0, 0, 1])
    realised = matured_performance(scores, labels, "2020-07", set())
    # When the estimate on the booked cases and the one on every applicant are set beside the realised value
    table = performance_by_vintage(realised, early_estimate(booked), early_estimate(scores)).iloc[0]
    # Then the error compares like with like: mean PD 0.2 on the booked vs a realised bad rate 1/3
    assert table["n"] == 3 and table["n_scored"] == 3 and table["n_applicants"] == 6
    assert table["expected_bad_rate"] == pytest.approx(0.2)
    assert table["bad_rate_error"] == pytest.approx(0.2 - 1 / 3)
    assert table["auc_error"] == pytest.approx(table["expected_auc"] - 1.0), (
        "the riskiest booked loan went bad"
    )
    # and the applicants' estimate (mean PD 0.5) is kept apart, not used for the error
    assert table["expected_bad_rate_applicants"] == pytest.approx(0.5)
    assert table["expected_auc_applicants"] != pytest.approx(table["expected_auc"])
