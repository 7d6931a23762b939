"""Progress of the lifecycle: one record per finished month, written atomically at the month's end.

A month without a record is (re)done from the start; every step inside it is idempotent, so an
interrupted run continues to the same end state as an uninterrupted one.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

from orchard.atomic import write_json
from orchard.months import month_range
from orchard.settings import Settings

LANE_STAGES = ("joint", "dashboard", "report")
"""The stages (first word of a stage_seconds key) timed in the lifecycle's lane: they overlap the other stages,
and the next month's."""


@dataclass
class ModelMonth:
    """What happened to one model in one month: monitoring, training, the promotion decision, its outputs."""

    champion: int | None = None
    score_psi: float | None = None
    top_feature_psi: dict[str, float] = field(default_factory=dict)
    breach: bool = False
    reasons: list[str] = field(default_factory=list)
    trained: dict | None = None
    promotion: dict | None = None
    tiers: dict[str, int] | None = None
    expected_loss: dict[str, float] | None = None


@dataclass
class MonthRecord:
    """What happened in one month of the lifecycle: the batches, then every model the same way."""

    month: str
    ingested: list[str] = field(default_factory=list)
    quarantined: dict[str, list[str]] = field(default_factory=dict)
    warned: dict[str, list[str]] = field(default_factory=dict)
    """Batches that passed with findings of severity warn (in silver), and the findings."""
    feature_rows: int = 0
    stage_seconds: dict[str, float] = field(default_factory=dict)
    models: dict[str, dict] = field(default_factory=dict)
    """Each model's month (ModelMonth as a dict), by model name, in the portfolio's order."""

    def model(self, name: str) -> ModelMonth:
        """Return one model's month (empty when the model did not exist yet)."""
        return ModelMonth(**(self.models.get(name) or {}))


def _path(settings: Settings, month: str) -> Path:
    return settings.state_dir / "months" / f"{month}.json"


def record_month(settings: Settings, record: MonthRecord) -> None:
    """Write a month's record atomically: from now on the month counts as done."""
    write_json(asdict(record), _path(settings, record.month))


def load_month(settings: Settings, month: str) -> MonthRecord | None:
    """Return a finished month's record, or None if the month is not done."""
    path = _path(settings, month)
    if not path.exists():
        return None
    return MonthRecord(**json.loads(path.read_text()))


def last_recorded_month(settings: Settings) -> str | None:
    """Return the latest month the lifecycle finished (its record is written last), if any."""
    for month in reversed(month_range(settings.start_month, settings.end_month)):
        if load_month(settings, month) is not None:
            return month
    return None


def trained_in(record: MonthRecord, model: str) -> dict | None:
    """Return what was trained for a model in a month's record (None if nothing was)."""
    return record.model(model).trained
