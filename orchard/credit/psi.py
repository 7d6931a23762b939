"""Population / characteristic stability index (PSI / CSI) on bins frozen from a reference sample.

Bins (the credit-industry convention):
- numeric: the distinct reference deciles (np.quantile, linear interpolation) are the interior edges of
  right-closed intervals (-inf, e1], (e1, e2], ..., (ek, +inf); duplicate edges collapse, so a constant column
  has two value bins. Missing values (NaN/None) get their own bin.
- categorical: one bin per reference level (compared as text), one 'unseen level' bin, one missing bin.

PSI = sum over bins of (cur - ref) * ln(cur / ref), where a proportion that is exactly 0 (an empty bin, on either
side) is replaced by PSI_EPSILON before the sum; proportions are not renormalised afterwards. A bin empty on both
sides therefore contributes 0. Score PSI is psi() on a 'score' column; CSI is psi() on a feature.

Speed: the profile is fitted once (with the model) and stored as JSON; a monthly check reads only the profiled
columns of the new batch, bins each column in one vectorised pass (comparisons against the few frozen edges, or
category codes), and computes every column's PSI in one array expression over the padded proportion matrix.
See docs/psi.md for the definition and how it differs from Evidently's PSI.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd

from orchard.atomic import write_json
from orchard.errors import OrchardError

PSI_EPSILON = 1e-4
SCORE_COLUMN = "score"  # score PSI = psi() on this column, profiled as numeric next to the features
DEFAULT_BINS = 10
PROFILE_VERSION = 1
_COMPARE_MAX_EDGES = 32  # up to this many edges, k vectorised comparisons beat a binary search per value


def decile_edges(values: np.ndarray, n_bins: int = DEFAULT_BINS) -> list[float]:
    """Return the distinct interior quantile edges of the non-missing values (empty when all are missing)."""
    x = np.asarray(values, dtype=float)
    x = x[~np.isnan(x)]
    if x.size == 0 or n_bins < 2:
        return []
    return [float(e) for e in np.unique(np.quantile(x, np.arange(1, n_bins) / n_bins))]


def _numeric(values: pd.Series | np.ndarray | list[Any], column: str) -> np.ndarray:
    if isinstance(values, (pd.Series, np.ndarray)) and values.dtype == np.float64:
        return np.asarray(values)  # already float64 (NaN = missing): no conversion, no copy
    try:
        return pd.to_numeric(pd.Series(values), errors="raise").to_numpy(dtype=float, na_value=np.nan)
    except (ValueError, TypeError) as exc:
        raise OrchardError(f"column {column!r} must be numeric for PSI: {exc}") from exc


def _factorize(values: pd.Series | np.ndarray | list[Any]) -> tuple[np.ndarray, list[str]]:
    """Return codes (-1 = missing) and the distinct values as text; str() per distinct value, not per row."""
    series = values if isinstance(values, pd.Series) else pd.Series(values)
    if isinstance(series.dtype, pd.CategoricalDtype):
        return series.cat.codes.to_numpy(), [str(c) for c in series.cat.categories]  # codes exist already
    codes, uniques = pd.factorize(series, use_na_sentinel=True)
    return codes, [str(u) for u in uniques]


def _count_edges_below(x: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """Return, for every value, how many edges are strictly below it (np.searchsorted side='left')."""
    if edges.size <= _COMPARE_MAX_EDGES and not np.isnan(edges).any():
        index = np.zeros(x.size, dtype=np.intp)
        for edge in edges:
            index += x > edge  # NaN compares False; its bin is set by the caller
        return index
    return np.searchsorted(edges, x, side="left")


@dataclass(frozen=True)
class ColumnProfile:
    """The frozen bins of one column and the reference proportion of each bin (missing bin last)."""

    column: str
    kind: Literal["numeric", "categorical"]
    edges: tuple[float, ...]
    levels: tuple[str, ...]
    proportions: tuple[float, ...]

    @property
    def n_bins(self) -> int:
        """Return the number of bins, including the unseen-level (categorical) and missing bins."""
        return len(self.edges) + 2 if self.kind == "numeric" else len(self.levels) + 2

    def bin_index(self, values: pd.Series | np.ndarray | list[Any]) -> np.ndarray:
        """Return the bin of every value, vectorised (np.searchsorted / category codes)."""
        if self.kind == "numeric":
            x = _numeric(values, self.column)
            index = _count_edges_below(x, np.asarray(self.edges, dtype=float))
            index[np.isnan(x)] = self.n_bins - 1
            return index
        codes, uniques = _factorize(values)
        unseen = len(self.levels)
        position = {level: i for i, level in enumerate(self.levels)}
        lookup = np.array([position.get(u, unseen) for u in uniques] + [unseen + 1], dtype=np.int64)
        return lookup[codes]  # code -1 picks the trailing missing bin

    def counts_of(self, values: pd.Series | np.ndarray | list[Any]) -> np.ndarray:
        """Return the number of values in every bin."""
        return np.bincount(self.bin_index(values), minlength=self.n_bins)

    def proportions_of(self, values: pd.Series | np.ndarray | list[Any]) -> np.ndarray:
        """Return the share of values in every bin."""
        index = self.bin_index(values)
        return np.bincount(index, minlength=self.n_bins) / index.size

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-serialisable dict."""
        return {
            "column": self.column,
            "kind": self.kind,
            "edges": list(self.edges),
            "levels": list(self.levels),
            "proportions": list(self.proportions),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ColumnProfile:
        """Rebuild a column profile from to_dict output."""
        if data.get("kind") not in ("numeric", "categorical"):
            raise OrchardError(
                f"profile of column {data.get('column')!r} has an unknown kind {data.get('kind')!r}"
            )
        return cls(
            column=str(data["column"]),
            kind=data["kind"],
            edges=tuple(float(e) for e in data["edges"]),
            levels=tuple(str(level) for level in data["levels"]),
            proportions=tuple(float(p) for p in data["proportions"]),
        )


def psi_value(
    ref_proportions: np.ndarray, cur_proportions: np.ndarray, epsilon: float = PSI_EPSILON
) -> float:
    """Return sum((cur - ref) * ln(cur / ref)) after replacing exact-zero proportions with epsilon."""
    ref = np.where(ref_proportions == 0.0, epsilon, ref_proportions)
    cur = np.where(cur_proportions == 0.0, epsilon, cur_proportions)
    return float(np.sum((cur - ref) * np.log(cur / ref)))


@dataclass(frozen=True)
class ReferenceProfile:
    """Frozen bins and reference proportions of every monitored column (stored with the model)."""

    columns: tuple[ColumnProfile, ...]
    n_reference: int
    n_bins: int = DEFAULT_BINS

    @classmethod
    def fit(
        cls, df: pd.DataFrame, numeric: list[str], categorical: list[str], n_bins: int = DEFAULT_BINS
    ) -> ReferenceProfile:
        """Freeze bins from the reference sample: deciles for numeric, levels for categorical, missing bins."""
        if df.empty:
            raise OrchardError("cannot fit a PSI reference profile on an empty sample")
        if n_bins < 2:
            raise OrchardError(f"n_bins must be at least 2, got {n_bins}")
        both = set(numeric) & set(categorical)
        if both:
            raise OrchardError(f"column(s) {', '.join(sorted(both))} are listed as numeric and categorical")
        absent = [c for c in [*numeric, *categorical] if c not in df.columns]
        if absent:
            raise OrchardError(f"reference sample is missing column(s) {', '.join(absent)}")
        profiles: list[ColumnProfile] = []
        for column in numeric:
            edges = tuple(decile_edges(_numeric(df[column], column), n_bins))
            profiles.append(ColumnProfile(column, "numeric", edges, (), ()))
        for column in categorical:
            levels = tuple(sorted(set(_factorize(df[column])[1])))
            profiles.append(ColumnProfile(column, "categorical", (), levels, ()))
        fitted = tuple(
            ColumnProfile(
                p.column,
                p.kind,
                p.edges,
                p.levels,
                tuple(float(x) for x in p.proportions_of(df[p.column])),
            )
            for p in profiles
        )
        return cls(columns=fitted, n_reference=len(df), n_bins=n_bins)

    @property
    def column_names(self) -> list[str]:
        """Return the monitored columns in profile order."""
        return [p.column for p in self.columns]

    def column(self, name: str) -> ColumnProfile:
        """Return one column's profile, or raise naming the known columns."""
        for p in self.columns:
            if p.column == name:
                return p
        raise OrchardError(
            f"column {name!r} is not in the reference profile ({', '.join(self.column_names)})"
        )

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-serialisable dict (stored with the model, so a monthly check reads only the new batch)."""
        return {
            "version": PROFILE_VERSION,
            "epsilon": PSI_EPSILON,
            "n_bins": self.n_bins,
            "n_reference": self.n_reference,
            "columns": [p.to_dict() for p in self.columns],
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ReferenceProfile:
        """Rebuild a profile from to_dict output."""
        if data.get("version") != PROFILE_VERSION:
            raise OrchardError(f"PSI profile version {data.get('version')!r} is not {PROFILE_VERSION}")
        return cls(
            columns=tuple(ColumnProfile.from_dict(c) for c in data["columns"]),
            n_reference=int(data["n_reference"]),
            n_bins=int(data["n_bins"]),
        )


def psi_values(
    ref_proportions: np.ndarray, cur_proportions: np.ndarray, epsilon: float = PSI_EPSILON
) -> np.ndarray:
    """Return the PSI of every row of two (columns x bins) proportion matrices, zero-padded past each row's bins."""
    ref = np.where(ref_proportions == 0.0, epsilon, ref_proportions)
    cur = np.where(cur_proportions == 0.0, epsilon, cur_proportions)
    return np.sum((cur - ref) * np.log(cur / ref), axis=1)  # padding: eps vs eps contributes exactly 0


def _check_batch(profile: ReferenceProfile, current_df: pd.DataFrame) -> None:
    if len(current_df) == 0:
        raise OrchardError("the current batch is empty: PSI needs at least one row")
    absent = [c for c in profile.column_names if c not in current_df.columns]
    if absent:
        raise OrchardError(f"current batch is missing profiled column(s) {', '.join(absent)}")


def proportion_matrices(profile: ReferenceProfile, current_df: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """Return the reference and current (columns x max bins) proportion matrices, zero-padded."""
    _check_batch(profile, current_df)
    width = max(p.n_bins for p in profile.columns)
    ref = np.zeros((len(profile.columns), width))
    cur = np.zeros((len(profile.columns), width))
    for row, p in enumerate(profile.columns):
        ref[row, : p.n_bins] = p.proportions
        cur[row, : p.n_bins] = p.counts_of(current_df[p.column])
    cur /= len(current_df)
    return ref, cur


def psi(profile: ReferenceProfile, current_df: pd.DataFrame) -> dict[str, float]:
    """Return the PSI of every profiled column of the current batch against the frozen reference bins."""
    if not profile.columns:
        _check_batch(profile, current_df)
        return {}
    ref, cur = proportion_matrices(profile, current_df)
    return {name: float(v) for name, v in zip(profile.column_names, psi_values(ref, cur), strict=True)}


def save_profile(profile: ReferenceProfile, path: Path) -> Path:
    """Write a reference profile as JSON, atomically (stored with the model version)."""
    return write_json(profile.to_dict(), Path(path))


def load_profile(path: Path) -> ReferenceProfile:
    """Read a reference profile written by save_profile, or raise naming the file."""
    path = Path(path)
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError as exc:
        raise OrchardError(f"PSI reference profile {path} does not exist") from exc
    except json.JSONDecodeError as exc:
        raise OrchardError(f"PSI reference profile {path} is not valid JSON: {exc}") from exc
    return ReferenceProfile.from_dict(data)


def psi_of_parquet(profile: ReferenceProfile, path: Path) -> dict[str, float]:
    """Return the PSI of a Parquet batch, reading only the profiled columns (the monthly check)."""
    import pyarrow.parquet as pq  # deferred: the kernel itself needs numpy only

    path = Path(path)
    if not path.exists():
        raise OrchardError(f"batch file {path} does not exist")
    available = set(pq.read_schema(path).names)
    absent = [c for c in profile.column_names if c not in available]
    if absent:
        raise OrchardError(f"batch {path.name} is missing profiled column(s) {', '.join(absent)}")
    frame = pq.read_table(path, columns=profile.column_names).to_pandas()
    return psi(profile, frame)


def _is_missing(value: Any) -> bool:
    return value is None or value is pd.NA or (isinstance(value, float) and math.isnan(value))


def psi_reference(
    ref_values: list[Any] | np.ndarray | pd.Series,
    cur_values: list[Any] | np.ndarray | pd.Series,
    kind: Literal["numeric", "categorical"] = "numeric",
    n_bins: int = DEFAULT_BINS,
    epsilon: float = PSI_EPSILON,
) -> float:
    """Return PSI by a plain loop over values and bins: the obviously-correct version the tests trust."""
    ref = list(ref_values)
    cur = list(cur_values)
    if not cur:
        raise OrchardError("the current batch is empty: PSI needs at least one row")

    if kind == "numeric":
        edges = decile_edges(np.array([np.nan if _is_missing(v) else float(v) for v in ref]), n_bins)

        def bin_of(value: Any) -> int:
            if _is_missing(value):
                return len(edges) + 1
            for i, edge in enumerate(edges):
                if float(value) <= edge:  # right-closed: (previous edge, edge]
                    return i
            return len(edges)

        n_total = len(edges) + 2
    else:
        levels = sorted({str(v) for v in ref if not _is_missing(v)})

        def bin_of(value: Any) -> int:
            if _is_missing(value):
                return len(levels) + 1
            text = str(value)
            for i, level in enumerate(levels):
                if text == level:
                    return i
            return len(levels)

        n_total = len(levels) + 2

    ref_counts = [0] * n_total
    cur_counts = [0] * n_total
    for value in ref:
        ref_counts[bin_of(value)] += 1
    for value in cur:
        cur_counts[bin_of(value)] += 1

    total = 0.0
    for r_count, c_count in zip(ref_counts, cur_counts, strict=True):
        r = r_count / len(ref) if r_count else epsilon
        c = c_count / len(cur) if c_count else epsilon
        total += (c - r) * math.log(c / r)
    return total
