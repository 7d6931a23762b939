"""More unit tests of the PSI kernel: fast paths equal the plain loop, stored profiles, Parquet batches, errors."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from orchard.credit.psi import (
    PSI_EPSILON,
    ReferenceProfile,
    load_profile,
    proportion_matrices,
    psi,
    psi_of_parquet,
    psi_reference,
    psi_value,
    psi_values,
    save_profile,
)
from orchard.errors import OrchardError

TOL = 1e-9


def _assert_matches_loop(
    ref: pd.DataFrame, cur: pd.DataFrame, numeric: list[str], categorical: list[str], n_bins: int = 10
) -> dict[str, float]:
    profile = ReferenceProfile.fit(ref, numeric, categorical, n_bins=n_bins)
    fast = psi(profile, cur)
    for column in [*numeric, *categorical]:
        kind = "numeric" if column in numeric else "categorical"
        slow = psi_reference(ref[column].tolist(), cur[column].tolist(), kind, n_bins=n_bins)
        assert abs(fast[column] - slow) <= TOL, f"{column}: vectorised {fast[column]!r} vs loop {slow!r}"
    return fast


@pytest.mark.parametrize("seed", [10, 11, 12, 13])
def test_wide_random_frames_match_the_loop(seed: int) -> None:
    # Given many columns of different shapes, missing values and shifts
    rng = np.random.default_rng(seed)
    n_ref, n_cur = 700, 333
    ref: dict[str, object] = {}
    cur: dict[str, object] = {}
    for i in range(8):
        r = rng.lognormal(0, 1 + i / 4, n_ref)
        c = rng.lognormal(0.2 * i, 1 + i / 4, n_cur)
        r[rng.random(n_ref) < 0.07] = np.nan
        c[rng.random(n_cur) < 0.2 * (i % 2)] = np.nan
        ref[f"n{i}"], cur[f"n{i}"] = r, c
    for i in range(3):
        ref[f"c{i}"] = rng.choice(["a", "b", "c", "d", None], n_ref)
        cur[f"c{i}"] = rng.choice(["a", "b", "e", None], n_cur)
    # When computed vectorised and by the loop / Then they agree to 1e-9 on every column
    numeric = [f"n{i}" for i in range(8)]
    _assert_matches_loop(pd.DataFrame(ref), pd.DataFrame(cur), numeric, ["c0", "c1", "c2"])


def test_many_bins_use_binary_search_and_still_match() -> None:
    # Given 50 bins (more edges than the comparison path handles) / Then the binary-search path agrees too
    rng = np.random.default_rng(4)
    ref = pd.DataFrame({"x": rng.normal(size=2000)})
    cur = pd.DataFrame({"x": np.r_[rng.normal(0.3, 1, 500), [np.nan] * 20]})
    result = _assert_matches_loop(ref, cur, ["x"], [], n_bins=50)
    assert len(ReferenceProfile.fit(ref, ["x"], [], n_bins=50).column("x").edges) == 49
    assert result["x"] > 0.05, "a shifted sample on 50 bins has a visible PSI"


@pytest.mark.filterwarnings("ignore:invalid value encountered:RuntimeWarning")
def test_infinite_reference_values_give_a_nan_edge_and_still_match() -> None:
    # Given a reference whose deciles interpolate between -inf and +inf (a NaN edge)
    ref = pd.DataFrame({"x": [-np.inf] * 5 + [np.inf] * 5})
    cur = pd.DataFrame({"x": [-np.inf, 0.0, np.inf, np.nan, 3.0]})
    edges = ReferenceProfile.fit(ref, ["x"], []).column("x").edges
    assert len(edges) == 1 and math.isnan(edges[0]), f"the interpolated edge is NaN: {edges}"
    # Then the kernel falls back to the binary search and equals the loop
    _assert_matches_loop(ref, cur, ["x"], [])


def test_dtypes_category_int_nullable_and_object_numbers_agree() -> None:
    # Given the same values as category / object, int / nullable Float64 / object numbers
    rng = np.random.default_rng(8)
    levels = rng.choice(["low", "mid", "high"], 300)
    ints = rng.integers(0, 7, 300)
    ref = pd.DataFrame(
        {
            "cat": levels,
            "num": ints.astype(float),
            "nullable": pd.array(ints, dtype="Float64"),
            "objnum": ints.astype(object),
        }
    )
    ref.loc[::17, "nullable"] = pd.NA
    cur_levels = rng.choice(["low", "high", "new"], 120)
    cur_ints = rng.integers(2, 9, 120)
    cur = pd.DataFrame(
        {
            "cat": pd.Categorical(cur_levels, categories=["high", "low", "new", "unused"]),
            "num": cur_ints,
            "nullable": pd.array(cur_ints, dtype="Float64"),
            "objnum": cur_ints.astype(object),
        }
    )
    cur.loc[::5, "cat"] = np.nan
    profile = ReferenceProfile.fit(ref, ["num", "nullable", "objnum"], ["cat"])
    fast = psi(profile, cur)
    # Then every dtype gives the loop's value, and equal values give equal PSI whatever their dtype
    for column, kind in (
        ("cat", "categorical"),
        ("num", "numeric"),
        ("nullable", "numeric"),
        ("objnum", "numeric"),
    ):
        slow = psi_reference(ref[column].tolist(), cur[column].tolist(), kind)
        assert abs(fast[column] - slow) <= TOL, f"{column} ({cur[column].dtype}) differs from the loop"
    assert fast["num"] == pytest.approx(fast["objnum"], abs=TOL), "int and object numbers bin alike"
    as_object = psi(profile, cur.assign(cat=cur["cat"].astype(object)))
    assert as_object["cat"] == pytest.approx(fast["cat"], abs=TOL), "category codes equal factorised text"


def test_adversarial_columns_match_the_loop_and_stay_finite() -> None:
    # Given a constant column, all-missing on either side, a single-row batch and an unseen category
    ref = pd.DataFrame(
        {
            "constant": [3.0] * 40,
            "missing_ref": [np.nan] * 40,
            "missing_cur": np.arange(40.0),
            "level": ["a"] * 39 + [None],
        }
    )
    for cur in (
        pd.DataFrame({"constant": [3.0], "missing_ref": [1.0], "missing_cur": [np.nan], "level": ["zz"]}),
        pd.DataFrame(
            {
                "constant": [2.0, 3.0, 4.0],
                "missing_ref": [np.nan] * 3,
                "missing_cur": [np.nan] * 3,
                "level": ["a"] * 3,
            }
        ),
    ):
        result = _assert_matches_loop(ref, cur, ["constant", "missing_ref", "missing_cur"], ["level"])
        assert all(math.isfinite(v) and v >= 0 for v in result.values()), f"finite, non-negative: {result}"
    # Then a batch identical in distribution to an all-missing reference has PSI 0
    same = psi(ReferenceProfile.fit(ref, ["missing_ref"], []), pd.DataFrame({"missing_ref": [np.nan] * 7}))
    assert same == {"missing_ref": 0.0}, "all missing on both sides: no shift"


def test_padded_matrix_equals_the_per_column_formula() -> None:
    # Given columns with different numbers of bins
    rng = np.random.default_rng(2)
    ref = pd.DataFrame({"x": rng.normal(size=300), "c": rng.choice(["a", "b"], 300)})
    cur = pd.DataFrame({"x": rng.normal(0.5, 1, 100), "c": rng.choice(["a", "b", "c"], 100)})
    profile = ReferenceProfile.fit(ref, ["x"], ["c"])
    ref_matrix, cur_matrix = proportion_matrices(profile, cur)
    # Then the matrix is padded with zeros and each row's PSI equals psi_value on the unpadded bins
    assert ref_matrix.shape == (2, 11) and ref_matrix[1, 4:].sum() == 0.0, "c has 4 bins, padded to 11"
    rows = psi_values(ref_matrix, cur_matrix)
    for i, column in enumerate(profile.columns):
        expected = psi_value(np.asarray(column.proportions), column.proportions_of(cur[column.column]))
        assert rows[i] == pytest.approx(expected, abs=1e-15), f"row {column.column}"
    assert psi_values(np.zeros((1, 3)), np.zeros((1, 3)))[0] == 0.0, "eps vs eps contributes exactly 0"


def test_epsilon_is_the_documented_constant() -> None:
    # Given a bin empty in the current batch / Then its term uses PSI_EPSILON exactly
    value = psi_value(np.array([0.5, 0.5]), np.array([1.0, 0.0]))
    expected = 0.5 * math.log(2.0) + (PSI_EPSILON - 0.5) * math.log(PSI_EPSILON / 0.5)
    assert value == pytest.approx(expected, abs=1e-15)


def test_stored_profile_and_parquet_batch_give_the_same_psi(tmp_path: Path) -> None:
    # Given a profile stored as JSON and the month's batch as Parquet with an extra, unprofiled column
    rng = np.random.default_rng(9)
    ref = pd.DataFrame({"score": rng.normal(600, 40, 400), "c": rng.choice(["a", "b"], 400)})
    cur = pd.DataFrame(
        {"score": rng.normal(640, 40, 150), "c": rng.choice(["a", "b"], 150), "notes": ["free text"] * 150}
    )
    profile = ReferenceProfile.fit(ref, ["score"], ["c"])
    path = save_profile(profile, tmp_path / "profiles" / "reference_profile.json")
    cur.to_parquet(tmp_path / "batch.parquet", index=False)
    # When the monthly check reads only the stored profile and the batch file
    from_file = psi_of_parquet(load_profile(path), tmp_path / "batch.parquet")
    # Then it equals the in-memory computation, and nothing but the JSON is left in the profile folder
    assert from_file == psi(profile, cur), "file-based check equals in-memory PSI"
    assert [p.name for p in path.parent.iterdir()] == ["reference_profile.json"], (
        "atomic write, no temp files"
    )


def test_empty_batches_and_bad_files_raise_clear_errors(tmp_path: Path) -> None:
    profile = ReferenceProfile.fit(pd.DataFrame({"x": [1.0, 2.0, 3.0]}), ["x"], [])
    # Given an empty current batch (columns but no rows) / Then the error says it is empty
    with pytest.raises(OrchardError, match="current batch is empty"):
        psi(profile, pd.DataFrame({"x": pd.Series([], dtype=float)}))
    pd.DataFrame({"x": pd.Series([], dtype=float)}).to_parquet(tmp_path / "empty.parquet")
    with pytest.raises(OrchardError, match="current batch is empty"):
        psi_of_parquet(profile, tmp_path / "empty.parquet")
    # Given a Parquet batch without the profiled column, or no file / Then the error names it
    pd.DataFrame({"y": [1.0]}).to_parquet(tmp_path / "other.parquet")
    with pytest.raises(OrchardError, match="missing profiled column\\(s\\) x"):
        psi_of_parquet(profile, tmp_path / "other.parquet")
    with pytest.raises(OrchardError, match="does not exist"):
        psi_of_parquet(profile, tmp_path / "nope.parquet")
    # Given a missing or corrupt profile file / Then the error names the file
    with pytest.raises(OrchardError, match="does not exist"):
        load_profile(tmp_path / "absent.json")
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(OrchardError, match="not valid JSON"):
        load_profile(tmp_path / "bad.json")
    # Given text in a numeric column of the batch / Then the error names the column
    with pytest.raises(OrchardError, match="'x' must be numeric"):
        psi(profile, pd.DataFrame({"x": ["high"]}))
