"""Monthly monitoring of a champion: score the month, PSI/CSI on frozen bins, Evidently, the policy."""

from __future__ import annotations

import json
from dataclasses import dataclass, field

import pandas as pd

from model_registry.registry import champion_version, load_model, version_tags
from monitoring.policy import decide
from monitoring.psi import ReferenceProfile, psi
from monitoring.reports import add_to_workspace, drift_report, save_report
from orchard.atomic import write_parquet
from orchard.lifecycle.datasets import application_frame
from orchard.lifecycle.references import load_reference_sample, profile_path, reference_columns
from orchard.model_specs import ModelSpec
from orchard.settings import Settings


@dataclass(frozen=True)
class MonitorOutcome:
    """One month's monitoring of one model's champion."""

    model: str
    month: str
    version: int
    rows: int
    score_psi: float
    feature_psi: dict[str, float] = field(default_factory=dict)
    breach: bool = False
    retrain: bool = False
    reasons: list[str] = field(default_factory=list)
    report_path: str = ""


def score_month(settings: Settings, spec: ModelSpec, month: str, model: object, version: int) -> pd.DataFrame:
    """Score a month's applications with a model; write the scores (with the version) under home."""
    frame = application_frame(settings, spec, [month], month, with_labels=False).frame
    scored = frame[["application_id", "user_id", *spec.features]].copy()
    scored["pd"] = model.predict_pd(frame)  # type: ignore[attr-defined]
    scored["score"] = model.score(frame)  # type: ignore[attr-defined]
    scored["model_version"] = version
    write_parquet(scored, settings.home / "scores" / spec.name / f"{month}.parquet")
    return scored


def monitor_month(
    settings: Settings, spec: ModelSpec, month: str, last_retrain: str | None
) -> MonitorOutcome | None:
    """Monitor the champion on a month's applications; None while no champion exists."""
    version = champion_version(settings, spec.name)
    if version is None:
        return None
    key = version_tags(settings, spec.name, version)["orchard.train_key"]
    model = load_model(settings, spec.name, version)
    scored = score_month(settings, spec, month, model, version)
    profile = ReferenceProfile.from_dict(json.loads(profile_path(settings, spec.name, key).read_text()))
    numeric, categorical = reference_columns(spec)
    values = psi(profile, scored[[*numeric, *categorical]])
    score_psi = values.pop("score")
    decision = decide(month, score_psi, values, settings, last_retrain)

    reference = load_reference_sample(settings, spec.name, key)
    snapshot = drift_report(
        reference, scored[reference.columns], numeric, categorical, name=f"{spec.name} {month}"
    )
    report = save_report(snapshot, settings.reports_dir / spec.name / f"{month}.html")
    add_to_workspace(settings, spec.name, snapshot)
    return MonitorOutcome(
        model=spec.name,
        month=month,
        version=version,
        rows=len(scored),
        score_psi=round(float(score_psi), 6),
        feature_psi={k: round(float(v), 6) for k, v in values.items()},
        breach=decision.breach,
        retrain=decision.retrain,
        reasons=list(decision.reasons),
        report_path=str(report),
    )
