"""Unit tests of the lake: idempotent ingest into bronze, silver reads, quarantine listing."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from orchard.errors import OrchardError
from orchard.lake import (
    bronze_dir,
    ingest_batch,
    landing_path,
    quarantined_batches,
    read_bronze,
    read_silver,
    silver_frames,
    silver_months,
    silver_path,
    write_silver,
)
from orchard.settings import Settings
from orchard.testing.demo import demo_source

APPLICATIONS = demo_source("applications")

MONTH = "2019-03"


def _rows(n: int, offset: int = 0) -> pd.DataFrame:
    """Return n small applications-shaped rows (content only matters for hashing here)."""
    return pd.DataFrame(
        {
            "application_id": [f"a{i + offset}" for i in range(n)],
            "event_ts": pd.to_datetime(["2019-03-02"] * n, utc=True),
            "batch_id": ["applications-2019-03"] * n,
            "user_id": [f"u{i}" for i in range(n)],
            "requested_amount": [1000.0] * n,
            "term_months": [12] * n,
            "income_declared": [2000.0] * n,
            "employment_type": ["salaried"] * n,
            "loan_purpose": ["education"] * n,
            "channel": ["web"] * n,
            "decision": ["approved"] * n,
        }
    )


def _land(settings: Settings, df: pd.DataFrame, month: str = MONTH) -> Path:
    target = landing_path(settings, "applications", month)
    target.parent.mkdir(parents=True, exist_ok=True)
    df.to_parquet(target, index=False)
    return target


def _files(root: Path) -> dict[Path, int]:
    return {p: p.stat().st_mtime_ns for p in root.rglob("*") if p.is_file()}


def test_ingest_copies_landing_into_bronze(settings: Settings) -> None:
    # Given a landing file of 4 rows
    _land(settings, _rows(4))
    # When it is ingested
    result = ingest_batch(settings, "applications", MONTH)
    # Then bronze holds the same rows and a manifest with hash, rows, landing path and month
    assert result.created and result.rows == 4 and result.batch_id == "applications-2019-03", result
    assert result.path == bronze_dir(settings, "applications", MONTH) / "data.parquet", "bronze path"
    manifest = json.loads((result.path.parent / "manifest.json").read_text())
    assert manifest["sha256"] == result.sha256 and manifest["rows"] == 4 and manifest["month"] == MONTH, (
        manifest
    )
    assert manifest["landing_path"] == str(landing_path(settings, "applications", MONTH)), "landing path"
    pd.testing.assert_frame_equal(read_bronze(settings, "applications", MONTH), _rows(4), obj="bronze")


def test_ingest_rerun_adds_nothing(settings: Settings) -> None:
    # Given an ingested batch
    _land(settings, _rows(4))
    first = ingest_batch(settings, "applications", MONTH)
    before = _files(settings.bronze_dir)
    # When the same landing file is ingested again
    second = ingest_batch(settings, "applications", MONTH)
    # Then nothing is created or rewritten
    assert not second.created and second.sha256 == first.sha256, "rerun reported a new batch"
    assert _files(settings.bronze_dir) == before, "rerun touched bronze"


def test_ingest_refuses_different_content_for_the_same_batch(settings: Settings) -> None:
    # Given an ingested batch whose landing file is then replaced
    _land(settings, _rows(4))
    first = ingest_batch(settings, "applications", MONTH)
    _land(settings, _rows(5, offset=100))
    # When it is ingested again, then it is refused with both hashes, and bronze keeps the first content
    with pytest.raises(
        OrchardError, match=r"applications-2019-03 was already ingested with different content"
    ):
        ingest_batch(settings, "applications", MONTH)
    assert len(read_bronze(settings, "applications", MONTH)) == 4, "bronze was overwritten"
    with pytest.raises(OrchardError, match=first.sha256[:12]):
        ingest_batch(settings, "applications", MONTH)


def test_ingest_missing_landing_file_names_the_path(settings: Settings) -> None:
    # Given no landing file, when ingesting, then the error names the expected path
    expected = str(landing_path(settings, "applications", MONTH))
    with pytest.raises(OrchardError, match="does not exist") as info:
        ingest_batch(settings, "applications", MONTH)
    assert expected in str(info.value), f"path missing from {info.value}"
    assert not settings.bronze_dir.exists(), "bronze created for a missing file"


@pytest.mark.parametrize("month", ["2019-13", "201903", "March"])
def test_ingest_rejects_a_bad_month(settings: Settings, month: str) -> None:
    # Given an invalid month, when ingesting, then it is a user error naming the month
    with pytest.raises(OrchardError, match="invalid month"):
        ingest_batch(settings, "applications", month)


def test_ingest_rejects_an_unknown_source(settings: Settings) -> None:
    # Given a source that does not exist, when ingesting, then the known sources are named
    with pytest.raises(OrchardError, match="unknown source 'loans'"):
        ingest_batch(settings, "loans", MONTH)


def test_ingest_rejects_a_corrupt_parquet_file(settings: Settings) -> None:
    # Given a landing file that is not Parquet
    target = landing_path(settings, "applications", MONTH)
    target.parent.mkdir(parents=True)
    target.write_bytes(b"not parquet at all")
    # When ingesting, then the error names the file and nothing reaches bronze
    with pytest.raises(OrchardError, match="cannot read Parquet file") as info:
        ingest_batch(settings, "applications", MONTH)
    assert str(target) in str(info.value), "file not named"
    assert not settings.bronze_dir.exists(), "corrupt file reached bronze"


def test_read_bronze_of_a_batch_never_ingested(settings: Settings) -> None:
    # Given nothing ingested, when reading bronze, then the batch is named
    with pytest.raises(OrchardError, match="applications-2019-03 was not ingested"):
        read_bronze(settings, "applications", MONTH)


def test_read_silver_empty_has_the_spec_columns(settings: Settings) -> None:
    # Given an empty silver, when reading, then the frame is empty with the spec's columns and dtypes
    frame = read_silver(settings, "applications")
    assert frame.empty and list(frame.columns) == APPLICATIONS.column_names, list(frame.columns)
    assert str(frame["event_ts"].dtype) == "datetime64[ns, UTC]", "timestamp dtype"
    assert silver_months(settings, "applications") == [], "months of an empty silver"


def test_read_silver_concatenates_selected_months(settings: Settings) -> None:
    # Given silver files for two months
    write_silver(_rows(2), silver_path(settings, "applications", "2019-01"), "sha-a")
    write_silver(_rows(3, offset=10), silver_path(settings, "applications", "2019-02"), "sha-b")
    # When reading all, some, and a month that is absent
    everything = read_silver(settings, "applications")
    february = read_silver(settings, "applications", ["2019-02", "2019-05"])
    # Then rows come from the files that exist, in month order
    assert len(everything) == 5 and everything["application_id"].iloc[-1] == "a12", "all months"
    assert len(february) == 3, "month selection"
    assert silver_months(settings, "applications") == ["2019-01", "2019-02"], "silver months"


def test_read_silver_reads_only_the_columns_and_rows_asked_for(settings: Settings) -> None:
    # Given silver files for two months
    write_silver(_rows(2), silver_path(settings, "applications", "2019-01"), "sha-a")
    write_silver(_rows(3, offset=10), silver_path(settings, "applications", "2019-02"), "sha-b")
    # When reading some columns (asked in any order), then they come in the source's order, month by month too
    frame = read_silver(settings, "applications", columns=["decision", "application_id"])
    assert list(frame.columns) == ["application_id", "decision"] and len(frame) == 5, list(frame.columns)
    months = [len(f) for f in silver_frames(settings, "applications", None, ["decision"])]
    assert months == [2, 3], "one frame per month"
    # rows chosen as each month is read
    kept = read_silver(settings, "applications", where=lambda f: f["application_id"].isin(["a1", "a11"]))
    assert kept["application_id"].tolist() == ["a1", "a11"], kept["application_id"].tolist()
    assert list(kept.columns) == APPLICATIONS.column_names, "every column without `columns`"
    # an empty read keeps the columns asked for; an unknown column is named
    empty = read_silver(settings, "applications", ["2020-01"], columns=["decision"])
    assert empty.empty and list(empty.columns) == ["decision"], list(empty.columns)
    with pytest.raises(OrchardError, match=r"applications has no column.*loan_amount"):
        read_silver(settings, "applications", columns=["decision", "loan_amount"])


def test_write_silver_skips_the_same_bronze(settings: Settings) -> None:
    # Given a silver file written from a bronze hash
    target = silver_path(settings, "applications", MONTH)
    assert write_silver(_rows(2), target, "sha-a"), "first write skipped"
    stamp = target.stat().st_mtime_ns
    # When written again from the same hash, then nothing is rewritten; a new hash rewrites
    assert not write_silver(_rows(2), target, "sha-a"), "same bronze rewritten"
    assert target.stat().st_mtime_ns == stamp, "file touched"
    assert write_silver(_rows(3), target, "sha-b") and len(pd.read_parquet(target)) == 3, (
        "new bronze not written"
    )


def test_quarantined_batches_lists_committed_folders(settings: Settings) -> None:
    # Given one committed quarantine folder and one without a manifest (an interrupted write)
    done = settings.quarantine_dir / "applications" / "applications-2019-03"
    done.mkdir(parents=True)
    (done / "manifest.json").write_text("{}")
    (settings.quarantine_dir / "applications" / "applications-2019-04").mkdir()
    # When listing, then only the committed batch is reported
    assert quarantined_batches(settings) == ["applications-2019-03"], "quarantine listing"
