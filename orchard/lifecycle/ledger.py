"""Progress of the lifecycle: one record per finished month, written atomically at the month's end.

A month without a record is (re)done from the start; every step inside it is idempotent, so an
interrupted run continues to the same end state as an uninterrupted one.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

from orchard.atomic import write_json
from orchard.model_specs import APPLICATION_PD
from orchard.settings import Settings

PRIMARY_MODEL = APPLICATION_PD.name


@dataclass
class MonthRecord:
    """What happened in one month of the lifecycle."""

    month: str
    ingested: list[str] = field(default_factory=list)
    quarantined: dict[str, list[str]] = field(default_factory=dict)
    feature_rows: int = 0
    champion: int | None = None
    score_psi: float | None = None
    top_feature_psi: dict[str, float] = field(default_factory=dict)
    breach: bool = False
    reasons: list[str] = field(default_factory=list)
    trained: dict | None = None
    promotion: dict | None = None
    stage_seconds: dict[str, float] = field(default_factory=dict)
    models: dict[str, dict] = field(default_factory=dict)
    """The other lifecycle models' month (ModelMonth as a dict), by model name; the fields above are
    application_pd's, the model with the risk managers' Evidently dashboard."""


@dataclass
class ModelMonth:
    """What happened to one stage model in one month."""

    champion: int | None = None
    score_psi: float | None = None
    breach: bool = False
    reasons: list[str] = field(default_factory=list)
    trained: dict | None = None
    promotion: dict | None = None
    tiers: dict[str, int] | None = None
    expected_loss: dict[str, float] | None = None


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


def trained_in(record: MonthRecord, model: str) -> dict | None:
    """Return what was trained for a model in a month's record (None if nothing was)."""
    if model == PRIMARY_MODEL:
        return record.trained
    return (record.models.get(model) or {}).get("trained")


def last_retrain_month(records: list[MonthRecord], model: str = PRIMARY_MODEL) -> str | None:
    """Return the latest month in which a model was trained because of the policy or first fit."""
    months = [r.month for r in records if trained_in(r, model)]
    return max(months) if months else None
