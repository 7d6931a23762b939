"""Append-only governance history of alias decisions: who moved which alias, when, and why."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal, get_args

import sqlalchemy as sa
from sqlalchemy.engine import Engine, make_url

from orchard.errors import OrchardError
from orchard.months import parse_month
from orchard.settings import Settings

Action = Literal["promote", "reject", "rollback", "set_challenger"]
ACTIONS: tuple[str, ...] = get_args(Action)
CHAMPION_ALIAS = "champion"
CHALLENGER_ALIAS = "challenger"

_metadata = sa.MetaData()
alias_events = sa.Table(
    "alias_events",
    _metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("model", sa.String(200), nullable=False, index=True),
    sa.Column("alias", sa.String(100), nullable=False),
    sa.Column("version", sa.Integer, nullable=False),
    sa.Column("previous_version", sa.Integer, nullable=True),
    sa.Column("action", sa.String(32), nullable=False),
    sa.Column("reason", sa.Text, nullable=False),
    sa.Column("approver", sa.String(200), nullable=False),
    sa.Column("gate_json", sa.Text, nullable=True),
    sa.Column("effective_month", sa.String(7), nullable=False),
    sa.Column("recorded_at", sa.DateTime(timezone=True), nullable=False),
)


@dataclass(frozen=True)
class AliasEvent:
    """One recorded alias decision."""

    id: int
    model: str
    alias: str
    version: int
    previous_version: int | None
    action: str
    reason: str
    approver: str
    gate: dict[str, Any] | None
    effective_month: str
    recorded_at: datetime

    def to_dict(self) -> dict[str, Any]:
        """Return the event as a JSON-ready dict (recorded_at as ISO 8601 UTC)."""
        return {**asdict(self), "recorded_at": self.recorded_at.isoformat()}


@contextmanager
def _engine(settings: Settings) -> Iterator[Engine]:
    """Yield an engine on the history database with its table present; dispose of it afterwards."""
    url = make_url(settings.registry_db_url)
    if url.get_backend_name() == "sqlite" and url.database and url.database != ":memory:":
        Path(url.database).parent.mkdir(parents=True, exist_ok=True)
    engine = sa.create_engine(url)
    try:
        _metadata.create_all(engine, checkfirst=True)
        yield engine
    finally:
        engine.dispose()


def _event(row: sa.Row[Any]) -> AliasEvent:
    recorded_at = row.recorded_at
    if recorded_at.tzinfo is None:  # sqlite drops the zone; we always store UTC
        recorded_at = recorded_at.replace(tzinfo=UTC)
    return AliasEvent(
        id=row.id,
        model=row.model,
        alias=row.alias,
        version=row.version,
        previous_version=row.previous_version,
        action=row.action,
        reason=row.reason,
        approver=row.approver,
        gate=json.loads(row.gate_json) if row.gate_json else None,
        effective_month=row.effective_month,
        recorded_at=recorded_at,
    )


def check_event(*, action: str, reason: str, approver: str, effective_month: str) -> None:
    """Raise a clear error if an alias event would be incomplete (checked before anything moves)."""
    if action not in ACTIONS:
        raise OrchardError(f"unknown alias action {action!r}: expected one of {', '.join(ACTIONS)}")
    if not isinstance(reason, str) or not reason.strip():
        raise OrchardError(f"alias event {action!r} needs a reason")
    if not isinstance(approver, str) or not approver.strip():
        raise OrchardError(f"alias event {action!r} needs an approver")
    parse_month(effective_month)


def record_event(
    settings: Settings,
    *,
    model: str,
    alias: str,
    version: int,
    previous_version: int | None,
    action: str,
    reason: str,
    approver: str,
    gate: dict[str, Any] | None,
    effective_month: str,
) -> AliasEvent:
    """Append one alias event (never updates or deletes) and return it."""
    check_event(action=action, reason=reason, approver=approver, effective_month=effective_month)
    values = {
        "model": model,
        "alias": alias,
        "version": int(version),
        "previous_version": None if previous_version is None else int(previous_version),
        "action": action,
        "reason": reason,
        "approver": approver,
        "gate_json": None if gate is None else json.dumps(gate, sort_keys=True, default=str),
        "effective_month": effective_month,
        "recorded_at": datetime.now(UTC),
    }
    with _engine(settings) as engine, engine.begin() as conn:
        new_id = conn.execute(sa.insert(alias_events).values(**values)).inserted_primary_key[0]
        row = conn.execute(sa.select(alias_events).where(alias_events.c.id == new_id)).one()
    return _event(row)


def events(settings: Settings, model: str, alias: str | None = None) -> list[AliasEvent]:
    """Return the model's events in the order they were recorded (optionally of one alias)."""
    query = sa.select(alias_events).where(alias_events.c.model == model)
    if alias is not None:
        query = query.where(alias_events.c.alias == alias)
    with _engine(settings) as engine, engine.connect() as conn:
        rows = conn.execute(query.order_by(alias_events.c.id)).all()
    return [_event(row) for row in rows]


def last_event(settings: Settings, model: str, alias: str) -> AliasEvent | None:
    """Return the most recently recorded event of one alias of a model, if any."""
    found = events(settings, model, alias)
    return found[-1] if found else None


def alias_at(settings: Settings, model: str, alias: str, month: str) -> int | None:
    """Return the version the alias pointed at by the end of a business month, from the history."""
    parse_month(month)
    latest: AliasEvent | None = None
    for event in events(settings, model, alias):
        # Decisions are ordered by business month first, then by when they were recorded.
        if event.effective_month <= month and (
            latest is None or (event.effective_month, event.id) >= (latest.effective_month, latest.id)
        ):
            latest = event
    return latest.version if latest else None


def champion_at(settings: Settings, model: str, month: str) -> int | None:
    """Return the champion version in force at the end of a business month (None before the first)."""
    return alias_at(settings, model, CHAMPION_ALIAS, month)
