"""A portfolio's sources as the lake holds them: columns, types, domains, keys (the basis of each data contract).

The portfolio names each source's own columns; in the lake every source also carries two columns of Orchard's:
the event time, stored as `event_ts` (UTC) whatever the source calls it, and the `batch_id` of the batch a row
arrived in (appended last unless the source declares it). Great Expectations suites, feature functions and
populations read these specs, never a source's raw layout.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from orchard.errors import OrchardError
from orchard.portfolio.spec import ContractDef, FileLanding, Portfolio, SourceDef, SqlLanding

Dtype = Literal["string", "int", "float", "timestamp", "category"]

EVENT_TIME = "event_ts"
BATCH_ID = "batch_id"
_BATCH_ID_DESCRIPTION = "the batch this row arrived in: '<source>-<YYYY-MM>'"


@dataclass(frozen=True)
class ColumnSpec:
    """One column of a source: its type, whether it may be null, and its allowed values."""

    name: str
    dtype: Dtype
    description: str
    nullable: bool = False
    min_value: float | None = None
    max_value: float | None = None
    categories: tuple[str, ...] | None = None


@dataclass(frozen=True)
class SourceSpec:
    """A source as the lake holds it: key (unique per batch), columns, arrival and row-count bounds."""

    name: str
    description: str
    key: tuple[str, ...]
    columns: tuple[ColumnSpec, ...]
    rows_per_user: tuple[float, float] | None = None
    rows: tuple[int, int] | None = None
    event_time_column: str = EVENT_TIME
    timezone: str = "UTC"
    landing: FileLanding | SqlLanding | None = field(default=None, compare=False)
    foreign_keys: tuple[tuple[str, str], ...] = ()
    rules: tuple[str, ...] = ()
    contract: ContractDef = field(default_factory=ContractDef)

    @property
    def column_names(self) -> list[str]:
        return [c.name for c in self.columns]

    def column(self, name: str) -> ColumnSpec:
        for col in self.columns:
            if col.name == name:
                return col
        raise KeyError(f"{self.name} has no column {name!r}")

    def row_bounds(self, n_users: int) -> tuple[int, int]:
        """Return the (min, max) rows a batch may have (per simulated user when the source says so)."""
        if self.rows is not None:
            return self.rows
        if self.rows_per_user is None:
            return 0, 2**62
        low, high = self.rows_per_user
        return int(low * n_users), max(1, int(high * n_users))

    def lake_name(self, column: str) -> str:
        """Return what a source column is called in the lake (the event time becomes event_ts)."""
        return EVENT_TIME if column == self.event_time_column else column


def _column(name: str, source: SourceDef, lake_name: str) -> ColumnSpec:
    spec = source.columns[name]
    return ColumnSpec(
        name=lake_name,
        dtype=spec.type,
        description=spec.description,
        nullable=spec.nullable,
        min_value=spec.min,
        max_value=spec.max,
        categories=spec.values,
    )


def source_spec(portfolio: Portfolio, name: str) -> SourceSpec:
    """Return a source of the portfolio as the lake holds it, or raise naming the known sources."""
    if name not in portfolio.sources:
        raise OrchardError(f"unknown source {name!r}; known sources: {', '.join(sorted(portfolio.sources))}")
    source = portfolio.sources[name]

    def lake(column: str) -> str:
        return EVENT_TIME if column == source.event_time else column

    columns = [_column(c, source, lake(c)) for c in source.columns]
    if BATCH_ID not in source.columns:
        columns.append(ColumnSpec(BATCH_ID, "string", _BATCH_ID_DESCRIPTION))
    return SourceSpec(
        name=name,
        description=source.description,
        key=tuple(lake(c) for c in source.key),
        columns=tuple(columns),
        rows_per_user=source.rows_per_simulated_user,
        rows=source.rows,
        event_time_column=source.event_time,
        timezone=portfolio.source_timezone(name),
        landing=source.landing or source.sql,
        foreign_keys=tuple((lake(c), target) for c, target in source.foreign_keys.items()),
        rules=source.rules,
        contract=source.contract,
    )


def source_specs(portfolio: Portfolio) -> dict[str, SourceSpec]:
    """Return every source of the portfolio, in declaration order."""
    return {name: source_spec(portfolio, name) for name in portfolio.sources}


def batch_id(source: str, month: str) -> str:
    """Return the batch id of a source's monthly batch."""
    return f"{source}-{month}"
