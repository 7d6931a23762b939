"""`orchard init`: scaffold a portfolio from sample files, every guess marked for review (like `feast init`).

From each sample (one source; its name is the file's stem) it guesses column types, nullability, ranges,
categories, a candidate key (unique, complete, named like an id), the event-time column, and foreign keys (a
column named like another source's single-column key). The result validates as it is; labels and models are
left as a commented template, since no file says what a bad outcome is.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import NotRequired, TypedDict

import pandas as pd
import yaml

from orchard.atomic import write_text
from orchard.errors import OrchardError
from orchard.landing import file_format_of, read_table
from orchard.portfolio.load import FILE_NAME, parse_portfolio

MAX_CATEGORIES = 30
"""A text column with at most this many distinct values (and repeats) is guessed to be a category."""
_ID_NAME = re.compile(r"(^id$|_id$|^id_|_key$|_no$|_number$)")
_NAME = re.compile(r"[^a-z0-9_]+")


class ColumnGuess(TypedDict, total=False):
    """A column's guessed definition, as portfolio.yaml spells it."""

    type: str
    values: list[str]
    min: float
    max: float
    nullable: bool


class _SourceGuess(TypedDict):
    """A source's guessed definition, in the order portfolio.yaml shows it."""

    description: str
    landing: dict[str, str]
    key: list[str]
    event_time: str
    columns: dict[str, ColumnGuess]
    foreign_keys: NotRequired[dict[str, str]]


def _read(path: Path) -> pd.DataFrame:
    # every CSV column as text: _typed guesses numbers and times only where every value parses
    return read_table(path, file_format_of(path, "sample file"), what="sample file", text_columns="all")


def _source_name(path: Path) -> str:
    name = _NAME.sub("_", path.stem.lower()).strip("_")
    if not name or not name[0].isalpha():
        name = f"source_{name}"
    return name[:60]


def _typed(values: pd.Series) -> pd.Series:
    """Return text values parsed as numbers or times where every present value parses."""
    if values.dtype != object:
        return values
    present = values.dropna()
    if present.empty:
        return values
    numbers = pd.to_numeric(present, errors="coerce")
    if numbers.notna().all():
        return pd.to_numeric(values, errors="coerce")
    times = pd.to_datetime(present, errors="coerce", format="ISO8601")
    if times.notna().all():
        return pd.to_datetime(values, errors="coerce", format="ISO8601")
    return values


def column_guess(name: str, values: pd.Series) -> tuple[ColumnGuess, str]:
    """Return a column's guessed definition and a review note (an id-like name stays text)."""
    typed = values if _ID_NAME.search(name.lower()) else _typed(values)
    spec: ColumnGuess = {}
    note = ""
    if pd.api.types.is_bool_dtype(typed):
        spec["type"] = "category"
        spec["values"] = ["False", "True"]
    elif pd.api.types.is_datetime64_any_dtype(typed):
        spec["type"] = "timestamp"
        note = (
            "zoned"
            if isinstance(typed.dtype, pd.DatetimeTZDtype)
            else "naive: read in the portfolio's timezone"
        )
    elif pd.api.types.is_numeric_dtype(typed):
        present = typed.dropna()
        whole = bool(len(present)) and bool((present == present.round()).all())
        spec["type"] = "int" if whole and not typed.isna().any() else "float"
        if len(present):
            cast = int if spec["type"] == "int" else float
            spec["min"] = cast(present.min())
            spec["max"] = cast(present.max())
            note = "range seen in the sample: widen to what is valid"
    elif _ID_NAME.search(name.lower()):
        spec["type"] = "string"
    else:
        distinct = typed.dropna().astype(str).unique()
        if 0 < len(distinct) <= MAX_CATEGORIES and len(distinct) < len(typed.dropna()):
            spec["type"] = "category"
            spec["values"] = sorted(distinct.tolist())
            note = "categories seen in the sample: add any missing level"
        else:
            spec["type"] = "string"
    if typed.isna().any():
        spec["nullable"] = True
    return spec, note


def _key(frame: pd.DataFrame) -> str | None:
    unique = [c for c in frame.columns if frame[c].notna().all() and frame[c].is_unique]
    named = [c for c in unique if _ID_NAME.search(str(c).lower())]
    found = named or unique
    return found[0] if found else None


def _source(path: Path) -> tuple[str, _SourceGuess, dict[str, str]]:
    """Return a source's name, its guessed definition, and review notes by YAML path."""
    frame = _read(path)
    if frame.empty or not len(frame.columns):
        raise OrchardError(f"sample file {path} has no rows to learn from")
    name = _source_name(path)
    notes: dict[str, str] = {}
    columns: dict[str, ColumnGuess] = {}
    for column in frame.columns:
        spec, note = column_guess(str(column), frame[column])
        columns[str(column)] = spec
        if note:
            notes[f"{name}.{column}"] = note
    times = [c for c, s in columns.items() if s["type"] == "timestamp"]
    key = _key(frame)
    if not times:
        raise OrchardError(f"sample file {path} has no date or time column: a source needs an event time")
    suffix = ".csv" if path.suffix.lower() == ".csv" else ".parquet"
    source: _SourceGuess = {
        "description": f"REVIEW: what one row of {name} is",
        "landing": {"path": f"landing/{name}/{{period}}{suffix}"},
        "key": [key] if key else [str(frame.columns[0])],
        "event_time": times[0],
        "columns": columns,
    }
    notes[f"{name}.key"] = "guessed: unique and complete in the sample" if key else "no unique column: set it"
    notes[f"{name}.event_time"] = f"guessed among {times}" if len(times) > 1 else "the only time column"
    return name, source, notes


def _foreign_keys(sources: dict[str, _SourceGuess]) -> None:
    keys = {src["key"][0]: name for name, src in sources.items() if len(src["key"]) == 1}
    for name, source in sources.items():
        links = {
            column: f"{keys[column]}.{column}"
            for column in source["columns"]
            if column in keys and keys[column] != name
        }
        if links:
            source["foreign_keys"] = links


_TEMPLATE = """
# REVIEW: no sample says what a bad outcome is. Declare labels and models, e.g.:
# entities:
#   customer: {join_key: customer_id}
# views:
#   customer_history:
#     entity: customer
#     source: <a source with customer_id>
#     ttl_days: 400
#     aggregations:
#       max_dpd_3m: {how: max, column: dpd, window_months: 3, type: int}
# labels:
#   bad_90dpd_6m:
#     performance: {source: <statements>, match: {loan_id: application_id}, event: "dpd >= 90", within_months: 6}
# models:
#   application_pd:
#     purpose: probability that a booked application goes 90+ days past due within 6 months
#     population: {source: <applications>, key: application_id, entity: customer_id,
#                  trainable: "decision == 'approved'"}
#     label: bad_90dpd_6m
#     views: [customer_history]
#     features: [max_dpd_3m]
#     request_features: [amount]
#     increasing: [max_dpd_3m]
#     serve: true
# policy:   # optional: defaults shown (docs/portfolio.md); a model's own `policy:` overrides single keys
#   min_mature_vintages: 6
#   oot_months: 2
#   promotion_margin_auc: 0.005
#   train_vintages: 24    # a fit reads the latest 24 mature vintages only (default: every one)
#   gates: {max_auc_drop: 0.01, max_ks_drop: 0.02, max_score_psi: 0.25}
#   monitoring: {score_psi_breach: 0.25, feature_psi_breach: 0.25, retrain_cooldown_months: 3}
"""


def _annotated(text: str, notes: dict[str, str]) -> str:
    """Append `# REVIEW: ...` to the YAML lines the notes are about."""
    lines = text.splitlines()
    current = None
    for i, line in enumerate(lines):
        source = re.match(r"^  ([a-z][a-z0-9_]*):$", line)
        if source:
            current = source.group(1)
            continue
        entry = re.match(r"^\s+([^:\s]+):", line)
        if current and entry and (note := notes.pop(f"{current}.{entry.group(1)}", None)):
            lines[i] = f"{line}  # REVIEW: {note}"
    return "\n".join(lines) + "\n"


def scaffold_portfolio(folder: Path, samples: list[Path], *, name: str | None = None) -> Path:
    """Write folder/portfolio.yaml guessed from sample files; refuse to overwrite an existing portfolio."""
    if not samples:
        raise OrchardError("orchard init needs at least one --from sample file")
    target = Path(folder) / FILE_NAME
    if target.exists():
        raise OrchardError(f"{target} already exists: orchard init never overwrites a portfolio")
    sources: dict[str, _SourceGuess] = {}
    notes: dict[str, str] = {}
    for path in samples:
        source_name, source, source_notes = _source(Path(path))
        if source_name in sources:
            raise OrchardError(f"two samples give the source name {source_name!r}: rename one file")
        sources[source_name] = source
        notes |= source_notes
    _foreign_keys(sources)
    portfolio_name = name or _source_name(Path(folder).resolve())
    document = {
        "name": portfolio_name,
        "description": "REVIEW: the lender and the book this portfolio covers",
        "timezone": "UTC",
        "sources": sources,
    }
    text = yaml.safe_dump(document, sort_keys=False, allow_unicode=True, width=110)
    text = (
        "# Scaffolded by `orchard init`: every guess is marked REVIEW. Reference: docs/portfolio.md\n" + text
    )
    text = _annotated(text, notes) + _TEMPLATE
    parse_portfolio(text, Path(folder).resolve(), str(target))  # what we write must validate
    write_text(text, target)
    return target
