"""Unit tests of the scorecard engine: scaling, points, monotone behaviour, selection, bands, serialisation."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from orchard.credit.metrics import auc
from orchard.credit.model import CreditModel
from orchard.credit.scorecard import Scorecard, ScoreScaling, scorecard_of, train_scorecard
from orchard.credit.selection import SelectionConfig, filter_by_iv, prune_correlated
from orchard.errors import OrchardError
from tests.applicants import CATEGORICAL, FEATURES, applicants
from tests.conftest import GERMAN_CREDIT


@pytest.fixture(scope="module")
def model() -> CreditModel:
    return train_scorecard(
        applicants(5000),
        "bad",
        FEATURES,
        CATEGORICAL,
        seed=3,
        selection=SelectionConfig(mode="parsimonious"),
    )


def test_scaling_puts_600_at_50_to_1_and_20_points_doubles_the_odds() -> None:
    scaling = ScoreScaling()
    logits = np.log([1 / 50, 1 / 100, 1 / 25])  # bad odds
    np.testing.assert_allclose(scaling.score_of_logit(logits), [600.0, 620.0, 580.0], atol=1e-9)
    custom = ScoreScaling(base_score=500, base_odds=20, pdo=40)
    np.testing.assert_allclose(custom.score_of_logit(np.log([1 / 20, 1 / 40])), [500.0, 540.0], atol=1e-9)
    np.testing.assert_allclose(custom.pd_of_score(np.array([500.0])), [1 / 21], rtol=1e-12)
    with pytest.raises(OrchardError, match="positive"):
        ScoreScaling(pdo=0)


def test_selection_drops_the_noise_feature(model: CreditModel) -> None:
    # Given a noise column among the candidates / Then selection drops it and says why
    card = scorecard_of(model)
    assert "noise" not in model.features, f"noise is not selected: {model.features}"
    assert "noise" in card.selection["dropped"], card.selection
    assert {"missed_payments_12m", "income"} <= set(model.features)
    assert card.selection["steps"], "stepwise (k-fold CV) ran and recorded its steps"


def test_points_add_up_to_the_score_and_the_score_matches_the_pd(model: CreditModel) -> None:
    card = scorecard_of(model)
    sample = applicants(300, seed=1)
    scores = model.score(sample)
    np.testing.assert_allclose(card.points(sample).sum(axis=1), scores, atol=1e-9)
    np.testing.assert_allclose(card.scaling.pd_of_score(scores), model.predict_pd(sample), rtol=1e-9)
    table = card.points_table()
    assert {"feature", "bin", "woe", "points", "points_rounded"} <= set(table.columns)


def test_monotone_features_keep_monotone_points(model: CreditModel) -> None:
    # Given the numeric features binned with a monotone trend / Then their points are monotone across bins
    table = scorecard_of(model).points_table()
    for feature in ("missed_payments_12m", "income"):
        values = table[(table["feature"] == feature) & (table["bin"] != "missing")]["points"].to_numpy()
        steps = np.diff(values)
        assert (steps <= 1e-9).all() or (steps >= -1e-9).all(), f"{feature} points monotone: {values}"
    missed = table[(table["feature"] == "missed_payments_12m") & (table["bin"] != "missing")]["points"]
    assert missed.iloc[0] > missed.iloc[-1], "fewer missed payments earn more points"


def test_more_missed_payments_never_lower_the_predicted_risk(model: CreditModel) -> None:
    # Given one applicant with 0..20 missed payments, all else fixed (also beyond the training range)
    rows = pd.DataFrame(
        {"missed_payments_12m": np.arange(21), "income": 3000.0, "employment": "salaried", "noise": 0.0}
    )
    pd_values = model.predict_pd(rows)
    # Then the PD never decreases
    assert (np.diff(pd_values) >= 0).all(), f"PD non-decreasing in missed payments: {pd_values}"
    assert pd_values[-1] > pd_values[0]


def test_bands_order_scores_a_safest(model: CreditModel) -> None:
    card = scorecard_of(model)
    sample = applicants(2000, seed=2)
    bands = card.band_of(model.score(sample))
    rates = pd.Series(sample["bad"].to_numpy()).groupby(bands).mean()
    assert list(rates.index) == ["A", "B", "C", "D", "E"], rates
    assert rates["A"] < rates["E"], f"band A is safer than E: {rates.to_dict()}"
    assert list(card.bands_table()["band"]) == ["A", "B", "C", "D", "E"]


def test_scorecard_round_trips_through_json(model: CreditModel) -> None:
    card = scorecard_of(model)
    rebuilt = Scorecard.from_dict(json.loads(json.dumps(card.to_dict())))
    sample = applicants(100, seed=4)
    np.testing.assert_allclose(rebuilt.score_points(sample), card.score_points(sample), rtol=1e-12)
    assert rebuilt.band_edges == card.band_edges
    with pytest.raises(OrchardError, match="schema version"):
        Scorecard.from_dict({**card.to_dict(), "schema_version": 0})


def test_iv_filter_and_correlation_pruning() -> None:
    # Given IVs and a WOE frame where b duplicates a / Then c goes for IV, b for correlation with a
    kept, dropped = filter_by_iv({"a": 0.3, "b": 0.2, "c": 0.01}, 0.02)
    assert kept == ["a", "b"] and "c" in dropped
    rng = np.random.default_rng(0)
    a = rng.normal(size=200)
    woe = pd.DataFrame({"a": a, "b": a * 2 + 0.01 * rng.normal(size=200), "d": rng.normal(size=200)})
    kept, dropped = prune_correlated(woe, {"a": 0.3, "b": 0.2, "d": 0.1}, 0.7)
    assert kept == ["a", "d"] and "with a" in dropped["b"], dropped


def test_stepwise_on_an_out_of_time_holdout() -> None:
    # Given a holdout sample / Then stepwise judges candidates on it and keeps the informative features
    model = train_scorecard(
        applicants(3000),
        "bad",
        FEATURES,
        CATEGORICAL,
        seed=3,
        selection=SelectionConfig(mode="parsimonious", metric="ks"),
        holdout=applicants(1500, seed=8),
    )
    steps = scorecard_of(model).selection["steps"]
    assert steps and "ks" in steps[0], steps
    assert steps[0]["added"] == "missed_payments_12m", "the strongest feature enters first"


def test_nothing_predictive_is_a_clear_error() -> None:
    data = applicants(800).assign(bad=np.random.default_rng(1).integers(0, 2, 800))
    with pytest.raises(OrchardError, match="no feature reaches IV"):
        train_scorecard(data, "bad", ["noise"], [], seed=0, selection=SelectionConfig(min_iv=0.05))


def test_scorecard_of_refuses_other_models() -> None:
    with pytest.raises(OrchardError, match="not a scorecard"):
        scorecard_of("lightgbm")  # type: ignore[arg-type]


def test_german_credit_scorecard_ranks_out_of_sample() -> None:
    # Given German credit split 70/30 at random / When a selected scorecard is fitted on the 70 %
    train, test, features, categorical = _german_split()
    model = train_scorecard(train, "bad", features, categorical, seed=7, selection=SelectionConfig())
    # Then it separates goods from bads out of sample and its table covers every selected feature
    area = auc(test["bad"], model.predict_pd(test))
    assert area > 0.72, f"German credit holdout AUC {area:.3f}"
    assert set(scorecard_of(model).points_table()["feature"]) == set(model.features)


def _german_split() -> tuple[pd.DataFrame, pd.DataFrame, list[str], list[str]]:
    data = pd.read_csv(GERMAN_CREDIT)
    data["bad"] = (data["creditability"] == "bad").astype(int)
    features = [c for c in data.columns if c not in ("creditability", "bad")]
    categorical = [c for c in features if data[c].dtype == object]
    holdout = np.random.default_rng(7).permutation(len(data))[:300]
    return data.drop(index=data.index[holdout]), data.iloc[holdout], features, categorical


def test_max_auc_keeps_every_feature_past_the_filters() -> None:
    # Given German credit / When the default (max_auc) and the parsimonious selections are fitted
    train, test, features, categorical = _german_split()
    wide = train_scorecard(train, "bad", features, categorical, seed=7, selection=SelectionConfig())
    narrow = train_scorecard(
        train, "bad", features, categorical, seed=7, selection=SelectionConfig(mode="parsimonious")
    )
    card = scorecard_of(wide)
    # Then max_auc runs no stepwise and drops only for IV, near-duplicates or a wrong-signed coefficient
    assert card.selection["steps"] == []
    reasons = card.selection["dropped"].values()
    assert all(r.startswith(("IV ", "|corr|", "wrong-signed")) for r in reasons), reasons
    assert set(narrow.features) < set(wide.features), (narrow.features, wide.features)
    # And keeping them costs no discrimination on the holdout
    wide_auc, narrow_auc = (auc(test["bad"], m.predict_pd(test)) for m in (wide, narrow))
    assert wide_auc >= narrow_auc, (wide_auc, narrow_auc)


def test_max_features_caps_max_auc_by_iv() -> None:
    train, _, features, categorical = _german_split()
    model = train_scorecard(
        train, "bad", features, categorical, seed=7, selection=SelectionConfig(max_features=4)
    )
    iv = scorecard_of(model).selection["candidate_iv"]
    assert len(model.features) <= 4
    assert max(iv, key=iv.get) in model.features, "the strongest feature is kept first"


def test_unknown_selection_mode_is_named() -> None:
    with pytest.raises(OrchardError, match="selection mode must be one of max_auc, parsimonious"):
        SelectionConfig(mode="greedy")  # type: ignore[arg-type]
