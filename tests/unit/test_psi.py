"""Unit tests of PSI/CSI: frozen decile bins, the vectorised kernel against the plain loop, edge cases."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest

from orchard.credit.psi import PSI_EPSILON, ReferenceProfile, decile_edges, psi, psi_reference
from orchard.errors import OrchardError

TOL = 1e-9


def _check_against_reference(
    ref: pd.DataFrame, cur: pd.DataFrame, numeric: list[str], categorical: list[str]
):
    profile = ReferenceProfile.fit(ref, numeric, categorical)
    fast = psi(profile, cur)
    for column in numeric:
        slow = psi_reference(ref[column].tolist(), cur[column].tolist(), "numeric")
        assert fast[column] == pytest.approx(slow, abs=TOL), f"numeric column {column} differs from the loop"
    for column in categorical:
        slow = psi_reference(ref[column].tolist(), cur[column].tolist(), "categorical")
        assert fast[column] == pytest.approx(slow, abs=TOL), (
            f"categorical column {column} differs from the loop"
        )
    return fast


def test_decile_edges_by_hand() -> None:
    # Given 0..10 / Then the deciles are 1..9; duplicates collapse; all-missing gives no edge
    assert decile_edges(np.arange(11.0)) == [float(i) for i in range(1, 10)], "deciles of 0..10"
    assert decile_edges(np.array([5.0, 5.0, 5.0, np.nan])) == [5.0], "a constant column has one edge"
    assert decile_edges(np.array([np.nan, np.nan])) == [], "all-missing has no edge"


def test_intervals_are_right_closed_with_a_missing_bin() -> None:
    # Given bins frozen on 0..10 (edges 1..9)
    profile = ReferenceProfile.fit(pd.DataFrame({"x": np.arange(11.0)}), ["x"], [])
    column = profile.column("x")
    # Then a value on an edge falls in the bin that edge closes; outer bins are open; NaN is its own bin
    index = column.bin_index(np.array([-1e9, 1.0, 1.0000001, 9.0, 1e9, np.nan]))
    assert index.tolist() == [0, 0, 1, 8, 9, 10], "(-inf,1], (1,2] ... (9,inf), missing"


def test_hand_computed_categorical_psi() -> None:
    # Given 50/50 reference and 75/25 current
    ref = pd.DataFrame({"c": ["a"] * 50 + ["b"] * 50})
    cur = pd.DataFrame({"c": ["a"] * 75 + ["b"] * 25})
    # Then PSI = 0.25 ln 1.5 + 0.25 ln 2 (unseen and missing bins are empty on both sides: contribute 0)
    expected = 0.25 * math.log(1.5) + 0.25 * math.log(2.0)
    assert psi(ReferenceProfile.fit(ref, [], ["c"]), cur)["c"] == pytest.approx(expected, abs=1e-12)


def test_identical_batch_has_zero_psi() -> None:
    # Given the reference itself as the current batch / Then every PSI is exactly 0
    rng = np.random.default_rng(3)
    ref = pd.DataFrame({"x": rng.normal(size=400), "c": rng.choice(["a", "b", "c"], 400)})
    result = psi(ReferenceProfile.fit(ref, ["x"], ["c"]), ref)
    assert result == {"x": 0.0, "c": 0.0}, "no shift, no PSI"


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_matches_loop_on_random_data(seed: int) -> None:
    # Given random shifted data with missing values
    rng = np.random.default_rng(seed)
    ref = pd.DataFrame(
        {
            "x": rng.normal(0, 1, 600),
            "y": rng.exponential(2.0, 600),
            "c": rng.choice(["a", "b", "c", None], 600),
        }
    )
    ref.loc[rng.random(600) < 0.1, "x"] = np.nan
    cur = pd.DataFrame(
        {
            "x": rng.normal(0.4, 1.3, 250),
            "y": rng.exponential(2.5, 250),
            "c": rng.choice(["a", "b", "d"], 250),
        }
    )
    # When computed both ways / Then they agree to 1e-9 and the shift is visible
    result = _check_against_reference(ref, cur, ["x", "y"], ["c"])
    assert result["x"] > 0.05, "a shifted normal has a positive PSI"


def test_matches_loop_on_adversarial_data() -> None:
    # Given a constant column, an all-missing reference, ties on the edges, infinities and a new category
    rng = np.random.default_rng(11)
    n_ref, n_cur = 300, 120
    ref = pd.DataFrame(
        {
            "constant": np.full(n_ref, 7.0),
            "all_missing": np.full(n_ref, np.nan),
            "ties": rng.integers(0, 4, n_ref).astype(float),
            "with_inf": np.r_[rng.normal(size=n_ref - 2), np.inf, -np.inf],
            "level": rng.choice(["x", "y"], n_ref),
        }
    )
    cur = pd.DataFrame(
        {
            "constant": rng.choice([6.0, 7.0, 8.0], n_cur),
            "all_missing": rng.normal(size=n_cur),
            "ties": rng.integers(0, 6, n_cur).astype(float),
            "with_inf": np.r_[rng.normal(size=n_cur - 1), np.nan],
            "level": rng.choice(["x", "new_level", None], n_cur),
        }
    )
    result = _check_against_reference(ref, cur, ["constant", "all_missing", "ties", "with_inf"], ["level"])
    # Then all values are finite, and the all-missing reference shows a large shift bounded by epsilon
    assert all(math.isfinite(v) for v in result.values()), "epsilon keeps every PSI finite"
    expected = (
        (1 - PSI_EPSILON) * math.log(1 / PSI_EPSILON) * 2
    )  # all mass moves from missing to one value bin
    assert result["all_missing"] == pytest.approx(expected, abs=TOL)


def test_all_missing_current_column() -> None:
    # Given a batch whose column is entirely missing / Then PSI is computed, not an error
    ref = pd.DataFrame({"x": np.arange(100.0)})
    cur = pd.DataFrame({"x": [np.nan] * 10})
    _check_against_reference(ref, cur, ["x"], [])


def test_profile_round_trips_through_json() -> None:
    # Given a profile serialised to JSON and read back
    rng = np.random.default_rng(5)
    ref = pd.DataFrame({"score": rng.normal(600, 50, 500), "c": rng.choice(["a", "b"], 500)})
    cur = pd.DataFrame({"score": rng.normal(620, 50, 200), "c": rng.choice(["a", "b"], 200)})
    profile = ReferenceProfile.fit(ref, ["score"], ["c"])
    restored = ReferenceProfile.from_dict(json.loads(json.dumps(profile.to_dict())))
    # Then it gives the same PSI with only the new batch at hand (score PSI is psi on a 'score' column)
    assert psi(restored, cur) == psi(profile, cur), "a stored profile reproduces the PSI"
    assert restored.n_reference == 500


def test_empty_batch_and_missing_column_raise() -> None:
    profile = ReferenceProfile.fit(pd.DataFrame({"x": [1.0, 2.0, 3.0]}), ["x"], [])
    # Given an empty batch / Then an error naming the problem
    with pytest.raises(OrchardError, match="empty"):
        psi(profile, pd.DataFrame({"x": []}))
    with pytest.raises(OrchardError, match="empty"):
        psi_reference([1.0], [])
    # Given a batch without the profiled column / Then the error names it
    with pytest.raises(OrchardError, match="column\\(s\\) x"):
        psi(profile, pd.DataFrame({"other": [1.0]}))


def test_fit_rejects_bad_input() -> None:
    df = pd.DataFrame({"x": [1.0, 2.0], "s": ["a", "b"]})
    with pytest.raises(OrchardError, match="missing column"):
        ReferenceProfile.fit(df, ["nope"], [])
    with pytest.raises(OrchardError, match="numeric and categorical"):
        ReferenceProfile.fit(df, ["x"], ["x"])
    with pytest.raises(OrchardError, match="must be numeric"):
        ReferenceProfile.fit(df, ["s"], [])
