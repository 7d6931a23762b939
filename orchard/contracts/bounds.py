"""Bounds a batch's metrics must keep, learnt from the profiles of the source's accepted batches.

How a bound is chosen (so clean months pass, including a real change of the population, and corruption fails):
- robust centre and spread over the window: the median of the metric and 1.4826 x its median absolute deviation,
  so one odd month in the history does not widen or shift the bound;
- the sampling error of the metric at the batch's own size n, added in quadrature: sd/sqrt(n) for a mean,
  sqrt(m4 - sd^4)/(2 sd sqrt(n)) for a standard deviation, the normal-theory error of a quantile, the binomial
  error sqrt(p(1-p)/n) for a share, 1/sqrt(n) for the log of a row count; a small batch gets a wide bound;
- `tolerance` (default 5) such errors either side, plus a floor (a share may always move 2-5 points, a row count
  by a factor 1.6) and, for the `scale` checks that quarantine, a factor 2 around the centre: a population shift
  (the demo's 2020 shock moves incomes by about a quarter) stays inside, a unit change or a swap of columns of
  different magnitude does not;
- a metric is learnt only from a window where every batch had enough values: columns that are near-empty, all
  zero or constant in the history get no bound (they are listed as skipped), and nothing is learnt before
  `min_history` accepted batches.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from statistics import NormalDist
from typing import Any

import numpy as np

from orchard.contracts.profile import QUANTILES
from orchard.portfolio.spec import ContractDef

MIN_VALUES = 20
"""Values a column must have in every batch of the window (and in the batch) for its metrics to be checked."""
MIN_NONZERO = 10
"""Non-zero values a number column must have in every batch of the window (a sparse column is not profiled)."""
SCALE_FACTOR = 2.0
SHARE_FLOOR = 0.02
COMPLETENESS_FLOOR = 0.03
ROW_COUNT_FLOOR = math.log(1.6)
"""A batch may have 60% more rows than the last accepted one, plus its noise (the demo's shock adds 50%)."""
ROW_COUNT_FLOOR_LOW = math.log(1 / 0.7)
"""... or 30% fewer, plus its noise: losing half the rows is a corruption, not a trend."""
MIN_DISTINCT_FOR_QUANTILES = 50
"""Distinct values a number column needs in every batch of the window for its quantiles to be checked."""
RECENT = 3
"""Accepted batches whose median centres a scale check."""
MIN_ROWS = 10
"""A batch smaller than this is not held to its history's shares and distinct counts."""


@dataclass(frozen=True)
class History:
    """The accepted batches a contract learns from: their ids and their stored observations, oldest first."""

    batches: tuple[str, ...]
    records: tuple[dict[str, Any], ...]

    def series(self, *path: str) -> list[float]:
        """Return a metric of every batch that has it (path into each record, e.g. profile, rows)."""
        out = []
        for record in self.records:
            node: Any = record
            for key in path:
                node = node.get(key) if isinstance(node, dict) else None
            if isinstance(node, int | float) and math.isfinite(node):
                out.append(float(node))
        return out

    def span(self) -> str:
        """Return the window as text, e.g. '12 batches 2019-01..2019-12'."""
        if not self.batches:
            return "no batches"
        months = [b.rsplit("-", 2) for b in self.batches]
        first, last = "-".join(months[0][-2:]), "-".join(months[-1][-2:])
        return f"{len(self.batches)} batches {first}..{last}"


@dataclass
class LearntChecks:
    """The history checks of one source's batch, by kind of check, and what could not be learnt."""

    applied: bool
    note: str
    checks: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    skipped: list[str] = field(default_factory=list)


def robust_centre(values: list[float]) -> tuple[float, float]:
    """Return the median and the MAD-based standard deviation (1.4826 x median absolute deviation)."""
    array = np.asarray(values, dtype=float)
    centre = float(np.median(array))
    return centre, float(1.4826 * np.median(np.abs(array - centre)))


def _check(
    column: str | None,
    metric: str,
    values: list[float],
    unit_sd: float,
    history: History,
    *,
    floor: float = 0.0,
    factor: float = 1.0,
    side: str = "both",
    centre_on: str = "recent",
) -> dict[str, Any]:
    """Return a learnt check of a metric, centred on the window's history as `centre_on` says.

    - `recent`: the median of the last RECENT accepted batches, with the window's robust spread. A slow drift
      (the demo's partner users age a year a year) or a move over months (the shock more than doubles the mean
      days past due over four months) is followed; a jump from one batch to the next is not.
    - `last`: the last accepted value, with the robust deviation of the monthly steps, for metrics with a trend
      (a growing book's row count, the orphan share of loans booked before the lake began, which runs off).
    - `window`: the window's median and robust spread (a share that should not move at all).
    """
    centre, spread = robust_centre(values)
    text = f"median {centre:.4g} (robust sd {spread:.3g})"
    if centre_on == "recent":
        recent = float(np.median(values[-RECENT:]))
        text = (
            f"median of the last {min(RECENT, len(values))} accepted {recent:.4g}, of the window {centre:.4g}"
        )
        centre = recent
    elif centre_on == "last":
        _, spread = robust_centre(list(np.diff(values)) or [0.0])
        centre = values[-1]
        text = f"last {centre:.4g} (robust sd of monthly steps {spread:.3g})"
    return {
        "column": column,
        "metric": metric,
        "centre": round(centre, 6),
        "spread": round(spread, 6),
        "unit_sd": round(unit_sd, 6),
        "floor": round(floor, 6),
        "factor": factor,
        "side": side,
        "history": f"{text} over {history.span()}",
    }


def bound(check: dict[str, Any], n: int, tolerance: float) -> tuple[float, float]:
    """Return the (low, high) a metric may take in a batch of n rows (values or rows, as the check counts)."""
    centre, factor = float(check["centre"]), float(check["factor"])
    se = float(check["unit_sd"]) / math.sqrt(max(n, 1))
    noise = tolerance * math.hypot(float(check["spread"]), se)
    floor = float(check["floor"])
    low = centre - abs(centre) * (1.0 - 1.0 / factor) - noise - float(check.get("floor_low", floor))
    high = centre + abs(centre) * (factor - 1.0) + noise + floor
    if check["side"] == "upper":
        low = -math.inf
    elif check["side"] == "lower":
        high = math.inf
    return low, high


def _numbers(column: str, history: History) -> list[dict[str, Any]] | None:
    """Return the profiles of a number column over the window if every batch has enough values, else None."""
    profiles = [r["profile"]["columns"].get(column) or {} for r in history.records]
    enough = all(
        p.get("values", 0) >= MIN_VALUES and p.get("nonzero", 0) >= MIN_NONZERO and p.get("std", 0.0) > 0
        for p in profiles
    )
    return profiles if enough else None


def _scale_and_distribution(column: str, history: History, learnt: LearntChecks) -> None:
    profiles = _numbers(column, history)
    if profiles is None:
        learnt.skipped.append(f"{column}: near-empty, all zero or constant in the history")
        return
    std = float(np.median([p["std"] for p in profiles]))
    # Var(s^2) ~ (m4 - s^4) / n, so sd(s) ~ sqrt(m4 - s^4) / (2 s) per sqrt(n)
    std_sd = float(
        np.median([math.sqrt(max(p["m4"] - p["std"] ** 4, 0.0)) / (2 * p["std"]) for p in profiles])
    )
    means = [p["mean"] for p in profiles]
    stds = [p["std"] for p in profiles]
    learnt.checks["scale"] += [
        _check(column, "mean", means, std, history, factor=SCALE_FACTOR),
        _check(column, "std", stds, std_sd, history, factor=SCALE_FACTOR),
    ]
    distribution = learnt.checks["distribution"]
    distribution += [
        _check(column, "mean", means, std, history),
        _check(column, "std", stds, std_sd, history),
    ]
    if min(p.get("distinct", 0) for p in profiles) < MIN_DISTINCT_FOR_QUANTILES:
        return  # quantiles of a few discrete values jump between them: the mean and deviation are checked
    normal = NormalDist()
    # the quantiles of whole numbers move by whole steps: allow one step on top of the sampling error
    step = 1.0 if all(float(p[name]).is_integer() for p in profiles for name in QUANTILES) else 0.0
    for name, q in QUANTILES.items():
        quantile_sd = std * math.sqrt(q * (1 - q)) / normal.pdf(normal.inv_cdf(q))
        distribution.append(
            _check(column, name, [p[name] for p in profiles], quantile_sd, history, floor=step)
        )


def _shares(column: str, history: History, learnt: LearntChecks) -> None:
    profiles = [r["profile"]["columns"].get(column) or {} for r in history.records]
    if not all("shares" in p for p in profiles):
        learnt.skipped.append(f"{column}: no category shares in every batch of the history")
        return
    categories = sorted({c for p in profiles for c in p["shares"]})
    for category in categories:
        values = [p["shares"].get(category, 0.0) for p in profiles]
        centre = float(np.median(values))
        learnt.checks["distribution"].append(
            _check(
                column,
                f"share[{category}]",
                values,
                math.sqrt(centre * (1 - centre)),
                history,
                floor=SHARE_FLOOR,
            )
        )


def _variety(column: str, history: History, learnt: LearntChecks) -> None:
    profiles = [r["profile"]["columns"].get(column) or {} for r in history.records]
    distinct = [p.get("distinct", 0) for p in profiles]
    if min(distinct) >= 2:
        # a column that always varied may not become constant
        learnt.checks["variety"].append(
            {
                "column": column,
                "metric": "distinct",
                "low": 2,
                "history": f"{min(distinct)}..{max(distinct)} distinct values over {history.span()}",
            }
        )
    ratios = [p.get("unique_ratio", 0.0) for p in profiles]
    if min(ratios) >= 0.98:
        # an identifier (nearly unique in every batch) may not start repeating
        learnt.checks["variety"].append(
            {
                "column": column,
                "metric": "unique_ratio",
                "low": round(0.9 * min(ratios), 6),
                "history": f"unique ratio {min(ratios):.3f}..{max(ratios):.3f} over {history.span()}",
            }
        )


def _share_check(
    column: str | None, metric: str, values: list[float], history: History, floor: float, side: str = "both"
) -> dict[str, Any]:
    centre = float(np.median(values))
    unit_sd = math.sqrt(centre * (1 - centre))
    return _check(column, metric, values, unit_sd, history, floor=floor, side=side, centre_on="window")


def learn_checks(
    columns: list[list[str]],
    nullable: set[str],
    foreign_keys: list[str],
    history: History,
    contract: ContractDef,
) -> LearntChecks:
    """Return the checks a batch is held to, learnt from the accepted history of its source."""
    if len(history.batches) < contract.min_history:
        return LearntChecks(
            applied=False,
            note=f"schema contract only: {len(history.batches)} accepted batch(es) of history, "
            f"{contract.min_history} needed before history checks apply",
        )
    learnt = LearntChecks(
        applied=True,
        note=f"schema contract and history checks learnt from {history.span()}",
        checks={
            k: []
            for k in (
                "row_count",
                "completeness",
                "scale",
                "variety",
                "distribution",
                "key_reuse",
                "foreign_keys",
            )
        },
    )
    rows = history.series("profile", "rows")
    if min(rows) >= MIN_ROWS:
        log_rows = [math.log(r) for r in rows]
        check = _check(None, "rows", log_rows, 1.0, history, floor=ROW_COUNT_FLOOR, centre_on="last")
        check["floor_low"] = round(ROW_COUNT_FLOOR_LOW, 6)
        check["history"] = f"last accepted batch {int(rows[-1])} rows, {history.span()}"
        learnt.checks["row_count"].append(check)
    for column, kind in columns:
        if column in nullable:
            values = history.series("profile", "columns", column, "null_share")
            # only a spike of nulls: a column filled in more often (more responses) is not a corruption
            learnt.checks["completeness"].append(
                _share_check(column, "null_share", values, history, COMPLETENESS_FLOOR, side="upper")
            )
        _variety(column, history, learnt)
        if kind == "number":
            _scale_and_distribution(column, history, learnt)
        elif kind == "category":
            _shares(column, history, learnt)
    reuse = history.series("key_reuse")
    if len(reuse) == len(history.batches):
        learnt.checks["key_reuse"].append(_share_check(None, "key_reuse", reuse, history, SHARE_FLOOR))
    for column in foreign_keys:
        orphans = history.series("orphan_share", column)
        if len(orphans) == len(history.batches):
            floor = max(contract.max_orphan_share, SHARE_FLOOR)
            unit_sd = math.sqrt(orphans[-1] * (1 - orphans[-1]))
            learnt.checks["foreign_keys"].append(
                _check(
                    column,
                    "orphan_share",
                    orphans,
                    unit_sd,
                    history,
                    floor=floor,
                    side="upper",
                    centre_on="last",
                )
            )
        else:
            learnt.skipped.append(f"{column}: orphan share not in every batch of the history")
    return learnt
