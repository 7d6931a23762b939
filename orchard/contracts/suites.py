"""The data contract of a source as a Great Expectations suite, derived from its spec in orchard.sources."""

from __future__ import annotations

from typing import TYPE_CHECKING

from orchard.months import month_end, month_start, parse_month
from orchard.sources import BATCH_ID, EVENT_TIME, SourceSpec, batch_id

if TYPE_CHECKING:
    import great_expectations as gx

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


def suite_name(source: str, month: str) -> str:
    """Return the name of a batch's contract suite (the month sets the event-time window)."""
    return f"{source}_contract_{parse_month(month)}"


def build_suite(spec: SourceSpec, month: str, n_users: int) -> gx.ExpectationSuite:
    """Return the data contract of one monthly batch of a source, derived from its spec."""
    import great_expectations as gx
    from great_expectations import expectations as gxe

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
    return gx.ExpectationSuite(
        name=suite_name(spec.name, month),
        expectations=expectations,
        meta={
            "source": spec.name,
            "month": month,
            "n_users": n_users,
            "derived_from": "the portfolio's source",
        },
    )
