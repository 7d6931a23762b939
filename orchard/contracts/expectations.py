"""Orchard's custom Great Expectations: history-based checks, foreign keys and cross-field rules.

Each check is a real GE expectation, so a result and its Data Docs page name it and show its bound, the observed
value and the history behind it. They are cheap by construction: the batch's profile is one table metric computed
in one pandas pass and shared by every history expectation of the batch (GE resolves a metric once per
validation); the key and rule metrics are one vectorised pass each. Importing this module registers the metrics
and expectations with GE (it is imported only when a suite is built, never by `import orchard`).
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any, ClassVar

import pandas as pd
from great_expectations.core.metric_domain_types import MetricDomainTypes
from great_expectations.execution_engine import PandasExecutionEngine
from great_expectations.expectations.expectation import BatchExpectation
from great_expectations.expectations.metrics.metric_provider import metric_value
from great_expectations.expectations.metrics.table_metric_provider import TableMetricProvider

from orchard.contracts.bounds import MIN_ROWS, MIN_VALUES, bound
from orchard.contracts.profile import batch_profile, parse_profile_columns
from orchard.contracts.reference import key_share
from orchard.portfolio.expressions import row_mask

PROFILE_METRIC = "orchard.batch_profile"
KEY_SHARE_METRIC = "orchard.key_share"
RULE_METRIC = "orchard.rule_violations"


class _FrameMetric(TableMetricProvider):
    """A table metric computed from the whole pandas batch by `compute` (one pass, no SQL or Spark variant)."""

    @classmethod
    def compute(cls, df: pd.DataFrame, kwargs: dict[str, Any]) -> Any:
        raise NotImplementedError

    @metric_value(engine=PandasExecutionEngine)
    def _pandas(
        cls, execution_engine, metric_domain_kwargs, metric_value_kwargs, metrics, runtime_configuration
    ):
        df, _, _ = execution_engine.get_compute_domain(
            domain_kwargs=metric_domain_kwargs, domain_type=MetricDomainTypes.TABLE
        )
        return cls.compute(df, metric_value_kwargs)


class BatchProfileMetric(_FrameMetric):
    """The batch's profile (orchard.contracts.profile) over the contract's [column, kind] pairs."""

    metric_name = PROFILE_METRIC
    value_keys = ("profile_columns",)

    @classmethod
    def compute(cls, df: pd.DataFrame, kwargs: dict[str, Any]) -> Any:
        return batch_profile(df, parse_profile_columns(kwargs["profile_columns"]))


class KeyShareMetric(_FrameMetric):
    """How many of the batch's (non-null) keys a stored reference key set holds."""

    metric_name = KEY_SHARE_METRIC
    value_keys = ("key_columns", "reference")

    @classmethod
    def compute(cls, df: pd.DataFrame, kwargs: dict[str, Any]) -> Any:
        share = key_share(df, list(kwargs["key_columns"]), Path(kwargs["reference"]))
        return {"rows": share.rows, "found": share.found, "missing_examples": share.missing_examples}


class RuleViolationsMetric(_FrameMetric):
    """The rows breaking each cross-field rule of the portfolio (guarded pandas expressions), in one pass."""

    metric_name = RULE_METRIC
    value_keys = ("rules",)

    @classmethod
    def compute(cls, df: pd.DataFrame, kwargs: dict[str, Any]) -> Any:
        out = []
        for rule in kwargs["rules"]:
            broken = ~row_mask(df, rule, f"rule {rule!r}")
            examples = df.loc[broken].head(2).astype(str).to_dict(orient="records")
            out.append({"rule": rule, "violations": int(broken.sum()), "examples": examples})
        return {"rows": len(df), "rules": out}


def _fmt(value: float) -> str:
    if math.isinf(value):
        return "-inf" if value < 0 else "inf"
    return f"{value:.4g}"


def _breach(
    check: dict[str, Any], observed: float, low: float, high: float, shown: str | None = None
) -> dict[str, Any]:
    name = check["metric"] if check.get("column") is None else f"{check['metric']}({check['column']})"
    text = shown or f"{_fmt(observed)} outside {_fmt(low)}..{_fmt(high)}"
    return {
        "column": check.get("column"),
        "metric": check["metric"],
        "observed": observed,
        "low": low,
        "high": high,
        "message": f"{name} {text} (history: {check['history']})",
    }


def _observed(check: dict[str, Any], profile: dict[str, Any]) -> tuple[float | None, int]:
    """Return a check's observed value in the batch and the count its sampling error is taken at."""
    rows = int(profile["rows"])
    metric = check["metric"]
    if metric == "rows":
        return (math.log(rows) if rows else -math.inf), max(rows, 1)
    column = profile["columns"].get(check["column"])
    if column is None:
        return None, 0
    present = round(rows * (1.0 - column["null_share"]))
    if metric == "null_share":
        return column["null_share"], rows
    if metric in ("distinct", "unique_ratio"):
        return (float(column[metric]), present) if present >= MIN_ROWS else (None, 0)
    if metric.startswith("share["):
        if present < MIN_ROWS or "shares" not in column:
            return None, 0
        return column["shares"].get(metric[len("share[") : -1], 0.0), present
    values = int(column.get("values", 0))
    if values < MIN_VALUES or metric not in column:
        return None, 0
    return float(column[metric]), values


def judge(checks: list[dict[str, Any]], profile: dict[str, Any], tolerance: float) -> dict[str, Any]:
    """Return the breaches and skipped checks of a batch profile (a GE result's `details`)."""
    breaches, skipped = [], []
    for check in checks:
        observed, n = _observed(check, profile)
        if observed is None:
            skipped.append(f"{check['metric']}({check.get('column')}): too few values in the batch")
            continue
        if "low" in check:  # a plain lower bound (distinct values, unique ratio)
            if observed < check["low"]:
                breaches.append(
                    _breach(check, observed, check["low"], math.inf, f"{_fmt(observed)} below {check['low']}")
                )
            continue
        low, high = bound(check, n, tolerance)
        if not low <= observed <= high:
            if check["metric"] == "rows":
                shown = f"{profile['rows']} rows outside {math.exp(low):.0f}..{math.exp(high):.0f}"
                breaches.append(_breach(check, float(profile["rows"]), math.exp(low), math.exp(high), shown))
            else:
                breaches.append(_breach(check, observed, low, high))
    return {"breaches": breaches, "skipped": skipped}


class _HistoryExpectation(BatchExpectation):
    """Metrics of the batch's profile held to bounds learnt from the source's accepted history.

    `checks` is the learnt checks as JSON text and `profile_columns` the profiled columns as text: GE copies an
    expectation's kwargs on every access, and a string is copied for free where a list of dicts is not.
    """

    profile_columns: str
    checks: str
    tolerance: float = 5.0

    metric_dependencies: ClassVar[tuple[str, ...]] = (PROFILE_METRIC,)
    success_keys: ClassVar[tuple[str, ...]] = ("profile_columns", "checks", "tolerance")
    args_keys: ClassVar[tuple[str, ...]] = ()

    def _validate(
        self, metrics: dict, runtime_configuration: dict | None = None, execution_engine: Any = None
    ) -> dict:
        checks = json.loads(self.checks)
        details = judge(checks, metrics[PROFILE_METRIC], self.tolerance)
        breaches = details["breaches"]
        observed = "; ".join(b["message"] for b in breaches) or f"{len(checks)} checks within their bounds"
        return {"success": not breaches, "result": {"observed_value": observed, "details": details}}


class ExpectTableRowCountToMatchHistory(_HistoryExpectation):
    """The batch's row count stays near the last accepted batch's (volume: missing or extra rows)."""


class ExpectColumnCompletenessToMatchHistory(_HistoryExpectation):
    """A nullable column's share of nulls stays near its history (a null spike, a column filled in)."""


class ExpectColumnScaleToMatchHistory(_HistoryExpectation):
    """A number column's mean and spread stay within a factor of their history (units, swapped columns)."""


class ExpectColumnVarietyToMatchHistory(_HistoryExpectation):
    """A column that always varied does not become constant; an identifier does not start repeating."""


class ExpectColumnDistributionToMatchHistory(_HistoryExpectation):
    """A column's mean, deviation, quantiles and category shares stay within their history's bounds."""


class _KeyShareExpectation(BatchExpectation):
    key_columns: list[str]
    reference: str
    checks: str
    tolerance: float = 5.0

    metric_dependencies: ClassVar[tuple[str, ...]] = (KEY_SHARE_METRIC,)
    success_keys: ClassVar[tuple[str, ...]] = ("key_columns", "reference", "checks", "tolerance")
    args_keys: ClassVar[tuple[str, ...]] = ()
    counted: ClassVar[str] = "found"

    def _validate(
        self, metrics: dict, runtime_configuration: dict | None = None, execution_engine: Any = None
    ) -> dict:
        share = metrics[KEY_SHARE_METRIC]
        rows = int(share["rows"])
        counted = share["found"] if self.counted == "found" else rows - share["found"]
        value = counted / rows if rows else 0.0
        breaches = []
        for check in json.loads(self.checks):
            low, high = bound(check, max(rows, 1), self.tolerance)
            if rows and not low <= value <= high:
                breaches.append(_breach(check, value, max(low, 0.0), min(high, 1.0)))
        examples = share["missing_examples"] if self.counted != "found" else []
        observed = "; ".join(b["message"] for b in breaches) or f"{value:.4f} of {rows} keys ({self.counted})"
        if examples and breaches:
            observed += f", e.g. {examples}"
        details = {"share": value, "rows": rows, "breaches": breaches, "missing_examples": examples}
        return {"success": not breaches, "result": {"observed_value": observed, "details": details}}


class ExpectTableKeysReusedToMatchHistory(_KeyShareExpectation):
    """The share of the batch's keys already seen in earlier accepted batches stays near its history
    (duplicates across months, re-keyed or shuffled identifiers)."""

    counted = "found"


class ExpectColumnValuesToExistInSource(_KeyShareExpectation):
    """A foreign key's values exist in the source it references (as the lake holds it); orphans are bounded."""

    target: str
    counted = "orphans"
    success_keys: ClassVar[tuple[str, ...]] = ("key_columns", "reference", "target", "checks", "tolerance")


class ExpectRowsToSatisfyRules(BatchExpectation):
    """Every row satisfies each cross-field rule declared for the source in the portfolio."""

    rules: list[str]
    metric_dependencies: ClassVar[tuple[str, ...]] = (RULE_METRIC,)
    success_keys: ClassVar[tuple[str, ...]] = ("rules",)
    args_keys: ClassVar[tuple[str, ...]] = ("rules",)

    def _validate(
        self, metrics: dict, runtime_configuration: dict | None = None, execution_engine: Any = None
    ) -> dict:
        found = metrics[RULE_METRIC]
        rows = found["rows"]
        breaches = [
            {
                "column": item["rule"],
                "metric": "violations",
                "observed": item["violations"],
                "message": f"{item['violations']} of {rows} rows break {item['rule']!r}, e.g. {item['examples'][:1]}",
            }
            for item in found["rules"]
            if item["violations"]
        ]
        observed = (
            "; ".join(b["message"] for b in breaches) or f"{len(self.rules)} rules hold on all {rows} rows"
        )
        return {
            "success": not breaches,
            "result": {"observed_value": observed, "details": {"breaches": breaches}},
        }
