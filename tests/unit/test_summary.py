"""Unit tests of what the lifecycle prints: the closing summary's estimation table (early estimate vs realised, by
matured vintage) and the month's progress line."""

from __future__ import annotations

import math

import pytest
from rich.console import Console

from orchard.lifecycle.ledger import MonthRecord
from orchard.lifecycle.summary import adaptation_table, estimation_table, first_adapted


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


def _month(month: str, champion: int | None, **entry: object) -> MonthRecord:
    return MonthRecord(month=month, models={"pd": {"champion": champion, **entry}})


def _made(version: int, window: str, method: str, action: str) -> dict[str, object]:
    trained = {"version": version, "train_window": window, "method": method}
    return {
        "trained": trained,
        "promotion": {"action": action, "version": version, "reason": f"gate of v{version}"},
    }


def test_months_to_adapt_count_to_the_first_post_shock_version_that_decides() -> None:
    # Given a shock in 2020-02: a fit on pre-shock data refused in 2020-03, a hold, a recalibration on
    # 2020-03..2020-04 promoted in 2020-07, and then the recalibrated version as champion from 2020-08
    records = [
        _month("2020-01", 1),
        _month("2020-03", 1, breach=True, **_made(2, "2019-01..2019-12", "fit", "reject")),
        _month(
            "2020-05", 1, breach=True, reasons=["retrain held: 2 of the 3 vintages a recalibration needs"]
        ),
        _month("2020-07", 1, breach=True, **_made(3, "2020-03..2020-04", "recalibration", "promote")),
        _month("2020-08", 3),
        _month("2020-09", 3),
    ]
    # When the first adapted version is looked for
    adapted = first_adapted(records, "2020-02", "pd")
    # Then it is the recalibration, deciding from 2020-08: 6 months after the shock (the refused fit never counts)
    assert adapted is not None and (adapted.version, adapted.method) == (3, "recalibration"), adapted
    assert (adapted.promoted_at, adapted.decides_from, adapted.months_after_shock) == (
        "2020-07",
        "2020-08",
        6,
    )
    # And the table lists each decision since the shock with its reason, then the matured vintages it decided
    text = _text(
        adaptation_table(records, "pd", "2020-02", {"2020-08": {"bad_rate": 0.12, "expected_bad_rate": 0.11}})
    )
    assert "v3 (recalibration) decides from 2020-08: 6 month(s) after the shock" in text, text
    assert (
        "fit v2: reject" in text and "recalibration v3: promote" in text and "2 of the 3 vintages" in text
    ), text
    assert "realised bad rate 0.120 vs expected 0.110" in text, text
    # And a fit reaching past the shock counts too; none at all is said so
    fit_after = [_month("2020-09", 1, **_made(4, "2019-06..2020-03", "fit", "promote")), _month("2020-10", 4)]
    later = first_adapted(fit_after, "2020-02", "pd")
    assert later is not None and later.decides_from == "2020-10", later
    assert first_adapted(records[:3], "2020-02", "pd") is None
    assert "no version made from post-shock data has decided yet" in _text(
        adaptation_table(records[:3], "pd", "2020-02", {})
    )
