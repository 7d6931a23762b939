"""Recalibration to recent vintages: the early-to-target bridge, the composed map, and the recalibrated models."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from orchard.credit.metrics import auc
from orchard.credit.model import CreditModel, pd_to_score, train_lightgbm
from orchard.credit.recalibration import Line, fit_recalibration, logit, recalibrated
from orchard.credit.scorecard import train_scorecard
from orchard.errors import OrchardError
from orchard.lifecycle.recalibration import Plan, open_breach, plan, refit_due
from orchard.serving.scoring import ServedModel, score_frame
from tests.applicants import CATEGORICAL, FEATURES, applicant_log_odds, applicants


def _draw(rng: np.random.Generator, log_odds: np.ndarray) -> np.ndarray:
    return (rng.random(len(log_odds)) < 1 / (1 + np.exp(-log_odds))).astype(int)


def test_the_map_composes_the_bridge_and_the_recent_early_line() -> None:
    # Given champion log-odds z, and before the shock early = -1 + z and target = -2 + 1.2 z (both mature);
    # after it, early = -0.2 + z
    rng = np.random.default_rng(3)
    n = 200_000
    z_bridge, z_recent = rng.normal(-2, 1, n), rng.normal(-2, 1, n)
    fitted = fit_recalibration(
        z_bridge,
        _draw(rng, -1.0 + z_bridge),
        _draw(rng, -2.0 + 1.2 * z_bridge),
        z_recent,
        _draw(rng, -0.2 + z_recent),
    )
    # Then the bridge is target = g + d early with d = 1.2 / 1 and g = -2 - 1.2 * (-1) = -0.8, and the map is
    # target = -0.8 + 1.2 (-0.2 + z) = -1.04 + 1.2 z (to sampling error)
    assert fitted.bridge.slope == pytest.approx(1.2, abs=0.04) and fitted.bridge.intercept == pytest.approx(
        -0.8, abs=0.1
    )
    assert fitted.map.slope == pytest.approx(1.2, abs=0.04) and fitted.map.intercept == pytest.approx(
        -1.04, abs=0.1
    )
    # And the inverted bridge takes a target log-odds back to the early label's
    assert fitted.early_log_odds(fitted.bridge(np.array([-3.0, 0.5]))) == pytest.approx([-3.0, 0.5])
    # And the numbers round-trip through the stored form
    assert type(fitted).from_dict(fitted.to_dict()).map == fitted.map


@pytest.fixture(scope="module")
def pre_shock() -> pd.DataFrame:
    return applicants(6000, seed=1)


@pytest.fixture(scope="module")
def champion(pre_shock: pd.DataFrame) -> CreditModel:
    return train_lightgbm(pre_shock, "bad", FEATURES, CATEGORICAL, seed=7, name="pd")


@pytest.mark.parametrize("kind", ["lightgbm", "scorecard"])
def test_a_recalibrated_model_keeps_the_ranking_and_maps_the_log_odds(
    kind: str, champion: CreditModel, pre_shock: pd.DataFrame
) -> None:
    model = (
        champion if kind == "lightgbm" else train_scorecard(pre_shock, "bad", FEATURES, CATEGORICAL, 7, "pd")
    )
    frame = applicants(800, seed=2)
    line = Line(intercept=0.6, slope=0.8)
    # When the model is recalibrated through the line
    new = recalibrated(model, line)
    # Then its PD is the line applied to the old log-odds, so its ranking (and AUC) is the old one
    old_pd, new_pd = model.predict_pd(frame), new.predict_pd(frame)
    np.testing.assert_allclose(logit(new_pd), 0.6 + 0.8 * logit(old_pd), atol=1e-6)
    assert auc(frame["bad"], new_pd) == pytest.approx(auc(frame["bad"], old_pd), abs=1e-12)
    # And the old model is untouched, the line recorded on the new one
    np.testing.assert_array_equal(model.predict_pd(frame), old_pd)
    assert new.params["recalibration"] == {"intercept": 0.6, "slope": 0.8}
    # And the serving path (LightGBM's tree fast path, a scorecard's points) scores exactly what the model says
    scored = score_frame(ServedModel.build("pd", 2, new), frame)
    np.testing.assert_allclose(scored.pd, new_pd, atol=1e-12)
    if kind == "scorecard":
        np.testing.assert_allclose(new.score(frame), pd_to_score(new_pd), atol=1e-6)


def test_a_shock_is_recovered_from_early_labels_alone(champion: CreditModel, pre_shock: pd.DataFrame) -> None:
    # Given a lender whose early label (30+ in 3 months) has log-odds 1 + 0.9 t, t the target's (90+ in 6),
    # and a shock that raises every applicant's target log-odds by 0.8
    rng = np.random.default_rng(5)
    before, after = applicants(20_000, seed=11), applicants(20_000, seed=12, shift=0.8)
    t_before = applicant_log_odds(before)
    t_after = applicant_log_odds(after) + 0.8
    z_before, z_after = logit(champion.predict_pd(before)), logit(champion.predict_pd(after))
    # When the champion is recalibrated with the pre-shock bridge and the post-shock early labels only
    fitted = fit_recalibration(
        z_before, _draw(rng, 1 + 0.9 * t_before), before["bad"], z_after, _draw(rng, 1 + 0.9 * t_after)
    )
    adapted = recalibrated(champion, fitted.map)
    # Then on the post-shock target labels it is calibrated (mean PD vs bad rate) where the champion is not
    observed = after["bad"].mean()
    assert abs(adapted.predict_pd(after).mean() - observed) < 0.01, (
        adapted.predict_pd(after).mean(),
        observed,
    )
    assert observed - champion.predict_pd(after).mean() > 0.03, (
        "the shock raised the bad rate past the champion"
    )
    # And the map found is the shock: about +0.8 on the log-odds, slope about 1
    assert fitted.map.intercept == pytest.approx(0.8, abs=0.2) and fitted.map.slope == pytest.approx(
        1.0, abs=0.1
    )


def test_a_map_that_would_not_keep_the_ranking_or_lacks_events_is_refused(champion: CreditModel) -> None:
    rng = np.random.default_rng(9)
    z = rng.normal(-2, 1, 5000)
    good = _draw(rng, -1 + z)
    # a recent early label that the champion ranks backwards
    with pytest.raises(OrchardError, match=r"recent vintages, early label.*do not rank"):
        fit_recalibration(z, good, _draw(rng, -2 + z), z, _draw(rng, -1 - z))
    # too few events in the recent sample
    with pytest.raises(OrchardError, match="recent vintages, early label: 3 events"):
        fit_recalibration(z, good, _draw(rng, -2 + z), z[:200], np.r_[np.ones(3), np.zeros(197)].astype(int))
    # a line with a non-positive slope
    with pytest.raises(OrchardError, match="positive slope"):
        recalibrated(champion, Line(0.0, -0.5))


def test_the_open_breach_is_the_first_recorded_breach_no_fit_can_learn_from_yet() -> None:
    breaches = ["2020-03", "2020-04", "2020-06", "2020-08"]
    # a shock breached in 2020-03, monitoring calmed in 2020-05 and breached again: labels to 2020-02 are mature
    assert open_breach(breaches, ["2019-12", "2020-01", "2020-02"], fit_needs=3) == "2020-03"
    # one or two vintages since 2020-03 with mature labels are not enough for a fit: still open
    assert open_breach(breaches, ["2020-02", "2020-03", "2020-04"], fit_needs=3) == "2020-03"
    # three are: a fit learns 2020-03 and 2020-04 (a mature vintage); the breach left open is 2020-06
    assert open_breach(breaches, ["2020-03", "2020-04", "2020-05"], fit_needs=3) == "2020-06"
    assert open_breach(breaches, [f"2020-{m:02d}" for m in range(3, 12)], fit_needs=3) is None
    assert open_breach([], [], fit_needs=3) is None
    # breaches settled in an earlier month are not listed again: a listed one covered by their fit stays covered
    assert (
        open_breach(["2020-04", "2020-06"], ["2020-04", "2020-05"], fit_needs=3, after_learnt=True)
        == "2020-06"
    )
    assert open_breach(["2020-04", "2020-06"], ["2020-04", "2020-05"], fit_needs=3) == "2020-04"


def _cases(vintage: str, n: int, events: int, mature: bool = True, key: int = 0) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "application_id": [f"{vintage}-{key + i}" for i in range(n)],
            "vintage": vintage,
            "eligible": True,
            "mature": mature,
            "bad": [1] * events + [0] * (n - events),
        }
    )


def test_the_plan_fits_on_the_vintages_since_the_breach_holds_out_the_newest_and_bridges_before() -> None:
    # Given labels mature to 2020-02 and early labels mature to 2020-05; a breach since 2020-03
    target = pd.concat([_cases(v, 50, 12) for v in ("2019-11", "2019-12", "2020-01", "2020-02")])
    target = pd.concat([target, *(_cases(v, 50, 0, mature=False) for v in ("2020-03", "2020-04", "2020-05"))])
    early = pd.concat(
        [_cases(v, 50, 20) for v in ("2019-11", "2019-12", "2020-01", "2020-02", "2020-03", "2020-04")]
    )
    early = pd.concat([early, _cases("2020-05", 50, 15)])
    # When planned for two fitted vintages and one held out
    found = plan(target, early, "2020-03", 3)
    # Then it fits on 2020-03..04, holds out 2020-05 and bridges on the latest three with both labels mature
    assert found == Plan(["2020-03", "2020-04"], "2020-05", ["2019-12", "2020-01", "2020-02"]), found
    # And it says why when a sample is too thin, or a vintage is missing
    thin = pd.concat(
        [
            early[early["vintage"] < "2020-03"],
            _cases("2020-03", 50, 4),
            _cases("2020-04", 50, 3),
            _cases("2020-05", 50, 5),
        ]
    )
    assert plan(target, thin, "2020-03", 3) == (
        "the early labels of 2020-03..2020-04 hold 7 events and 93 non-events; a recalibration needs 10 of each"
    )
    assert plan(target, early[early["vintage"] < "2020-05"], "2020-03", 3) == (
        "2 vintage(s) since 2020-03 have mature early labels, a recalibration needs 3"
    )


def test_a_champion_that_has_not_learnt_a_settled_breach_is_refit() -> None:
    vintages = ["2020-03", "2020-04", "2020-05"]
    # Given a fitted champion made at 2020-03, and the breach of 2020-03 learnable from 2020-11
    learnt = ("2020-03", "2020-11")
    # Then a fit is due, saying so; not for a champion fitted at or after 2020-11, nor before any breach settled
    why = refit_due(2, "2020-03", None, vintages, 3, learnt)
    assert why is not None and "fitted at 2020-03" in why and "breach of 2020-03" in why and "2020-11" in why
    assert refit_due(3, "2020-11", None, vintages, 3, learnt) is None
    assert refit_due(2, "2020-03", None, vintages, 3, None) is None
    # And a recalibrated champion is refit once enough vintages since its own breach have mature labels
    assert "is a recalibration" in str(refit_due(4, "2020-09", "2020-03", vintages, 3, learnt))
    assert refit_due(4, "2020-09", "2020-04", vintages, 3, learnt) is None
