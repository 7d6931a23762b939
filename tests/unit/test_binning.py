"""Unit tests of the scorecard binning artifact: monotone bins, missing/unseen bins, JSON, CSI on the same bins."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from orchard.credit.binning import (
    BINNING_SCHEMA_VERSION,
    MISSING_BIN,
    UNSEEN_BIN,
    Binning,
    fit_binning,
    fit_feature_binning,
)
from orchard.credit.psi import psi
from orchard.errors import OrchardError
from tests.applicants import applicants


def _sample(n: int = 3000, seed: int = 0) -> tuple[pd.DataFrame, np.ndarray]:
    """The shared applicants' features (missed payments named `missed`) and their labels."""
    frame = applicants(n, seed).rename(columns={"missed_payments_12m": "missed"})
    return frame[["missed", "income", "employment"]], frame["bad"].to_numpy()


@pytest.fixture(scope="module")
def binning() -> Binning:
    frame, y = _sample()
    return fit_binning(frame, y, ["missed", "income", "employment"], ["employment"], {"missed": "ascending"})


def test_monotone_trend_gives_monotone_event_rate_and_woe(binning: Binning) -> None:
    # Given missed payments binned with an ascending bad-rate constraint
    bins = binning.feature("missed")
    rates = bins.event_rates()[: bins.n_value_bins]
    woe = np.asarray(bins.woe[: bins.n_value_bins])
    # Then the bad rate never falls and the WOE (safer-is-higher) never rises across value bins
    assert bins.n_value_bins >= 3, f"missed payments is split into several bins: {bins.edges}"
    assert (np.diff(rates) >= 0).all(), f"bad rate ascending: {rates}"
    assert (np.diff(woe) <= 0).all(), f"WOE descending: {woe}"


def test_auto_trend_makes_income_monotone(binning: Binning) -> None:
    # Given income with the default auto ascending/descending trend / Then its bad rate falls with income
    bins = binning.feature("income")
    rates = bins.event_rates()[: bins.n_value_bins]
    assert (np.diff(rates) <= 0).all(), f"bad rate descending in income: {rates}"
    assert bins.count[-1] > 0, "the 5 % missing incomes have their own bin"


def test_every_row_lands_in_exactly_one_bin(binning: Binning) -> None:
    frame, _ = _sample()
    for bins in binning.features:
        assert sum(bins.count) == len(frame), f"{bins.feature}: counts cover all rows"
        assert len(bins.labels()) == bins.n_bins == len(bins.woe)


def test_numeric_bins_are_left_closed() -> None:
    # Given a split at 5 / Then 5 belongs to the bin on its right, 4.999 to the left, NaN to the missing bin
    rng = np.random.default_rng(1)
    x = rng.integers(0, 11, 4000).astype(float)
    y = (rng.random(4000) < np.where(x >= 5, 0.4, 0.1)).astype(int)
    bins = fit_feature_binning(pd.Series(x), y, "x", categorical=False, trend="ascending")
    assert 5.0 in bins.edges or any(4.0 < e <= 5.0 for e in bins.edges), f"a split near 5: {bins.edges}"
    edge = next(e for e in bins.edges if 4.0 < e <= 5.0)
    index = bins.bin_index(pd.Series([np.nextafter(edge, -np.inf), edge, np.nan]))
    assert index[1] == index[0] + 1, "a value equal to a split goes right ([a, b) bins)"
    assert index[2] == bins.n_bins - 1 and bins.labels()[-1] == MISSING_BIN


def test_categorical_unseen_and_missing_bins(binning: Binning) -> None:
    # Given a known level, an unseen level and a missing value
    bins = binning.feature("employment")
    index = bins.bin_index(pd.Series(["gig", "astronaut", None]))
    labels = bins.labels()
    # Then the unseen level and the missing value go to their own (neutral, empty) bins
    assert labels[index[1]] == UNSEEN_BIN and labels[index[2]] == MISSING_BIN
    assert bins.woe[index[1]] == 0.0, "an unseen level is neutral"
    assert "gig" in labels[index[0]]


def test_binning_round_trips_through_json_and_refuses_other_versions(binning: Binning) -> None:
    data = json.loads(json.dumps(binning.to_dict()))
    assert data["schema_version"] == BINNING_SCHEMA_VERSION
    rebuilt = Binning.from_dict(data)
    frame, _ = _sample(200, seed=5)
    pd.testing.assert_frame_equal(rebuilt.woe_frame(frame), binning.woe_frame(frame))
    with pytest.raises(OrchardError, match="schema version"):
        Binning.from_dict({**data, "schema_version": 99})


def test_csi_on_the_same_bins(binning: Binning) -> None:
    # Given the training sample itself and a sample where everyone missed more payments
    frame, _ = _sample()
    shifted = frame.assign(missed=frame["missed"] + 4)
    # Then CSI is 0 on the training data and large for the shifted feature only
    same = binning.csi(frame)
    assert all(v == pytest.approx(0.0, abs=1e-12) for v in same.values()), same
    moved = binning.csi(shifted)
    assert moved["missed"] > 0.25 and moved["income"] == pytest.approx(0.0, abs=1e-12), moved


def test_reference_profile_reproduces_csi_for_numeric_features(binning: Binning) -> None:
    # Given the monitoring profile built from the bins / Then orchard.credit.psi gives the same CSI for numerics
    frame, _ = _sample(1500, seed=9)
    current = frame.assign(missed=np.where(frame["missed"] > 3, frame["missed"] + 1, frame["missed"]))
    profile = binning.reference_profile()
    from_monitoring = psi(profile, current)
    from_bins = binning.csi(current)
    for feature in ("missed", "income"):
        assert from_monitoring[feature] == pytest.approx(from_bins[feature], rel=1e-12), feature
    assert set(from_monitoring) == {"missed", "income", "employment"}


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"monotone": {"missed": "upwards"}}, "unknown monotone trend"),
        ({"monotone": {"employment": "ascending"}}, "numeric features only"),
        ({"monotone": {"nope": "ascending"}}, "nope"),
    ],
)
def test_bad_binning_requests_are_named(kwargs: dict[str, object], match: str) -> None:
    frame, y = _sample(300)
    with pytest.raises(OrchardError, match=match):
        fit_binning(frame, y, ["missed", "income", "employment"], ["employment"], **kwargs)  # type: ignore[arg-type]


def test_constant_feature_has_a_single_value_bin() -> None:
    y = np.array([0, 1] * 50)
    bins = fit_feature_binning(pd.Series(np.ones(100)), y, "flat", categorical=False)
    assert bins.edges == [] and bins.iv == pytest.approx(0.0, abs=1e-12), "no split, no information"
