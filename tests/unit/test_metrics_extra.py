"""Unit tests of WOE/IV and score PSI, by hand and against independent code."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from scipy.stats import ks_2samp
from sklearn.metrics import roc_auc_score

from orchard.credit.metrics import (
    auc,
    information_value,
    ks,
    score_psi,
    woe_iv,
)
from orchard.credit.psi import psi_reference
from orchard.credit.scorecard import train_scorecard
from orchard.errors import OrchardError
from tests.conftest import GERMAN_CREDIT


def test_woe_and_iv_by_hand() -> None:
    # Given goods (40, 60) and bads (10, 30): shares (.4, .6) and (.25, .75)
    woe, iv = woe_iv([40, 60], [10, 30])
    # Then WOE = ln(.4/.25), ln(.6/.75) and IV = .15 ln 1.6 - .15 ln .8
    np.testing.assert_allclose(woe, [math.log(1.6), math.log(0.8)], rtol=1e-12)
    assert iv == pytest.approx(0.15 * math.log(1.6) - 0.15 * math.log(0.8), rel=1e-12)


def test_pure_bin_needs_smoothing_and_empty_bins_add_nothing() -> None:
    with pytest.raises(OrchardError, match="infinite"):
        woe_iv([10, 0], [5, 5])
    woe, iv = woe_iv([10, 0, 0], [5, 5, 0], smoothing=0.5)
    assert np.isfinite(woe).all() and woe[2] == 0.0 and iv > 0
    with pytest.raises(OrchardError, match="both goods and bads"):
        woe_iv([1, 2], [0, 0])


def test_information_value_matches_a_crosstab_on_german_credit() -> None:
    # Given German credit's checking-account status / Then IV equals an independent pandas computation
    data = pd.read_csv(GERMAN_CREDIT)
    y = (data["creditability"] == "bad").astype(int)
    column = data["status_of_existing_checking_account"]
    counts = pd.crosstab(column, y)
    good_share = counts[0] / counts[0].sum()
    bad_share = counts[1] / counts[1].sum()
    expected = float(((good_share - bad_share) * np.log(good_share / bad_share)).sum())
    assert information_value(column.to_numpy(), y.to_numpy()) == pytest.approx(expected, rel=1e-12)
    assert expected > 0.3, "checking status is the strongest German credit feature"


def test_score_psi_matches_the_reference_loop() -> None:
    rng = np.random.default_rng(0)
    ref = rng.normal(550, 30, 2000)
    cur = rng.normal(540, 35, 1500)
    assert score_psi(ref, ref) == pytest.approx(0.0, abs=1e-12)
    assert score_psi(ref, cur) == pytest.approx(psi_reference(ref, cur), rel=1e-9)


def test_scorecard_metrics_match_sklearn_and_scipy_on_german_credit() -> None:
    # Given a scorecard's PDs on German credit / Then AUC = sklearn's and KS = scipy's ks_2samp
    data = pd.read_csv(GERMAN_CREDIT)
    data["bad"] = (data["creditability"] == "bad").astype(int)
    features = ["status_of_existing_checking_account", "duration_in_month", "credit_history", "credit_amount"]
    model = train_scorecard(
        data, "bad", features, ["status_of_existing_checking_account", "credit_history"], 7
    )
    p = model.predict_pd(data)
    y = data["bad"].to_numpy()
    assert auc(y, p) == pytest.approx(roc_auc_score(y, p), abs=1e-12)
    assert ks(y, p) == pytest.approx(ks_2samp(p[y == 1], p[y == 0]).statistic, abs=1e-12)
