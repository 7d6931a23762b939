"""Unit tests of application labels: approved only, maturity, bad definition, point in time."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from orchard.errors import OrchardError
from orchard.labels import LABEL_COLUMNS, application_labels, mature_labels

AS_OF = "2019-08"
WINDOW = 6
BAD_DPD = 90


def _applications() -> pd.DataFrame:
    rows = [
        # id, booked month, decision
        ("good_mature", "2019-01-15", "approved"),
        ("bad_dpd", "2019-01-20", "approved"),
        ("bad_after_window", "2019-01-25", "approved"),
        ("just_mature", "2019-02-28", "approved"),
        ("immature", "2019-05-03", "approved"),
        ("immature_charged_off", "2019-05-04", "approved"),
        ("future_statement", "2019-05-05", "approved"),
        ("dpd_below", "2019-01-02", "approved"),
        ("declined", "2019-01-10", "declined"),
    ]
    return pd.DataFrame(
        {
            "application_id": [r[0] for r in rows],
            "user_id": [f"u_{r[0]}" for r in rows],
            "event_ts": pd.to_datetime([r[1] for r in rows], utc=True),
            "decision": [r[2] for r in rows],
        }
    )


def _statements(app: str, dpds: list[int], statuses: list[str] | None = None) -> list[dict[str, object]]:
    statuses = statuses or ["current"] * len(dpds)
    return [
        {"application_id": app, "months_on_book": i + 1, "dpd": d, "status": s}
        for i, (d, s) in enumerate(zip(dpds, statuses, strict=True))
    ]


def _repayments() -> pd.DataFrame:
    rows = [
        *_statements("good_mature", [0, 0, 30, 0, 0, 0]),
        *_statements("bad_dpd", [0, 30, 90, 0, 0, 0]),
        *_statements("bad_after_window", [0, 0, 0, 0, 0, 0, 120]),
        *_statements("just_mature", [0, 0, 0, 0, 0, 0]),
        *_statements("immature", [0, 0, 0]),
        *_statements("immature_charged_off", [0, 0], ["current", "charged_off"]),
        # statement 4 of a 2019-05 loan is issued in 2019-09: after as_of, so not observable yet
        *_statements("future_statement", [0, 0, 0, 95]),
        *_statements("dpd_below", [0, 89, 89, 89, 89, 89]),
        *_statements("declined", [120]),
    ]
    return pd.DataFrame(rows)


def _labels() -> pd.DataFrame:
    return application_labels(_applications(), _repayments(), AS_OF, WINDOW, BAD_DPD).set_index(
        "application_id"
    )


def test_only_approved_applications_get_labels() -> None:
    # Given approved and declined applications / When labelled
    labels = application_labels(_applications(), _repayments(), AS_OF, WINDOW, BAD_DPD)
    # Then the declined one is absent and the columns are the documented ones
    assert "declined" not in set(labels["application_id"]), "declined applications are not booked loans"
    assert list(labels.columns) == LABEL_COLUMNS, "label columns are part of the interface"
    assert len(labels) == 8, "one row per approved application"


def test_vintage_and_maturity() -> None:
    # Given loans booked in 2019-01, 2019-02 and 2019-05, a 6-month window and as_of 2019-08
    labels = _labels()
    # Then 2019-01 and 2019-02 (2019-02 + 6 = 2019-08) are mature and 2019-05 is not
    assert labels.loc["good_mature", "vintage"] == "2019-01"
    assert bool(labels.loc["good_mature", "mature"]), "2019-01 + 6 months <= 2019-08"
    assert bool(labels.loc["just_mature", "mature"]), "2019-02 + 6 months == 2019-08 is mature"
    assert not bool(labels.loc["immature", "mature"]), "2019-05 + 6 months > 2019-08"


def test_bad_definition() -> None:
    # Given statements with dpd 90, dpd 89, dpd 120 after the window and a charge-off
    labels = _labels()
    # Then only dpd >= bad_dpd or charged_off inside the window makes a loan bad
    assert labels.loc["good_mature", "bad"] == 0.0, "30 dpd is not bad"
    assert labels.loc["bad_dpd", "bad"] == 1.0, "90 dpd at month 3 is bad"
    assert labels.loc["dpd_below", "bad"] == 0.0, "89 dpd stays below the 90 threshold"
    assert labels.loc["bad_after_window", "bad"] == 0.0, "120 dpd at month 7 is outside a 6-month window"
    assert labels.loc["just_mature", "bad"] == 0.0


def test_immature_labels_are_missing_unless_already_bad() -> None:
    # Given immature loans: one clean, one charged off, one going bad only after as_of
    labels = _labels()
    # Then clean and not-yet-observable ones are NaN, the observed charge-off is already bad
    assert np.isnan(labels.loc["immature", "bad"]), "an immature clean loan has no label yet"
    assert labels.loc["immature_charged_off", "bad"] == 1.0, "a charge-off is known before maturity"
    assert np.isnan(labels.loc["future_statement", "bad"]), "a statement issued after as_of must not leak"


def test_mature_labels_keeps_only_trainable_rows() -> None:
    # Given the labels / When restricted to mature ones
    mature = mature_labels(application_labels(_applications(), _repayments(), AS_OF, WINDOW, BAD_DPD))
    # Then no immature row and no missing label remains
    assert mature["mature"].all(), "only mature rows are trainable"
    assert mature["bad"].dtype.kind == "i", "a trainable label is an integer 0/1"
    assert set(mature["application_id"]) == {
        "good_mature",
        "bad_dpd",
        "bad_after_window",
        "just_mature",
        "dpd_below",
    }


def test_missing_column_is_named() -> None:
    # Given repayments without dpd / When labelled / Then the error names the column
    with pytest.raises(OrchardError, match="dpd"):
        application_labels(_applications(), _repayments().drop(columns="dpd"), AS_OF, WINDOW, BAD_DPD)


def test_invalid_month_and_window_raise() -> None:
    # Given a malformed month or a zero window / Then a clear error
    with pytest.raises(OrchardError, match="invalid month"):
        application_labels(_applications(), _repayments(), "2019-13", WINDOW, BAD_DPD)
    with pytest.raises(OrchardError, match="window_months"):
        application_labels(_applications(), _repayments(), AS_OF, 0, BAD_DPD)


def test_duplicate_application_id_raises() -> None:
    # Given an approved application listed twice / Then labelling refuses it, naming the id
    apps = _applications()
    apps = pd.concat([apps, apps.iloc[[0]]], ignore_index=True)
    with pytest.raises(OrchardError, match="good_mature"):
        application_labels(apps, _repayments(), AS_OF, WINDOW, BAD_DPD)
