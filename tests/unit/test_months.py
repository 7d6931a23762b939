"""Timestamp columns to UTC and to months: the same answers as pandas' own conversion, by dtype."""

from __future__ import annotations

import pandas as pd
import pytest

from orchard.months import timestamp_month_labels, timestamp_months, utc_timestamps

COLUMNS = {
    "naive": pd.Series(pd.date_range("2019-01-01", periods=60, freq="17D")),
    "UTC": pd.Series(pd.date_range("2019-01-01", periods=60, freq="17D", tz="UTC")),
    # late on the last day of a month in Shanghai is still the month before... or not, in UTC
    "another zone": pd.Series(pd.date_range("2019-01-31 23:00", periods=60, freq="17D", tz="Asia/Shanghai")),
    "microseconds": pd.Series(pd.date_range("2019-01-01", periods=60, freq="17D", tz="UTC")).astype(
        "datetime64[us, UTC]"
    ),
    "text": pd.Series(["2019-01-05", "2020-02-29", "2021-12-31"], index=[7, 3, 5]),
    "missing": pd.Series(
        [pd.Timestamp("2019-03-01", tz="UTC"), pd.NaT, pd.Timestamp("2019-04-30", tz="UTC")]
    ),
    "empty": pd.Series([], dtype="datetime64[ns, UTC]"),
}


@pytest.mark.parametrize("name", list(COLUMNS))
def test_utc_timestamps_and_month_labels_match_pandas(name: str) -> None:
    # given a column of timestamps of one kind
    column = COLUMNS[name]
    reference = pd.to_datetime(column, utc=True)
    # when it is converted to UTC and to months
    converted = utc_timestamps(column)
    labels = timestamp_month_labels(column)
    # then the values, dtype and index are pandas' own, and the labels are strftime's
    pd.testing.assert_series_equal(converted, reference)
    expected = reference.dt.strftime("%Y-%m")
    assert labels.index.equals(column.index)
    assert labels.fillna("missing").tolist() == expected.fillna("missing").tolist()
    if not column.isna().any():
        assert timestamp_months(column).tolist() == (reference.dt.year * 12 + reference.dt.month - 1).tolist()
