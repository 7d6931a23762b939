"""A model's `algorithm`: a fixed learner, or the better of LightGBM and the scorecard on the test sample only."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import numpy as np
import pandas as pd
import pytest

from orchard.lifecycle.training import choose_algorithm

Y = np.array([0, 0, 0, 0, 1, 1, 0, 1])
TEST = pd.DataFrame({"bad": Y, "x": np.arange(len(Y))})
RANKS = Y * 0.5 + np.linspace(0.0, 0.1, len(Y))  # ranks every bad above every good (AUC 1)


def _model(kind: str, pd_values: np.ndarray) -> Any:
    return SimpleNamespace(kind=kind, predict_pd=lambda frame: pd_values[: len(frame)])


GOOD_LIGHTGBM = _model("lightgbm", RANKS)
WEAK_LIGHTGBM = _model("lightgbm", np.full(len(Y), 0.3))
GOOD_SCORECARD = _model("scorecard", RANKS)
WEAK_SCORECARD = _model("scorecard", RANKS[::-1].copy())


@pytest.mark.parametrize(
    ("rule", "lightgbm", "scorecard", "chosen"),
    [
        ("lightgbm", WEAK_LIGHTGBM, GOOD_SCORECARD, "lightgbm"),
        ("scorecard", GOOD_LIGHTGBM, WEAK_SCORECARD, "scorecard"),
        ("best", WEAK_LIGHTGBM, GOOD_SCORECARD, "scorecard"),
        ("best", GOOD_LIGHTGBM, WEAK_SCORECARD, "lightgbm"),
        ("best", GOOD_LIGHTGBM, GOOD_SCORECARD, "lightgbm"),  # a tie keeps LightGBM
    ],
)
def test_the_registered_learner_follows_the_rule(
    rule: str, lightgbm: Any, scorecard: Any, chosen: str
) -> None:
    registered, baseline, why = choose_algorithm(rule, lightgbm, scorecard, TEST)
    assert registered.kind == chosen and baseline.kind != chosen, why
    assert rule in why and (rule != "best" or "test AUC" in why), why


def _frame(n: int = 1200, seed: int = 4) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    risk, noise = rng.normal(size=n), rng.normal(size=n)
    bad = rng.random(n) < 1 / (1 + np.exp(-(1.2 * risk - 1.0)))
    return pd.DataFrame({"case_id": np.arange(n), "risk": risk, "noise": noise, "bad": bad.astype(int)})


def _spec(**model: object) -> Any:
    from orchard.model_specs import spec_of
    from orchard.portfolio.spec import LabelDef, ModelDef

    entry = {
        "purpose": "a test PD",
        "population": {"source": "cases", "key": "case_id", "entity": "case_id"},
        "label": "bad",
        "views": ["case_fields"],
        "features": ["risk", "noise"],
        **model,
    }
    label = LabelDef.model_validate({"observed": {"column": "status", "bad_values": ["bad"]}})
    return spec_of("test_pd", ModelDef.model_validate(entry), label)


def test_a_models_trends_and_selection_reach_its_scorecard() -> None:
    from orchard.credit.scorecard import scorecard_of
    from orchard.lifecycle.training import fit_candidates

    frame = _frame()
    train, test = frame.iloc[:900], frame.iloc[900:]
    # Given no trends and no selection / Then the scorecard keeps both features
    plain = scorecard_of(fit_candidates(_spec(), train, test, 7).scorecard)
    assert plain.features == ["risk", "noise"], plain.features
    # Given selection with an IV floor above noise's / Then noise is dropped, naming the reason
    selective = _spec(selection={"min_iv": 0.05})
    chosen = scorecard_of(fit_candidates(selective, train, test, 7).scorecard)
    assert chosen.features == ["risk"] and "noise" in chosen.selection["dropped"], chosen.selection
    # Given risk forced descending against its (ascending) data / Then the forced bins carry no signal and the
    # scorecard drops risk, where the default trend kept it with several bins
    forced = scorecard_of(fit_candidates(_spec(trends={"risk": "descending"}), train, test, 7).scorecard)
    assert "risk" not in forced.features and "risk" in forced.selection["dropped"], forced.selection
    assert {b.feature: b for b in plain.binning.features}["risk"].n_value_bins > 2


def test_trends_on_a_categorical_or_unknown_feature_are_refused() -> None:
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match="trends apply to numeric features"):
        _spec(categorical=["noise"], trends={"noise": "ascending"})
    with pytest.raises(ValidationError, match="'age' is not among the model's features"):
        _spec(trends={"age": "ascending"})
