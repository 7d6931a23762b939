"""Unit tests of CreditModel, the LightGBM trainer and the baseline scorecard, including behaviour tests."""

from __future__ import annotations

import json
import pickle

import cloudpickle
import numpy as np
import pandas as pd
import pytest

from orchard.credit.metrics import auc
from orchard.credit.model import (
    LIGHTGBM_PARAMS,
    TUNING_BASE,
    TUNING_GRID,
    TUNING_MIN_BADS,
    TUNING_MIN_TREES,
    CreditModel,
    calibrated,
    pd_to_score,
    platt_of,
    score_to_pd,
    train_lightgbm,
)
from orchard.credit.scorecard import Scorecard, train_scorecard
from orchard.errors import OrchardError
from tests.applicants import CATEGORICAL, applicants

FEATURES = ["missed_payments_12m", "income", "employment"]
"""A model of the shared applicants (tests/applicants.py) without their other columns."""


@pytest.fixture(scope="module")
def train() -> pd.DataFrame:
    return applicants(4000)


@pytest.fixture(scope="module")
def scorecard(train: pd.DataFrame) -> CreditModel:
    return train_scorecard(train, "bad", FEATURES, CATEGORICAL, seed=7)


@pytest.fixture(scope="module")
def lightgbm(train: pd.DataFrame) -> CreditModel:
    return train_lightgbm(train, "bad", FEATURES, CATEGORICAL, seed=7)


def test_score_scaling() -> None:
    # Given odds 50:1, 100:1 and 25:1 / Then 600, 620 and 580 points (20 points to double the odds)
    pd_values = np.array([1 / 51, 1 / 101, 1 / 26])
    np.testing.assert_allclose(pd_to_score(pd_values), [600.0, 620.0, 580.0], atol=1e-9)
    np.testing.assert_allclose(score_to_pd(pd_to_score(pd_values)), pd_values, rtol=1e-12)


@pytest.mark.parametrize("kind", ["scorecard", "lightgbm"])
def test_models_rank_and_stay_in_range(kind: str, request: pytest.FixtureRequest) -> None:
    # Given a trained model and a fresh sample from the same population
    model: CreditModel = request.getfixturevalue(kind)
    test = applicants(2000, seed=1)
    # When scored
    pd_values = model.predict_pd(test)
    scores = model.score(test)
    # Then PDs are probabilities, they rank risk, and higher scores mean lower PD
    assert model.kind == kind and model.features == FEATURES and model.categorical == CATEGORICAL
    assert ((pd_values > 0) & (pd_values < 1)).all(), "PDs are probabilities"
    assert auc(test["bad"], pd_values) > 0.7, f"{kind} separates goods from bads out of sample"
    assert np.corrcoef(pd_values, scores)[0, 1] < -0.9, "higher score = safer"


@pytest.mark.parametrize("kind", ["scorecard", "lightgbm"])
def test_missing_and_unknown_values_never_raise(kind: str, request: pytest.FixtureRequest) -> None:
    # Given rows with a missing income, an unseen category and a missing category
    model: CreditModel = request.getfixturevalue(kind)
    rows = pd.DataFrame(
        {
            "missed_payments_12m": [2, 2, 2],
            "income": [np.nan, 3000.0, 3000.0],
            "employment": ["salaried", "astronaut", None],
            "unused_column": ["x", "y", "z"],
        }
    )
    # When scored / Then finite probabilities come back, one per row
    pd_values = model.predict_pd(rows)
    assert pd_values.shape == (3,) and np.isfinite(pd_values).all(), "missing optional values are scored"


@pytest.mark.parametrize("kind", ["scorecard", "lightgbm"])
def test_model_pickles_and_is_deterministic(
    kind: str, request: pytest.FixtureRequest, train: pd.DataFrame
) -> None:
    # Given a trained model round-tripped through cloudpickle and plain pickle, and a second fit with the same seed
    model: CreditModel = request.getfixturevalue(kind)
    trainer = train_scorecard if kind == "scorecard" else train_lightgbm
    refit = trainer(train, "bad", FEATURES, CATEGORICAL, seed=7)
    test = applicants(300, seed=2)
    expected = model.predict_pd(test)
    # Then all predict the same PDs
    np.testing.assert_array_equal(cloudpickle.loads(cloudpickle.dumps(model)).predict_pd(test), expected)
    np.testing.assert_array_equal(pickle.loads(pickle.dumps(model)).predict_pd(test), expected)
    np.testing.assert_array_equal(refit.predict_pd(test), expected, err_msg="same seed, same model")


def test_absent_feature_column_is_named(scorecard: CreditModel) -> None:
    # Given a frame without the income column / Then the error names it
    with pytest.raises(OrchardError, match="income"):
        scorecard.predict_pd(pd.DataFrame({"missed_payments_12m": [1], "employment": ["gig"]}))


def test_more_missed_payments_never_lower_scorecard_pd(scorecard: CreditModel) -> None:
    # Given one applicant varied from 0 to 12 late payments, everything else fixed
    rows = pd.DataFrame({"missed_payments_12m": np.arange(13), "income": 3000.0, "employment": "salaried"})
    # When scored / Then the PD never decreases (and the score never increases)
    pd_values = scorecard.predict_pd(rows)
    assert (np.diff(pd_values) >= 0).all(), f"PD must be non-decreasing in late payments: {pd_values}"
    assert pd_values[-1] > pd_values[0], "late payments matter"


def test_monotone_lightgbm_never_lowers_pd_with_more_missed_payments(train: pd.DataFrame) -> None:
    # Given LightGBM constrained to be increasing in late payments, and applicants across the income range
    model = train_lightgbm(train, "bad", FEATURES, CATEGORICAL, seed=7, increasing=("missed_payments_12m",))
    for income in (800.0, 3000.0, 9000.0, np.nan):
        for employment in ("salaried", "gig"):
            rows = pd.DataFrame(
                {"missed_payments_12m": np.arange(13), "income": income, "employment": employment}
            )
            # When each is varied from 0 to 12 late payments / Then the PD never decreases
            pd_values = model.predict_pd(rows)
            assert (np.diff(pd_values) >= 0).all(), f"{income}/{employment}: {pd_values}"
    assert model.predict_pd(rows)[-1] > model.predict_pd(rows)[0], "late payments matter"


def test_monotone_constraint_must_name_a_numeric_feature(train: pd.DataFrame) -> None:
    with pytest.raises(OrchardError, match="employment"):
        train_lightgbm(train, "bad", FEATURES, CATEGORICAL, seed=7, increasing=("employment",))


def test_scorecard_points_add_up_to_the_score(scorecard: CreditModel, train: pd.DataFrame) -> None:
    # Given the scorecard's points table / When a row's points are summed / Then they equal the model score
    card = scorecard.estimator
    assert isinstance(card, Scorecard)
    sample = train.head(50)
    np.testing.assert_allclose(card.points(sample).sum(axis=1), scorecard.score(sample), atol=1e-6)
    table = card.points_table()
    assert {"missing", "unseen level"} <= set(table["bin"]), (
        "categorical features have unseen and missing bins"
    )
    assert table.groupby("feature")["count"].sum().eq(len(train)).all(), "every training row is in one bin"


def test_scorecard_round_trips_through_json(scorecard: CreditModel) -> None:
    # Given the scorecard serialised to JSON / Then the rebuilt one predicts identically
    card = scorecard.estimator
    assert isinstance(card, Scorecard)
    rebuilt = Scorecard.from_dict(json.loads(json.dumps(card.to_dict())))
    test = applicants(200, seed=3)
    np.testing.assert_allclose(
        rebuilt.predict_pd(test[FEATURES]), card.predict_pd(test[FEATURES]), rtol=1e-12
    )


@pytest.mark.parametrize(
    ("mutate", "match"),
    [
        (lambda d: d.assign(bad=np.nan), "missing"),
        (lambda d: d.assign(bad=0), "single class"),
        (lambda d: d.assign(bad=2), "0 \\(good\\) or 1"),
        (lambda d: d.drop(columns="income"), "income"),
    ],
)
def test_invalid_training_frames_raise(mutate, match: str) -> None:  # type: ignore[no-untyped-def]
    # Given a broken training frame / Then both trainers refuse it with a message naming the problem
    data = mutate(applicants(200))
    for trainer in (train_scorecard, train_lightgbm):
        with pytest.raises(OrchardError, match=match):
            trainer(data, "bad", FEATURES, CATEGORICAL, seed=0)


def test_categorical_must_be_a_feature() -> None:
    with pytest.raises(OrchardError, match="not in the feature list"):
        train_scorecard(applicants(200), "bad", ["income"], ["employment"], seed=0)


def test_lightgbm_is_platt_calibrated_on_held_out_scores() -> None:
    # Given a rare, weakly predictable event (~3%: where boosted trees are overconfident)
    rng = np.random.default_rng(3)
    n = 6000
    frame = pd.DataFrame(
        {
            "missed_payments_12m": rng.integers(0, 13, n),
            "income": rng.lognormal(8.0, 0.5, n),
            "employment": rng.choice(["salaried", "gig"], n),
        }
    )
    logit = -4.0 + 0.12 * frame["missed_payments_12m"] - 0.3 * (np.log(frame["income"]) - 8.0)
    frame["bad"] = (rng.random(n) < 1 / (1 + np.exp(-logit))).astype(int)
    train, fresh = frame.iloc[:4000], frame.iloc[4000:]
    # When LightGBM is trained (calibration fitted on held-out validation raw scores)
    model = train_lightgbm(train, "bad", FEATURES, CATEGORICAL, seed=7)
    slope, intercept = model.estimator.calibration
    # Then the raw scores are shrunk (slope < 1) and fresh applicants' PDs are calibrated band by band
    assert 0 < slope < 1, (slope, intercept)
    pd_fresh = model.predict_pd(fresh)
    lowest = pd_fresh <= np.quantile(pd_fresh, 0.2)
    assert abs(pd_fresh.mean() - fresh["bad"].mean()) < 0.01
    assert abs(pd_fresh[lowest].mean() - fresh["bad"][lowest].mean()) < 0.02


def test_calibration_never_reverses_the_order_of_a_model_without_signal() -> None:
    # Given held-out raw scores that rank the labels backwards (Platt's slope would come out negative)
    rng = np.random.default_rng(12)
    raw = rng.normal(size=3000)
    y = (rng.random(3000) < 1 / (1 + np.exp(3.0 + 0.5 * raw))).astype(int)
    # When Platt scaling is fitted / Then it keeps the order (slope 1) and only shifts the level
    slope, shift = platt_of(raw, y)
    assert slope == 1.0
    assert abs(calibrated(raw, (slope, shift)).mean() - y.mean()) < 1e-6
    # And end to end: labels unrelated to the features, a model increasing in late payments
    frame = applicants(3000, seed=5).assign(bad=(rng.random(3000) < 0.04).astype(int))
    model = train_lightgbm(frame, "bad", FEATURES, CATEGORICAL, seed=7, increasing=("missed_payments_12m",))
    rows = pd.DataFrame({"missed_payments_12m": np.arange(13), "income": 3000.0, "employment": "salaried"})
    # Then more late payments never lower the PD, and the level matches the event rate
    assert model.estimator.calibration[0] > 0
    assert (np.diff(model.predict_pd(rows)) >= 0).all()
    assert abs(model.predict_pd(frame).mean() - frame["bad"].mean()) < 0.01


def test_lightgbm_is_tuned_per_fit_with_early_stopping(lightgbm: CreditModel) -> None:
    # Given the module's model (4,000 rows, hundreds of bads) / Then every grid candidate was early-stopped on
    # the validation cut and the one with the best validation AUC is the model kept
    trials = lightgbm.params["tuning"]
    assert len(trials) == len(TUNING_GRID)
    assert all(0 < t["trees"] < TUNING_BASE["n_estimators"] for t in trials), trials
    best = max(trials, key=lambda t: t["valid_auc"])
    assert lightgbm.params["trees"] == best["trees"]
    assert lightgbm.params["num_leaves"] == best["num_leaves"]


def test_small_data_gets_fixed_parameters() -> None:
    # Given fewer bads than a validation cut needs / Then no search runs and the fixed parameters are used
    frame = applicants(1000, seed=2).assign(bad=(np.random.default_rng(2).random(1000) < 0.03).astype(int))
    assert 0 < frame["bad"].sum() < TUNING_MIN_BADS
    model = train_lightgbm(frame, "bad", FEATURES, CATEGORICAL, seed=7)
    assert model.params["tuning"] == []
    assert model.params["trees"] == LIGHTGBM_PARAMS["n_estimators"]


def test_a_search_without_signal_falls_back_to_the_fixed_parameters() -> None:
    # Given enough bads to search, but labels unrelated to every feature
    rows = 3000
    frame = applicants(rows, seed=4).assign(bad=(np.random.default_rng(4).random(rows) < 0.05).astype(int))
    assert frame["bad"].sum() >= TUNING_MIN_BADS
    model = train_lightgbm(frame, "bad", FEATURES, CATEGORICAL, seed=7)
    # Then the search ran and every candidate stopped at once (no tree the validation cut confirms) ...
    trials = model.params["tuning"]
    assert len(trials) == len(TUNING_GRID) and all(t["trees"] <= TUNING_MIN_TREES for t in trials), trials
    # ... and the model kept is the fixed-parameter one, calibrated to the event rate
    assert model.params["trees"] == LIGHTGBM_PARAMS["n_estimators"]
    assert abs(model.predict_pd(frame).mean() - frame["bad"].mean()) < 0.01
