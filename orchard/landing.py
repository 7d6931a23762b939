"""Where a source's batches arrive (files per period, or a SQL table or query) and how a batch is read.

A landed batch is read as the source delivers it and normalised to the lake's layout: the event-time column is
renamed `event_ts` and converted to UTC (naive times are read in the source's time zone), the `batch_id` column
is added when the source has none, and the declared columns come first in declared order. Nothing else is
changed: a value of the wrong type stays wrong, so the data contract sees it and quarantines the batch.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from pathlib import Path

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


def _read_file(path: Path, spec: SourceSpec, file_format: str) -> pd.DataFrame:
    if not path.is_file():
        raise OrchardError(f"no landing file for batch: {path} does not exist")
    # ids and codes stay text ("00123" keeps its zeros); numbers and times are parsed, then checked
    text_columns = {c.name: str for c in spec.columns if c.dtype in ("string", "category")}
    try:
        if file_format == "csv":
            return pd.read_csv(path, dtype=text_columns, keep_default_na=True)
        return pd.read_parquet(path)
    except (OSError, ValueError, UnicodeDecodeError, pa.ArrowException, pd.errors.ParserError) as exc:
        kind = "CSV" if file_format == "csv" else "Parquet"
        raise OrchardError(f"cannot read {kind} file {path}: {exc}") from None


def _read_sql(landing: SqlLanding, spec: SourceSpec, month: str, url: str) -> pd.DataFrame:
    start, end = month_start(month, spec.timezone), month_end(month, spec.timezone)
    if landing.table is not None:
        query = sa.text(
            f'select * from {landing.table} where "{spec.event_time_column}" >= :start '
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


def _utc(values: pd.Series, zone: str) -> pd.Series:
    """Return times in UTC (naive ones read in `zone`); values that are not times are left as they are."""
    if isinstance(values.dtype, pd.DatetimeTZDtype):
        return values.dt.tz_convert("UTC")
    if pd.api.types.is_datetime64_dtype(values.dtype):
        return values.dt.tz_localize(zone, ambiguous="NaT", nonexistent="shift_forward").dt.tz_convert("UTC")
    if values.dtype == object:
        try:
            parsed = pd.to_datetime(values, format="ISO8601")
        except (ValueError, TypeError):
            return values
        return _utc(parsed, zone)
    return values


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
    raw = _read_file(path, spec, landing.file_format)
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
