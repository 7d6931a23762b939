"""Where a source's batches arrive (files per period, or a SQL table or query) and how a batch is read.

A landed batch is read as the source delivers it and normalised to the lake's layout: the event-time column is
renamed `event_ts` and converted to UTC (naive times are read in the source's time zone), the `batch_id` column
is added when the source has none, and the declared columns come first in declared order. Nothing else is
changed: a value of the wrong type stays wrong, so the data contract sees it and quarantines the batch.
"""

from __future__ import annotations

import hashlib
import re
import warnings
from collections.abc import Hashable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import pandas as pd
import pyarrow as pa
import sqlalchemy as sa

from orchard.atomic import file_sha256
from orchard.errors import OrchardError
from orchard.months import month_end, month_start
from orchard.portfolio.spec import FileLanding, SqlLanding
from orchard.sources import BATCH_ID, EVENT_TIME, SourceSpec, batch_id


@dataclass(frozen=True)
class LandedBatch:
    """A batch as it arrived: its rows in the lake's layout, where it came from, and a hash of its content."""

    frame: pd.DataFrame
    origin: str
    sha256: str


def landing_file(spec: SourceSpec, month: str, *, portfolio_folder: Path, home: Path) -> Path:
    """Return the file a file-landed source's batch of `month` is expected in."""
    if not isinstance(spec.landing, FileLanding):
        raise OrchardError(f"source {spec.name} does not land as files")
    text = spec.landing.path.replace("{home}", str(home.resolve())).replace("{period}", month)
    path = Path(text)
    return path if path.is_absolute() else portfolio_folder / path


def file_format_of(path: Path, what: str) -> Literal["csv", "parquet"]:
    """Return a file's format by its suffix, or raise naming the file."""
    suffix = path.suffix.lower()
    if suffix == ".csv":
        return "csv"
    if suffix in (".parquet", ".pq"):
        return "parquet"
    raise OrchardError(f"{what} {path} must be .csv or .parquet, not {suffix or 'no suffix'}")


def read_table(
    path: Path,
    file_format: Literal["csv", "parquet"],
    *,
    what: str,
    text_columns: Iterable[str] | Literal["all"] = (),
) -> pd.DataFrame:
    """Read a lender's CSV or Parquet file as it is: one clear error naming it (`what`) if absent or unreadable.

    `text_columns` are read from CSV as text (ids and codes keep their leading zeros; "all": every column).
    """
    if not path.is_file():
        raise OrchardError(f"{what} {path} does not exist")
    if path.stat().st_size == 0:
        raise OrchardError(f"{what} {path} is empty")
    text: type[str] | dict[Hashable, type[str]] = (
        str if text_columns == "all" else {name: str for name in text_columns}
    )
    try:
        if file_format == "csv":
            return pd.read_csv(path, dtype=text, keep_default_na=True)
        return pd.read_parquet(path)
    except (OSError, ValueError, UnicodeDecodeError, pa.ArrowException, pd.errors.ParserError) as exc:
        kind = "CSV" if file_format == "csv" else "Parquet"
        raise OrchardError(f"cannot read {kind} file {path}: {exc}") from None


def _read_sql(landing: SqlLanding, spec: SourceSpec, month: str, url: str) -> pd.DataFrame:
    start, end = month_start(month, spec.timezone), month_end(month, spec.timezone)
    if landing.table is not None:
        query = sa.text(
            f'select * from {landing.table} where "{spec.event_time_column}" >= :start '  # noqa: S608 (the table matches the spec's identifier pattern, the column is quoted)
            f'and "{spec.event_time_column}" < :end'
        )
    else:
        query = sa.text(str(landing.query))
    engine = sa.create_engine(url)
    try:
        with engine.connect() as connection:
            return pd.read_sql(
                query, connection, params={"start": start.to_pydatetime(), "end": end.to_pydatetime()}
            )
    except sa.exc.SQLAlchemyError as exc:
        detail = str(exc).splitlines()[0]
        raise OrchardError(f"cannot read source {spec.name} of {month} from SQL: {detail}") from None
    finally:
        engine.dispose()


def utc_times(
    values: pd.Series,
    zone: str,
    *,
    lenient: bool = False,
    nonexistent: Literal["NaT", "shift_forward"] = "NaT",
) -> pd.Series:
    """Return times as UTC: zoned ones (datetimes, or text with offsets, which may differ row to row) converted,
    naive ones read in `zone`. Text is ISO 8601 (any format pandas infers when lenient); what does not parse,
    and a local time that repeats (or, unless shifted forward, does not exist) in the zone, becomes NaT.
    """
    if pd.api.types.is_datetime64_any_dtype(values.dtype):
        parsed = values
    else:
        text_format = "mixed" if lenient else "ISO8601"
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # pandas warns about mixed offsets and inferred formats
            try:
                parsed = pd.to_datetime(values, errors="coerce", format=text_format)
            except (ValueError, TypeError):  # naive and zoned text mixed in one column
                parsed = pd.Series(pd.NaT, index=values.index, dtype="datetime64[ns, UTC]")
            if not pd.api.types.is_datetime64_any_dtype(parsed.dtype):  # several offsets: each is absolute
                parsed = pd.to_datetime(values, errors="coerce", utc=True, format=text_format)
    if parsed.dt.tz is None:
        parsed = parsed.dt.tz_localize(zone, ambiguous="NaT", nonexistent=nonexistent)
    return parsed.dt.tz_convert("UTC")


def _utc(values: pd.Series, zone: str) -> pd.Series:
    """Return a timestamp column in UTC, or as it is when a value is not a time (the contract then sees it)."""
    if not (pd.api.types.is_datetime64_any_dtype(values.dtype) or values.dtype == object):
        return values
    parsed = utc_times(values, zone, nonexistent="shift_forward")
    return parsed if (parsed.notna() | values.isna()).all() else values


def normalise(frame: pd.DataFrame, spec: SourceSpec, month: str) -> pd.DataFrame:
    """Return a landed frame in the lake's layout (see the module docstring); values are not coerced."""
    out = (
        frame.rename(columns={spec.event_time_column: EVENT_TIME})
        if spec.event_time_column in frame
        else frame
    )
    out = out.copy()
    for column in spec.columns:
        if column.dtype == "timestamp" and column.name in out.columns:
            out[column.name] = _utc(out[column.name], spec.timezone)
    if BATCH_ID not in out.columns:
        out[BATCH_ID] = batch_id(spec.name, month)
    declared = [c for c in spec.column_names if c in out.columns]
    return out[[*declared, *(c for c in out.columns if c not in declared)]]


def read_landed(
    spec: SourceSpec, month: str, *, portfolio_folder: Path, home: Path, sql_urls: dict[str, str]
) -> LandedBatch:
    """Read a source's batch of `month` where it lands, normalised to the lake's layout."""
    landing = spec.landing
    if isinstance(landing, SqlLanding):
        if landing.connection not in sql_urls:
            raise OrchardError(
                f"source {spec.name} reads SQL connection {landing.connection!r}, which is not configured "
                f"(set ORCHARD_SQL_URLS to a JSON object with a {landing.connection!r} URL)"
            )
        raw = _read_sql(landing, spec, month, sql_urls[landing.connection])
        digest = hashlib.sha256(pd.util.hash_pandas_object(raw, index=False).to_numpy().tobytes())
        digest.update(",".join(map(str, raw.columns)).encode())
        return LandedBatch(normalise(raw, spec, month), f"sql:{landing.connection}", digest.hexdigest())
    if landing is None:
        raise OrchardError(f"source {spec.name} declares no landing")
    path = landing_file(spec, month, portfolio_folder=portfolio_folder, home=home)
    # ids and codes stay text ("00123" keeps its zeros); numbers and times are parsed, then checked
    text = [c.name for c in spec.columns if c.dtype in ("string", "category")]
    raw = read_table(path, landing.file_format, what="landing file", text_columns=text)
    return LandedBatch(normalise(raw, spec, month), str(path), file_sha256(path))


def landed_months(spec: SourceSpec, *, portfolio_folder: Path, home: Path) -> list[str] | None:
    """Return the months whose landing file is there, sorted (None for a SQL source: asked per period)."""
    if not isinstance(spec.landing, FileLanding):
        return None
    pattern = landing_file(spec, "\0", portfolio_folder=portfolio_folder, home=home)
    before, _, after = str(pattern).partition("\0")
    matcher = re.compile(re.escape(before) + r"(\d{4}-(?:0[1-9]|1[0-2]))" + re.escape(after) + "$")
    directory = Path(before).parent
    if not directory.is_dir():
        return []
    found = (matcher.match(str(p)) for p in directory.rglob("*"))
    return sorted({m.group(1) for m in found if m})
