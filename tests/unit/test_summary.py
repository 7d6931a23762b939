"""Unit tests of what the lifecycle prints: the closing summary's estimation table (early estimate vs realised, by
matured vintage) and the month's progress line."""

from __future__ import annotations

import math

import pytest
from rich.console import Console

from orchard.lifecycle.ledger import MonthRecord
from orchard.lifecycle.summary import estimation_table


def _text(table: object) -> str:
    console = Console(record=True, width=200)
    console.print(table)
    return console.export_text()


def test_each_matured_vintage_shows_its_estimates_and_their_errors() -> None:
    # Given two matured vintages (one with no AUC: a single class) and one kept from an older home (no row)
    vintages = {
        "2020-01": {
            "n": 310,
            "auc": 0.70,
            "expected_auc": 0.72,
            "auc_error": 0.02,
            "expected_auc_applicants": 0.80,
            "bad_rate": 0.10,
            "expected_bad_rate": 0.09,
            "bad_rate_error": -0.01,
        },
        "2020-02": {
            "n": 5,
            "auc": math.nan,
            "expected_auc": 0.7,
            "auc_error": math.nan,
            "bad_rate": 0.0,
            "expected_bad_rate": 0.05,
            "bad_rate_error": 0.05,
        },
        "2019-12": {},
    }
    text = _text(estimation_table(vintages, "application_pd"))
    # Then the errors are the estimate minus the realised value, the applicants' one computed apart
    first = next(line for line in text.splitlines() if "2020-01" in line)
    assert "+0.020" in first and "+0.100" in first and "-0.010" in first, first
    second = next(line for line in text.splitlines() if "2020-02" in line)
    assert "—" in second and "+0.050" in second, second
    assert "2019-12" not in text, "a vintage without its figures is not shown"


def test_the_progress_line_names_each_expectation_once(monkeypatch: pytest.MonkeyPatch) -> None:
    from flows import lifecycle

    # Given a batch warned three times by two expectations (one of them on two statistics)
    warnings = ["expect_x(a): mean 1 above 0.5", "expect_x(a): sd 2 above 1", "expect_y(b): distinct 3"]
    record = MonthRecord(month="2020-04", warned={"partner_users-2020-04": warnings})
    # When the month's progress line is logged
    lines: list[str] = []
    monkeypatch.setattr(lifecycle.progress, "info", lines.append)
    lifecycle._report(record)
    # Then each expectation is named once, in order
    assert lines == ["2020-04 | batches 0 | warned partner_users-2020-04: expect_x(a); expect_y(b)"], lines
