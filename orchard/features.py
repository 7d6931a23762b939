"""Pure feature functions compiled from a portfolio's views, and the registry of canonical feature names.

A view turns one validated source into rows per entity and time:
- a snapshot view keeps declared columns as they are (plus ratios of them), one row per entity and event time;
- an aggregation view has one row per entity and period with events, dated by the period's last event, whose
  features aggregate the source over trailing periods (the row's own included): count, sum, mean, max, min,
  last, days since. Every row only aggregates what is known at its time (never a leak into an earlier case).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
import pandas as pd

from orchard.errors import OrchardError
from orchard.months import timestamp_months
from orchard.portfolio.expressions import row_mask
from orchard.portfolio.spec import AggregationDef, Portfolio, ViewDef
from orchard.sources import EVENT_TIME

FeatureDtype = Literal["int", "float", "string"]
_MONTH = "__month"


@dataclass(frozen=True)
class FeatureSpec:
    """One feature: its canonical name, the view it belongs to, its type, meaning and tags."""

    name: str
    view: str
    dtype: FeatureDtype
    description: str
    tags: tuple[tuple[str, str], ...] = ()

    @property
    def tag_dict(self) -> dict[str, str]:
        """Return the tags as a dict (the shape Feast expects)."""
        return dict(self.tags)


def _tags(tags: dict[str, str], **defaults: str) -> tuple[tuple[str, str], ...]:
    return tuple(sorted({**defaults, **tags}.items()))


def view_feature_specs(name: str, view: ViewDef) -> list[FeatureSpec]:
    """Return the features of one view, in declaration order, described and tagged."""
    specs = [FeatureSpec(n, name, f.type, f.description, _tags(f.tags)) for n, f in view.snapshot.items()]
    specs += [
        FeatureSpec(n, name, "float", r.description, _tags(r.tags, derived="true"))
        for n, r in view.ratios.items()
    ]
    specs += [
        FeatureSpec(n, name, a.type, a.description, _tags(a.tags, time_window=f"{a.window_months}m"))
        for n, a in view.aggregations.items()
    ]
    return specs


def feature_specs(portfolio: Portfolio) -> tuple[FeatureSpec, ...]:
    """Return every feature of the portfolio's views (one canonical name per feature)."""
    specs = [spec for name, view in portfolio.views.items() for spec in view_feature_specs(name, view)]
    seen: dict[str, str] = {}
    for spec in specs:
        if spec.name in seen:
            raise OrchardError(f"feature {spec.name!r} is defined by views {seen[spec.name]} and {spec.view}")
        seen[spec.name] = spec.view
    return tuple(specs)


def feature_names(portfolio: Portfolio, view: str) -> list[str]:
    """Return the canonical feature names of one view, in declaration order."""
    if view not in portfolio.views:
        raise OrchardError(
            f"unknown feature view {view!r}; known views: {', '.join(sorted(portfolio.views))}"
        )
    return portfolio.views[view].feature_names


def entity_key(portfolio: Portfolio, view: str) -> str:
    """Return the join key of a view's entity (the column features are keyed on)."""
    return portfolio.entities[portfolio.views[view].entity].join_key


_PANDAS_DTYPES: dict[FeatureDtype, Literal["int64", "float64", "object"]] = {
    "int": "int64",
    "float": "float64",
    "string": "object",
}


def _require(frame: pd.DataFrame, source: str, columns: list[str]) -> None:
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise OrchardError(f"{source} is missing column(s) {', '.join(missing)} needed for features")


def _typed(frame: pd.DataFrame, key: str, specs: list[FeatureSpec]) -> pd.DataFrame:
    out = frame[[key, EVENT_TIME, *(s.name for s in specs)]].copy()
    for spec in specs:
        values = out[spec.name]
        if spec.dtype == "int" and values.isna().any():
            out[spec.name] = values.astype("Int64")  # an aggregation with no matching row is unknown, not 0
        else:
            out[spec.name] = values.astype(_PANDAS_DTYPES[spec.dtype], copy=False)
    # a total order (a view has one row per entity and time): the same rows come out in the same order whatever
    # the order of the input rows, or the entity partitions they were computed in (combined_features)
    return out.sort_values([EVENT_TIME, key], kind="stable").reset_index(drop=True)


def snapshot_features(name: str, view: ViewDef, key: str, rows: pd.DataFrame) -> pd.DataFrame:
    """Return one row per entity and event time with the view's columns and ratios."""
    raw = list(view.snapshot)
    _require(rows, view.source, [key, EVENT_TIME, *raw])
    out = rows[[key, EVENT_TIME, *raw]].copy()
    for feature, ratio in view.ratios.items():
        denominator = out[ratio.denominator].astype("float64").clip(lower=ratio.min_denominator)
        out[feature] = out[ratio.numerator].astype("float64") / denominator
    # a re-delivered snapshot must not yield two rows for the same entity and time
    out = out.drop_duplicates([key, EVENT_TIME], keep="last")
    return _typed(out, key, view_feature_specs(name, view))


def _monthly_part(rows: pd.DataFrame, feature: str, agg: AggregationDef, what: str) -> dict[str, np.ndarray]:
    """Return the per-row inputs of one aggregation's monthly partials (filtered by its `where`)."""
    keep = row_mask(rows, agg.where, what) if agg.where else np.ones(len(rows), dtype=bool)
    values = rows[agg.column].to_numpy(dtype="float64") if agg.column else np.ones(len(rows))
    keep = keep & ~np.isnan(values)  # a missing value is not a zero: it is left out of every aggregate
    if agg.how in ("count", "sum", "mean"):
        out = {f"{feature}.sum": np.where(keep, values, 0.0)}
        if agg.how == "mean":
            out[f"{feature}.n"] = keep.astype("float64")
        return out
    if agg.how in ("max", "min", "last"):
        return {f"{feature}.{agg.how}": np.where(keep, values, np.nan)}
    times = rows[EVENT_TIME].to_numpy(dtype="datetime64[ns]").astype("int64").astype("float64")
    return {f"{feature}.time": np.where(keep, times, np.nan)}


_MONTHLY_HOW = {"sum": "sum", "n": "sum", "max": "max", "min": "min", "last": "last", "time": "max"}


def _trailing(values: np.ndarray, same: list[np.ndarray], how: str) -> np.ndarray:
    """Combine each row's monthly partial with those of the previous months in its window."""
    out = values.copy()
    for lag, in_window in enumerate(same, start=1):
        previous = np.where(in_window, values[:-lag], np.nan)
        if how in ("sum", "n"):
            out[lag:] += np.nan_to_num(previous)
        elif how in ("max", "time"):
            out[lag:] = np.fmax(out[lag:], previous)
        elif how == "min":
            out[lag:] = np.fmin(out[lag:], previous)
        else:  # last: the latest known value, looking back one month at a time
            out[lag:] = np.where(np.isnan(out[lag:]), previous, out[lag:])
    return out


def aggregation_features(name: str, view: ViewDef, key: str, rows: pd.DataFrame) -> pd.DataFrame:
    """Return one row per entity and period with the view's trailing-window aggregations."""
    specs = view_feature_specs(name, view)
    columns = sorted({a.column for a in view.aggregations.values() if a.column})
    _require(rows, view.source, [key, EVENT_TIME, *columns])
    if rows.empty:
        empty = {key: pd.Series(dtype="object"), EVENT_TIME: pd.Series(dtype="datetime64[ns, UTC]")}
        return _typed(pd.DataFrame(empty | {s.name: pd.Series(dtype="float64") for s in specs}), key, specs)
    parts: dict[str, np.ndarray] = {}
    for feature, agg in view.aggregations.items():
        parts |= _monthly_part(rows, feature, agg, f"views.{name}.aggregations.{feature}")
    base = pd.DataFrame(
        {
            key: rows[key].to_numpy(),
            _MONTH: timestamp_months(rows[EVENT_TIME]).to_numpy(),
            EVENT_TIME: rows[EVENT_TIME].array,
            **parts,
        }
    )
    named = {EVENT_TIME: (EVENT_TIME, "max")} | {p: (p, _MONTHLY_HOW[p.rsplit(".", 1)[1]]) for p in parts}
    monthly = base.groupby([key, _MONTH], sort=True).agg(**named).reset_index()
    entities, months = monthly[key].to_numpy(), monthly[_MONTH].to_numpy()
    for feature, agg in view.aggregations.items():
        window = agg.window_months
        same = [
            (entities[lag:] == entities[:-lag]) & (months[lag:] - months[:-lag] < window)
            for lag in range(1, min(window, len(monthly)))
        ]
        value = _combine(monthly, feature, agg, same)
        monthly[feature] = value
    return _typed(monthly, key, specs)


def _combine(monthly: pd.DataFrame, feature: str, agg: AggregationDef, same: list[np.ndarray]) -> np.ndarray:
    def trailing(part: str) -> np.ndarray:
        return _trailing(monthly[f"{feature}.{part}"].to_numpy(dtype="float64"), same, part)

    if agg.how in ("count", "sum"):
        return trailing("sum")
    if agg.how == "mean":
        total, n = trailing("sum"), trailing("n")
        return np.divide(total, n, out=np.full(len(total), np.nan), where=n > 0)
    if agg.how in ("max", "min", "last"):
        return trailing(agg.how)
    last_event = trailing("time")
    row_time = monthly[EVENT_TIME].to_numpy(dtype="datetime64[ns]").astype("int64").astype("float64")
    return (row_time - last_event) / 86_400e9


def view_features(portfolio: Portfolio, view: str, rows: pd.DataFrame) -> pd.DataFrame:
    """Return a view's feature rows from its source's validated rows."""
    definition = portfolio.views[view]
    key = entity_key(portfolio, view)
    if definition.snapshot:
        return snapshot_features(view, definition, key, rows)
    return aggregation_features(view, definition, key, rows)


def combined_features(portfolio: Portfolio, view: str, parts: list[pd.DataFrame]) -> pd.DataFrame:
    """Return the view's feature rows computed in entity partitions (view_features of each), as view_features
    of all the rows at once returns them: the same types, the same order."""
    kept = [part for part in parts if len(part)] or parts[:1]
    if not kept:
        raise OrchardError(f"view {view}: no partition to combine")
    frame = pd.concat(kept, ignore_index=True) if len(kept) > 1 else kept[0]
    return _typed(frame, entity_key(portfolio, view), view_feature_specs(view, portfolio.views[view]))
