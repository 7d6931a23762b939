"""Readable one-line descriptions of the expectations a Great Expectations result says were broken."""

from __future__ import annotations

from typing import Any

_EXAMPLES = 5
# Keys of a result's meta that change on every run; dropped so equal validations give equal files.
VOLATILE_META = ("run_id", "validation_time", "batch_markers", "validation_id", "checkpoint_id")


def _distinct(values: list[Any]) -> list[Any]:
    seen: list[Any] = []
    for value in values:
        if value not in seen:
            seen.append(value)
    return seen[:_EXAMPLES]


def _target(kind: str, kwargs: dict[str, Any]) -> str:
    if "column" in kwargs:
        return str(kwargs["column"])
    if "target" in kwargs:  # a foreign key: its column(s)
        return ",".join(kwargs.get("key_columns", []))
    if kind.startswith("expect_compound") or kind.startswith("expect_multicolumn"):
        return ",".join(kwargs.get("column_list", []))
    return ""


def _columns_message(kwargs: dict[str, Any], result: dict[str, Any]) -> str:
    expected = list(kwargs.get("column_list", []))
    observed = list(result.get("observed_value") or [])
    missing = [c for c in expected if c not in observed]
    extra = [c for c in observed if c not in expected]
    parts = []
    if missing:
        parts.append(f"missing {missing}")
    if extra:
        parts.append(f"unexpected {extra}")
    return ", ".join(parts) or f"columns out of order: {observed}"


def describe_failure(item: dict[str, Any]) -> str:
    """Return one line naming a broken expectation, its column, and what was wrong (from its JSON result)."""
    config = item.get("expectation_config") or {}
    kind = str(config.get("type", "unknown_expectation"))
    kwargs = dict(config.get("kwargs") or {})
    result = dict(item.get("result") or {})
    exception = dict(item.get("exception_info") or {})
    target = _target(kind, kwargs)
    name = f"{kind}({target})" if target else kind

    if exception.get("raised_exception"):
        message = str(exception.get("exception_message") or "error").strip().splitlines()[0]
        return f"{name}: could not be evaluated: {message}"
    if kind == "expect_table_columns_to_match_ordered_list":
        return f"{name}: {_columns_message(kwargs, result)}"
    if kind == "expect_table_row_count_to_be_between":
        bounds = f"{kwargs.get('min_value')}..{kwargs.get('max_value')}"
        return f"{name}: {result.get('observed_value')} rows, expected {bounds}"
    if "details" in result:  # Orchard's expectations say what broke in their observed value
        return f"{name}: {result.get('observed_value')}"
    if "unexpected_count" not in result:
        # Aggregate expectations (e.g. the dtype check of a non-object column) report one observed value.
        expected = kwargs.get("type_")
        detail = f", expected {expected}" if expected is not None else ""
        return f"{name}: observed {result.get('observed_value')!r}{detail}"

    count = f"{result.get('unexpected_count')} unexpected of {result.get('element_count')}"
    examples = _distinct(list(result.get("partial_unexpected_list") or []))
    if kind == "expect_column_values_to_be_in_set":
        return f"{name}: unexpected {examples} ({count})"
    if kind == "expect_column_values_to_not_be_null" or not examples:
        return f"{name}: {count}"
    return f"{name}: {count}, e.g. {examples}"


def _missing_columns(failed: list[dict[str, Any]]) -> set[str]:
    for item in failed:
        config = item.get("expectation_config") or {}
        if config.get("type") == "expect_table_columns_to_match_ordered_list":
            observed = (item.get("result") or {}).get("observed_value") or []
            return {c for c in (config.get("kwargs") or {}).get("column_list", []) if c not in observed}
    return set()


def broken_expectations(result: dict[str, Any]) -> list[str]:
    """Return a readable line for every failed expectation of a suite validation result (JSON form).

    Table-level findings come first; a check on a column the batch lacks says so instead of GE's error.
    """
    failed = [item for item in result.get("results", []) if not item.get("success")]
    missing = _missing_columns(failed)
    table_lines: list[str] = []
    column_lines: list[str] = []
    for item in failed:
        config = item.get("expectation_config") or {}
        kind = str(config.get("type", ""))
        column = (config.get("kwargs") or {}).get("column")
        breaches = ((item.get("result") or {}).get("details") or {}).get("breaches") or []
        if breaches and not (item.get("exception_info") or {}).get("raised_exception"):
            # a history expectation checks many metrics: one line per metric out of its bounds
            lines = [f"{kind}({b['column'] or ''}): {b['message']}" for b in breaches]
            (table_lines if kind.startswith("expect_table_") else column_lines).extend(lines)
        elif kind.startswith("expect_table_"):
            table_lines.append(describe_failure(item))
        elif column in missing:
            column_lines.append(f"{kind}({column}): column {column} is missing")
        else:
            column_lines.append(describe_failure(item))
    return table_lines + column_lines


def stable_result(result: dict[str, Any]) -> dict[str, Any]:
    """Return the JSON result without the run-specific meta, so re-validating gives the same file."""
    meta = {k: v for k, v in (result.get("meta") or {}).items() if k not in VOLATILE_META}
    return {**result, "meta": meta}
