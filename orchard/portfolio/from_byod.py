"""A BYOD file as a portfolio: the one-model portfolio `orchard byod` evaluates, and `--write-portfolio DIR`.

A BYOD spec describes one file: its id, event time, target and bad value, categorical, dropped and monotone
columns. model_entry turns it into a portfolio's model entry and label, which `orchard byod` evaluates on the whole
file (one period) through the lifecycle's fitting. With an event time, the same file is also a lender's history,
month by month: write_byod_portfolio writes the portfolio that runs it through the whole lifecycle
(`orchard run --portfolio DIR`): one source landed as one file
per local month of the event time (the rows as read, in the file's own format), the column types guessed as
`orchard init` guesses them, the target as an `observed` label (bad when it equals the bad value), and one served
model on every candidate feature with the spec's monotone directions (`increasing`) and `algorithm: best`.
Every guess is marked REVIEW; the document is validated before anything is written, and nothing is overwritten.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pandas as pd
import yaml

from orchard.atomic import atomic_path, write_text
from orchard.byod_spec import ByodSpec, data_path, load_spec
from orchard.errors import OrchardError
from orchard.landing import file_format_of, read_table, utc_times
from orchard.portfolio.load import FILE_NAME, parse_portfolio
from orchard.portfolio.scaffold import ColumnGuess, column_guess
from orchard.portfolio.spec import NAME

ROW_ID = "row_number"
"""The key column added when the spec has no id column (the row's number in the file, from 0)."""
SNAPSHOT_TYPES = {"int": "int", "float": "float", "category": "string", "string": "string"}


def model_name(spec: ByodSpec) -> str:
    """Return the name of a BYOD file's one portfolio model."""
    return f"{spec.name}_pd"


def _read(path: Path) -> pd.DataFrame:
    """Read the file as it is (CSV as text, so every value is written back exactly as read)."""
    frame = read_table(path, file_format_of(path, "data file"), what="data file", text_columns="all")
    if frame.empty:
        raise OrchardError(f"data file {path} has no rows")
    return frame


def _periods(spec: ByodSpec, frame: pd.DataFrame) -> pd.Series:
    """Return each row's local month (YYYY-MM) of its event time, in the spec's zone."""
    column = str(spec.event_time)
    times = utc_times(frame[column], spec.timezone, lenient=True)
    bad = times.isna()
    if bad.any():
        examples = frame.loc[bad, column].astype(str).unique()[:3].tolist()
        raise OrchardError(
            f"dataset {spec.name}: event_time column {column!r} has {int(bad.sum())} missing or unparsable "
            f"value(s), e.g. {examples}: every row of a portfolio needs its period"
        )
    return times.dt.tz_convert(spec.timezone).dt.strftime("%Y-%m")


def _features(spec: ByodSpec, columns: dict[str, ColumnGuess], key: str) -> list[str]:
    """Return the candidate features: every column but the key, time, target and dropped ones."""
    special = {spec.target, key, spec.event_time, *spec.drop}
    features = [c for c, d in columns.items() if c not in special and d["type"] != "timestamp"]
    if not features:
        raise OrchardError(f"dataset {spec.name}: no feature columns left after id, time, target and drop")
    return features


def _named(spec: ByodSpec, features: list[str]) -> None:
    """Refuse features Feast cannot name (a portfolio serves its features through feature views)."""
    invalid = [c for c in features if not re.fullmatch(NAME, c)]
    if invalid:
        raise OrchardError(
            f"dataset {spec.name}: column(s) {invalid[:5]} cannot name a feature (lower case letters, digits "
            "and _, starting with a letter): rename them in the file, or list them under drop"
        )


def model_entry(
    spec: ByodSpec, frame: pd.DataFrame
) -> tuple[dict[str, ColumnGuess], dict[str, Any], dict[str, Any]]:
    """Return the one-model portfolio of a BYOD file: (its columns, its model entry, its label); pure.

    `orchard byod` evaluates this model on the whole file (one period); `--write-portfolio` writes it with the
    file's months as periods. The key is the id column, else ROW_ID (which `frame` must then hold); features are
    every column but the key, time, target and dropped ones; text and declared categorical columns are
    categorical; the spec's monotone trends go to the scorecard, its `ascending` ones also constrain LightGBM.
    """
    key = spec.id_column or ROW_ID
    columns = {str(c): column_guess(str(c), frame[c])[0] for c in frame.columns}
    if spec.event_time is not None:
        columns[spec.event_time] = {"type": "timestamp"}
    features = _features(spec, columns, key)
    categorical = [
        f for f in features if f in spec.categorical or columns[f]["type"] in ("category", "string")
    ]
    for name in categorical:
        if columns[name]["type"] not in (
            "category",
            "string",
        ):  # declared categorical: keep its codes as text
            columns[name] = {"type": "string", **({"nullable": True} if frame[name].isna().any() else {})}
    not_features = [c for c in spec.monotone if c not in features]
    if not_features:
        raise OrchardError(
            f"dataset {spec.name}: monotone column(s) {not_features} are not features (the id, time, target "
            "or a dropped column)"
        )
    on_categorical = [c for c, t in spec.monotone.items() if c in categorical and t is not None]
    if on_categorical:
        raise OrchardError(
            f"dataset {spec.name}: monotone trends apply to numeric features, not the categorical {on_categorical}"
        )
    model = {
        "purpose": f"probability that a case of {spec.name} is bad ({spec.target} = {spec.bad_value!r})",
        "population": {"source": spec.name, "key": key, "entity": key},
        "label": "bad",
        "views": ["case_fields"],
        "features": features,
        "categorical": categorical,
        "increasing": [f for f, t in spec.monotone.items() if t == "ascending"],
        "trends": {f: t for f, t in spec.monotone.items() if f not in categorical},
        "selection": spec.selection.model_dump(mode="json"),
        "algorithm": "best",
        "serve": True,
    }
    label = {
        "description": f"{spec.target} == {spec.bad_value!r}, as observed in the file",
        "observed": {"column": spec.target, "bad_values": [spec.bad_value]},
    }
    return columns, model, label


def portfolio_document(
    spec: ByodSpec, frame: pd.DataFrame, periods: list[str], suffix: str
) -> dict[str, Any]:
    """Return the portfolio (as YAML data) that runs a BYOD file month by month; pure."""
    columns, model, label = model_entry(spec, frame)
    _named(spec, model["features"])
    name = model_name(spec)
    oot = max(1, round(len(periods) * spec.oot.fraction)) if spec.oot.fraction else 1
    return {
        "name": spec.name,
        "description": spec.description or f"REVIEW: the book of {spec.name}, from its BYOD spec",
        "timezone": spec.timezone,
        "sources": {
            spec.name: {
                "description": f"REVIEW: one row of {spec.name} (one case)",
                "landing": {"path": f"landing/{spec.name}/{{period}}{suffix}"},
                "key": [model["population"]["key"]],
                "event_time": spec.event_time,
                "columns": columns,
            }
        },
        "entities": {
            "case": {"join_key": model["population"]["key"], "description": f"one case of {spec.name}"}
        },
        "views": {
            "case_fields": {
                "entity": "case",
                "source": spec.name,
                "ttl_days": 62,
                "snapshot": {f: {"type": SNAPSHOT_TYPES[columns[f]["type"]]} for f in model["features"]},
            }
        },
        "labels": {"bad": label},
        "models": {name: model},
        "decision": {"pd_model": name},
        "policy": {"min_mature_vintages": max(2, min(6, len(periods) - oot)), "oot_months": oot},
    }


def write_byod_portfolio(spec_path: Path, folder: Path) -> tuple[Path, dict[str, int]]:
    """Write folder/portfolio.yaml and one landing file per month of a BYOD spec's file; return it and the rows
    per month.

    Refuses a spec without an event time, a folder that already holds a portfolio, and anything that would not
    validate, before writing a byte.
    """
    spec = load_spec(Path(spec_path))
    if spec.event_time is None:
        raise OrchardError(
            f"dataset {spec.name} has no event_time: a portfolio's periods are the months of its event time"
        )
    folder = Path(folder)
    target = folder / FILE_NAME
    if target.exists():
        raise OrchardError(f"{target} already exists: nothing is overwritten")
    path = data_path(spec, Path(spec_path))
    frame = _read(path)
    absent = [c for c in (spec.target, spec.event_time, spec.id_column) if c and c not in frame.columns]
    if absent:
        raise OrchardError(f"dataset {spec.name}: column(s) {absent} not in {path}")
    if spec.id_column is None:
        frame.insert(0, ROW_ID, range(len(frame)))
    month = _periods(spec, frame)
    periods = sorted(month.unique())
    suffix = ".csv" if file_format_of(path, "data file") == "csv" else ".parquet"
    document = portfolio_document(spec, frame, periods, suffix)
    for name, column in document["sources"][spec.name]["columns"].items():
        if column["type"] in ("category", "string"):  # text in the lake: codes and flags are written as text
            frame[name] = frame[name].where(frame[name].isna(), frame[name].astype(str))
    text = "# Written by `orchard byod --write-portfolio` from the BYOD spec; review every guess.\n"
    text += yaml.safe_dump(document, sort_keys=False, allow_unicode=True, width=110)
    parse_portfolio(text, folder.resolve(), str(target))  # what is written must validate
    for period in periods:
        rows = frame.loc[month == period]
        landing = folder / "landing" / spec.name / f"{period}{suffix}"
        landing.parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(landing) as tmp:
            if suffix == ".csv":
                rows.to_csv(tmp, index=False)
            else:
                rows.to_parquet(tmp, index=False)
    write_text(text, target)
    return target, {period: int((month == period).sum()) for period in periods}


def partial_last_month(rows: dict[str, int]) -> str | None:
    """Return a warning when the last month holds under half the median month's rows (an extract cut mid-month)."""
    counts = list(rows.values())
    if len(counts) < 3:
        return None
    median = float(pd.Series(counts[:-1]).median())
    last = list(rows)[-1]
    if counts[-1] >= median / 2:
        return None
    return (
        f"{last} holds {counts[-1]} rows against a median of {median:.0f}: a month cut short by the extract is "
        "quarantined by the row-count contract once history applies; remove its file if it is incomplete"
    )
