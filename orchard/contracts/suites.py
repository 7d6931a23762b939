"""The data contract of a source as a Great Expectations suite, derived from its spec in orchard.sources."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Final

from orchard.contracts.bounds import LearntChecks
from orchard.contracts.profile import format_profile_columns, profile_columns
from orchard.months import month_end, month_start, parse_month
from orchard.portfolio.spec import Check, Severity
from orchard.sources import BATCH_ID, EVENT_TIME, SourceSpec, batch_id

if TYPE_CHECKING:
    import great_expectations as gx
    from great_expectations.expectations.metadata_types import FailureSeverity

# The GE type names that match the landing dtypes. "str" makes GE check every value of an object column,
# so a number smuggled into a string column is caught; "Timestamp" is the scalar type of a tz-aware column,
# so a naive datetime64 column fails.
GX_TYPES: dict[str, str] = {
    "string": "str",
    "category": "str",
    "int": "int64",
    "float": "float64",
    "timestamp": "Timestamp",
}


GX_SEVERITY: dict[Severity, str] = {"fail": "critical", "warn": "warning"}
"""The GE failure severity of each contract severity: only `critical` failures quarantine a batch."""

HISTORY_EXPECTATIONS: dict[Check, str] = {
    "row_count": "ExpectTableRowCountToMatchHistory",
    "completeness": "ExpectColumnCompletenessToMatchHistory",
    "scale": "ExpectColumnScaleToMatchHistory",
    "variety": "ExpectColumnVarietyToMatchHistory",
    "distribution": "ExpectColumnDistributionToMatchHistory",
}
"""The custom expectation of each kind of profile check (orchard.contracts.expectations)."""
KEY_REUSE: Final = "key_reuse"


@dataclass(frozen=True)
class HistoryContract:
    """What a batch's history part is built from: the learnt checks and the stored reference key sets."""

    learnt: LearntChecks
    references: dict[str, str] = field(default_factory=dict)
    """Path of the reference key set by name: `key_reuse`, or a foreign-key column."""


def _gx_severity(severity: Severity) -> FailureSeverity:
    from great_expectations.expectations.metadata_types import FailureSeverity

    return FailureSeverity(GX_SEVERITY[severity])


def _as_text(checks: list[dict[str, Any]]) -> str:
    return json.dumps(checks, sort_keys=True)


def _history_expectations(spec: SourceSpec, history: HistoryContract) -> list[Any]:
    from orchard.contracts import expectations as oe  # imports great_expectations (seconds): deferred

    contract, learnt = spec.contract, history.learnt
    columns = format_profile_columns(profile_columns(spec))
    out: list[Any] = []
    for kind, class_name in HISTORY_EXPECTATIONS.items():
        if learnt.checks.get(kind):
            expectation = getattr(oe, class_name)
            out.append(
                expectation(
                    profile_columns=columns,
                    checks=_as_text(learnt.checks[kind]),
                    tolerance=contract.tolerance,
                    severity=_gx_severity(contract.severity_of(kind)),
                )
            )
    if learnt.checks.get(KEY_REUSE) and KEY_REUSE in history.references:
        out.append(
            oe.ExpectTableKeysReusedToMatchHistory(
                key_columns=list(spec.key),
                reference=history.references[KEY_REUSE],
                checks=_as_text(learnt.checks[KEY_REUSE]),
                tolerance=contract.tolerance,
                severity=_gx_severity(contract.severity_of(KEY_REUSE)),
            )
        )
    by_column = {c["column"]: c for c in learnt.checks.get("foreign_keys", [])}
    for column, target in spec.foreign_keys:
        if column in by_column and column in history.references:
            out.append(
                oe.ExpectColumnValuesToExistInSource(
                    key_columns=[column],
                    reference=history.references[column],
                    target=target,
                    checks=_as_text([by_column[column]]),
                    tolerance=contract.tolerance,
                    severity=_gx_severity(contract.severity_of("foreign_keys")),
                )
            )
    return out


def suite_name(source: str, month: str) -> str:
    """Return the name of a batch's contract suite (the month sets the event-time window)."""
    return f"{source}_contract_{parse_month(month)}"


def build_suite(
    spec: SourceSpec, month: str, n_users: int, history: HistoryContract | None = None
) -> gx.ExpectationSuite:
    """Return the data contract of one monthly batch: its spec's schema and rules, plus its history's checks."""
    import great_expectations as gx
    from great_expectations import expectations as gxe

    from orchard.contracts import expectations as oe  # imports great_expectations (seconds): deferred

    start, end = month_start(month, spec.timezone), month_end(month, spec.timezone)
    low_rows, high_rows = spec.row_bounds(n_users)
    expectations: list[gxe.Expectation] = [
        gxe.ExpectTableColumnsToMatchOrderedList(column_list=spec.column_names),
        gxe.ExpectTableRowCountToBeBetween(min_value=low_rows, max_value=high_rows),
    ]
    for col in spec.columns:
        expectations.append(gxe.ExpectColumnValuesToBeOfType(column=col.name, type_=GX_TYPES[col.dtype]))
        if not col.nullable:
            expectations.append(gxe.ExpectColumnValuesToNotBeNull(column=col.name))
        if col.min_value is not None or col.max_value is not None:
            expectations.append(
                gxe.ExpectColumnValuesToBeBetween(
                    column=col.name, min_value=col.min_value, max_value=col.max_value
                )
            )
        if col.categories is not None:
            expectations.append(
                gxe.ExpectColumnValuesToBeInSet(column=col.name, value_set=list(col.categories))
            )
    if len(spec.key) == 1:
        expectations.append(gxe.ExpectColumnValuesToBeUnique(column=spec.key[0]))
    else:
        expectations.append(gxe.ExpectCompoundColumnsToBeUnique(column_list=list(spec.key)))
    # The month is half-open: [first instant, first instant of the next month).
    expectations.append(
        gxe.ExpectColumnValuesToBeBetween(
            column=EVENT_TIME, min_value=start.to_pydatetime(), max_value=end.to_pydatetime(), strict_max=True
        )
    )
    expectations.append(
        gxe.ExpectColumnValuesToBeInSet(column=BATCH_ID, value_set=[batch_id(spec.name, month)])
    )
    rule_severity = _gx_severity(spec.contract.severity_of("rules"))
    if spec.rules:
        expectations.append(oe.ExpectRowsToSatisfyRules(rules=list(spec.rules), severity=rule_severity))
    if history is not None and history.learnt.applied:
        expectations += _history_expectations(spec, history)
    learnt = history.learnt if history is not None else None
    return gx.ExpectationSuite(
        name=suite_name(spec.name, month),
        expectations=expectations,
        meta={
            "source": spec.name,
            "month": month,
            "n_users": n_users,
            "derived_from": "the portfolio's source",
            "history": {
                "applied": bool(learnt and learnt.applied),
                "note": learnt.note if learnt else "schema contract only: no history given",
                "skipped": list(learnt.skipped) if learnt else [],
            },
        },
    )
