"""Monthly monitoring of a champion: score the month, PSI/CSI on frozen bins, Evidently, the policy, dashboard."""

from __future__ import annotations

import json
from dataclasses import dataclass, field, replace
from pathlib import Path

import pandas as pd

from model_registry.history import events
from model_registry.registry import load_model, train_key_of, trained_month
from monitoring.dashboards import MonthSeries, add_month_snapshot, ensure_dashboard
from monitoring.policy import Drift, ModelHistory, PolicyDecision, approval_mode, decide, is_breach
from monitoring.reports import add_to_workspace, drift_report, save_report
from monitoring.vintages import early_estimate, matured_performance, performance_by_vintage
from orchard.atomic import write_json
from orchard.credit.psi import SCORE_COLUMN, load_profile, psi
from orchard.credit.stratification import TIERS
from orchard.errors import OrchardError
from orchard.lifecycle.recalibration import adaptation
from orchard.lifecycle.references import load_reference_sample, profile_path, reference_columns
from orchard.lifecycle.tools import Tools
from orchard.model_specs import ModelSpec
from orchard.months import month_range
from orchard.populations import population
from orchard.serving.batch import score_month, scores_path
from orchard.serving.scoring import ServedModel
from orchard.settings import Settings
from orchard.sources import BATCH_ID

# Evidently's drift tests cost ~0.1 s per column: the HTML report runs them on the score and the features
# that moved most this month; Orchard's exact PSI of every column is carried in the same report.
EVIDENTLY_TOP_FEATURES = 6


@dataclass(frozen=True)
class MonitorOutcome:
    """One month's monitoring of one model's champion."""

    model: str
    month: str
    version: int
    rows: int
    score_psi: float
    feature_psi: dict[str, float] = field(default_factory=dict)
    drift_share: float = 0.0
    breach: bool = False
    retrain: bool = False
    reasons: list[str] = field(default_factory=list)
    report_path: str = ""


def monitor_month(
    settings: Settings,
    spec: ModelSpec,
    month: str,
    history: ModelHistory,
    *,
    always_report: bool = True,
    tools: Tools | None = None,
) -> tuple[MonitorOutcome, PolicyDecision]:
    """Monitor the champion in force when the month began on the month's cases, and decide with the policy.

    The exact PSI of the score and every feature is computed every month; the Evidently report (~1-2 s) every
    month when always_report, else only in a month whose breach asks for a retrain (the report the reviewer of
    that retrain needs).
    """
    version = history.champion
    if version is None:
        raise OrchardError(f"{spec.name} has no champion in force at {month}: nothing to monitor")
    tools = tools or Tools()
    key = train_key_of(settings, spec.name, version, tools.train_keys)
    model = load_model(settings, spec.name, version, tools.models)
    # the one scoring implementation the decision API uses too (scores, bands, version; reason codes for the
    # application decisions)
    served = ServedModel.build(spec.name, version, model)
    scored = score_month(settings, spec, month, served, with_reasons=spec.unit == "cases", tools=tools)
    profile = load_profile(profile_path(settings, spec.name, key))
    numeric, categorical = reference_columns(spec, list(served.features))
    values = psi(profile, scored[[*numeric, *categorical]])
    features = {k: v for k, v in values.items() if k != SCORE_COLUMN}
    limits = spec.policy.monitoring
    drift = Drift(float(values[SCORE_COLUMN]), features)
    trained = trained_month(key)
    adapt = adaptation(settings, spec, model, month, is_breach(drift, limits), version, trained)
    decision = decide(month, history, limits, approval_mode(settings.governance), drift, adaptation=adapt)
    outcome = MonitorOutcome(
        model=spec.name,
        month=month,
        version=version,
        rows=len(scored),
        score_psi=round(float(values[SCORE_COLUMN]), 6),
        feature_psi={k: round(float(v), 6) for k, v in features.items()},
        drift_share=round(drift.drift_share(limits.feature_psi_breach), 6),
        breach=decision.breach,
        retrain=decision.retrain,
        reasons=list(decision.reasons),
    )
    if not (always_report or decision.retrain):
        return outcome, decision

    top = sorted(features, key=lambda c: -features[c])[:EVIDENTLY_TOP_FEATURES]
    report_numeric = [c for c in numeric if c in top or c == SCORE_COLUMN]
    report_categorical = [c for c in categorical if c in top]
    current = scored[[*report_numeric, *report_categorical]]
    report = _report_file(settings, spec.name, month)
    # nothing in the month reads the report: it is made in the run's lane (beside the next steps) when it has one
    tools.behind(
        f"report {spec.name}",
        publish_drift_report,
        settings,
        spec.name,
        key,
        month,
        current,
        report_numeric,
        report_categorical,
        values,
    )
    return replace(outcome, report_path=str(report)), decision


def _report_file(settings: Settings, model_name: str, month: str) -> Path:
    return settings.reports_dir / model_name / f"{month}.html"


def publish_drift_report(
    settings: Settings,
    model_name: str,
    key: str,
    month: str,
    current: pd.DataFrame,
    numeric: list[str],
    categorical: list[str],
    psi_values: dict[str, float],
) -> Path:
    """Write the month's Evidently drift report of a version (its reference sample vs the month's scored rows,
    with the exact PSI of every profiled column) as HTML, and add it to the model's workspace project."""
    reference = load_reference_sample(settings, model_name, key)
    snapshot = drift_report(
        reference[list(current.columns)],
        current,
        numeric,
        categorical,
        name=f"{model_name} {month}",
        profile=load_profile(profile_path(settings, model_name, key)),
        psi_values=psi_values,
    )
    report = save_report(snapshot, _report_file(settings, model_name, month))
    add_to_workspace(settings, model_name, snapshot)
    return report


def _vintage_state_path(settings: Settings, model_name: str):
    return settings.state_dir / "vintages" / f"{model_name}.json"


def matured_vintages(settings: Settings, model_name: str) -> dict[str, dict[str, float]]:
    """Return the vintages reported as matured so far, each with its realised value beside its estimates."""
    path = _vintage_state_path(settings, model_name)
    if not path.exists():
        return {}
    stored = json.loads(path.read_text())
    # a home written before the estimates were kept holds only the list of reported vintages
    return {v: {} for v in stored} if isinstance(stored, list) else stored


def unreported_scores(settings: Settings, model_name: str, key: str, month: str) -> pd.DataFrame:
    """Return application_id, vintage and pd of the stored batch scores of the month and of every earlier month
    whose vintage is not reported as matured yet (empty when there are none)."""
    reported = matured_vintages(settings, model_name)
    scored = []
    for m in month_range(settings.start_month, month):
        path = scores_path(settings, model_name, m)
        if (m not in reported or m == month) and path.exists():
            scored.append(pd.read_parquet(path, columns=[key, "pd"]).assign(vintage=m))
    if not scored:
        return pd.DataFrame(columns=["application_id", "pd", "vintage"])
    return pd.concat(scored, ignore_index=True).rename(columns={key: "application_id"})


def report_vintages(
    settings: Settings, model_name: str, scores: pd.DataFrame, labels: pd.DataFrame, month: str
) -> pd.DataFrame:
    """Return realised AUC/KS/bad rate of the vintages matured since the last check beside their early estimate,
    and keep each matured vintage in the state (for the summary and the next month).

    scores: unreported_scores output; labels: application_id, vintage, mature, bad of the model's learnable
    cases as known now. The estimate of a vintage is on its learnable cases (those in labels), the population
    its realised value describes; the estimate over every scored case is kept beside it, labelled as such.
    """
    if scores.empty:
        return pd.DataFrame()
    reported = matured_vintages(settings, model_name)
    realised = matured_performance(scores, labels, month, set(reported))
    wanted = scores[scores["vintage"].isin(set(realised["vintage"]) | {month})]
    learnable = wanted[wanted["application_id"].isin(labels["application_id"])]
    table = performance_by_vintage(realised, early_estimate(learnable), early_estimate(wanted))
    for row in table[table["status"] == "matured"].to_dict("records"):
        reported[str(row["vintage"])] = {str(k): v for k, v in row.items() if k not in ("vintage", "status")}
    write_json(reported, _vintage_state_path(settings, model_name))
    return table


def vintage_performance(settings: Settings, spec: ModelSpec, month: str) -> pd.DataFrame:
    """Return realised AUC/KS/bad rate of the model's vintages matured since the last check, beside their early
    estimate (report_vintages).

    The estimate of a vintage comes from the champion's calibrated PDs when it was scored (CBPE-style), on the
    cases whose performance is realised later (the model's learnable cases, e.g. booked loans). The current
    month's vintage gets its estimate now and its realised value when its labels mature.

    Only the vintages not reported yet are read (scores, cases and labels): the work of a month is bounded by the
    label window, not by the length of the history.
    """
    scores = unreported_scores(settings, spec.name, spec.key, month)
    if scores.empty:
        return pd.DataFrame()
    # the model's own learnable cases and labels as known now (the same population training uses)
    cases = population(settings, spec, sorted(set(scores["vintage"])), month)
    cases = cases[cases["eligible"].astype(bool)]
    labels = pd.DataFrame(
        {
            "application_id": cases[spec.key].to_numpy(),
            "vintage": cases[BATCH_ID].str[-7:].to_numpy(),  # the batch's period, as scores have it
            "mature": cases["mature"].to_numpy(dtype=bool),
            "bad": cases["bad"].to_numpy(),
        }
    )
    return report_vintages(settings, spec.name, scores, labels, month)


def kind_series(spec: ModelSpec) -> tuple[MonthSeries, ...]:
    """Return the panels a model's kind adds to its dashboard; each group is the month record's field
    (ledger.ModelMonth) whose values it plots."""
    if spec.kind == "tiers":
        tiers = MonthSeries(
            "Campaign tiers by month",
            "tiers",
            TIERS,
            "bar",
            "Offers per tier with the champion's cuts: A responds and is low risk, D neither",
        )
        return (tiers,)
    if spec.kind == "expected_loss":
        loss = MonthSeries(
            "Expected loss of the month's booked loans",
            "expected_loss",
            ("expected_loss", "principal"),
            "line",
            "The champion's PD x LGD x EAD summed over the month's booked loans, beside their principal",
        )
        return (loss,)
    return ()


def publish_month(
    settings: Settings,
    model_name: str,
    month: str,
    psi_values: dict[str, float],
    drift_share: float,
    matured: pd.DataFrame | None,
    top_features: list[str] | None = None,
    series: tuple[MonthSeries, ...] = (),
    extra: dict[str, dict[str, float]] | None = None,
) -> str:
    """Write the model's dashboard (once) and add the month's snapshot: PSI, drift share, matured vintages, the
    month's alias events and what the model's kind adds (by group of `series`); return the month's run id."""
    ensure_dashboard(settings, model_name, top_features=top_features, extra=series)
    month_events = [e.to_dict() for e in events(settings, model_name) if e.effective_month == month]
    return add_month_snapshot(
        settings, model_name, month, psi_values, drift_share, matured, month_events, extra
    )


def publish_dashboard(
    settings: Settings,
    spec: ModelSpec,
    month: str,
    outcome: MonitorOutcome,
    extra: dict[str, dict[str, float]] | None = None,
) -> str:
    """Add the month's snapshot of a portfolio model to its Evidently project (publish_month)."""
    return publish_month(
        settings,
        spec.name,
        month,
        {SCORE_COLUMN: outcome.score_psi, **outcome.feature_psi},
        outcome.drift_share,
        vintage_performance(settings, spec, month),
        top_features=list(spec.dashboard_features),
        series=kind_series(spec),
        extra=extra,
    )
