"""Unit tests of AUC, KS, Gini, the decile table and evaluate()."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from scipy.stats import ks_2samp
from sklearn.metrics import roc_auc_score

from orchard.credit.metrics import auc, decile_table, evaluate, gini, ks
from orchard.errors import OrchardError
from tests.conftest import GERMAN_CREDIT


def test_hand_computed_auc_ks_gini() -> None:
    # Given 2 goods (0.1, 0.4) and 2 bads (0.35, 0.8): 3 of the 4 bad/good pairs are ordered right
    y = [0, 0, 1, 1]
    p = [0.1, 0.4, 0.35, 0.8]
    # Then AUC = 3/4, Gini = 0.5 and the largest CDF gap is 0.5 (at 0.1 and at 0.4)
    assert auc(y, p) == pytest.approx(0.75), "3 of 4 pairs ordered"
    assert gini(y, p) == pytest.approx(0.5), "gini = 2 * auc - 1"
    assert ks(y, p) == pytest.approx(0.5), "largest gap between the bad and good score CDFs"


def test_ties_count_half() -> None:
    # Given a bad and a good with the same score / Then the pair counts half and KS is zero
    assert auc([0, 1], [0.5, 0.5]) == pytest.approx(0.5), "a tied pair counts one half"
    assert ks([0, 1], [0.5, 0.5]) == pytest.approx(0.0), "identical distributions have no gap"


def _german_scores() -> tuple[np.ndarray, np.ndarray]:
    data = pd.read_csv(GERMAN_CREDIT)
    y = (data["creditability"] == "bad").astype(int).to_numpy()
    # a crude risk score with many ties: long, large loans are riskier
    score = data["duration_in_month"].to_numpy() / 72 + data["credit_amount"].round(-3).to_numpy() / 20_000
    return y, score


def test_matches_sklearn_and_scipy_on_german_credit() -> None:
    # Given the German credit data and a tied score
    y, score = _german_scores()
    # When evaluated / Then AUC equals sklearn's and KS equals scipy's two-sample statistic
    assert auc(y, score) == pytest.approx(roc_auc_score(y, score), abs=1e-12), "AUC as sklearn"
    expected_ks = ks_2samp(score[y == 1], score[y == 0]).statistic
    assert ks(y, score) == pytest.approx(expected_ks, abs=1e-12), "KS as scipy.stats.ks_2samp"


def test_decile_table_orders_riskiest_first() -> None:
    # Given 100 distinct scores where the top 10 are all bad and the rest good
    p = np.linspace(0.01, 0.99, 100)
    y = (p > p[89]).astype(int)
    # When tabulated
    table = decile_table(y, p)
    # Then 10 deciles of 10, decile 1 holds the highest scores and all the bads
    assert list(table["decile"]) == list(range(1, 11))
    assert (table["count"] == 10).all(), "equal-sized deciles for distinct scores"
    assert table.loc[0, "min_score"] == pytest.approx(p[90]), "decile 1 starts at the 10th-highest score"
    assert table.loc[0, "bad_rate"] == 1.0 and table["n_bad"].iloc[1:].sum() == 0
    assert table["max_score"].is_monotonic_decreasing, "deciles run from riskiest to safest"


def test_decile_table_keeps_ties_together() -> None:
    # Given half the scores tied at 0.9 / Then the tied scores share one decile
    p = np.r_[np.full(50, 0.9), np.linspace(0.1, 0.5, 50)]
    y = np.r_[np.ones(25), np.zeros(75)]
    table = decile_table(y, p)
    tied = table[table["max_score"] == 0.9]
    assert len(tied) == 1 and int(tied["count"].iloc[0]) == 50, "equal scores never split across deciles"
    assert int(table["count"].sum()) == 100, "every row is in a decile"


def test_evaluate_and_to_dict_is_json() -> None:
    # Given the German data / When evaluated
    y, score = _german_scores()
    result = evaluate(y, score)
    # Then counts, rates and metrics agree and the dict is JSON-serialisable
    assert result.n == 1000 and result.n_bad == int(y.sum())
    assert result.bad_rate == pytest.approx(y.mean())
    assert result.gini == pytest.approx(2 * result.auc - 1)
    as_dict = json.loads(json.dumps(result.to_dict()))
    assert as_dict["auc"] == pytest.approx(result.auc)
    assert sum(d["count"] for d in as_dict["deciles"]) == 1000, "deciles cover the sample"


@pytest.mark.parametrize(
    ("y", "p", "match"),
    [
        ([0, 0, 0], [0.1, 0.2, 0.3], "single class"),
        ([0, 1, np.nan], [0.1, 0.2, 0.3], "missing"),
        ([0, 1], [0.1, np.nan], "missing"),
        ([0, 1], [0.1, 0.2, 0.3], "equal length"),
        ([0, 2], [0.1, 0.2], "0 \\(good\\) or 1"),
        ([], [], "empty"),
    ],
)
def test_invalid_inputs_raise(y: list[float], p: list[float], match: str) -> None:
    # Given labels/predictions that make the metrics undefined / Then a clear error
    with pytest.raises(OrchardError, match=match):
        evaluate(y, p)
