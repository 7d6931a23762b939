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
