"""Risk-manager dashboards: an Evidently UI workspace project per model, fed one snapshot per business month.

Each monthly snapshot (tag 'monthly', timestamp = first day of the business month, so the x axis is the
simulated timeline) carries Orchard's score PSI and feature CSI (OrchardPSI, monitoring/evidently_metric.py), the
Evidently drift share and the month's alias/approval event counts (OrchardValue). Each booking vintage gets its
own snapshot (tag 'vintage', timestamp = the vintage month) holding the early estimate and, once labels mature,
the realised AUC/KS/bad rate, so estimate and realised value sit side by side on the same x position. Panels
read values by metric type, parameter and label (never by position). Re-adding a month or vintage replaces its
snapshot, so a re-run does not duplicate points.
"""

from __future__ import annotations

import logging
import math
import uuid
from collections import Counter
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import pandas as pd

from monitoring.reports import (
    PSI_METRIC_TYPE,
    VALUE_METRIC_TYPE,
    open_workspace,
    project_for_model,
    replace_named_run,
)
from orchard.alias_actions import ACTIONS
from orchard.credit.psi import SCORE_COLUMN
from orchard.errors import OrchardError
from orchard.months import parse_month
from orchard.settings import Settings

log = logging.getLogger(__name__)

MONTHLY_TAG = "monthly"
VINTAGE_TAG = "vintage"
EVENT_ACTIONS: tuple[str, ...] = ACTIONS  # one bar series per recorded alias action
VINTAGE_VALUES = (
    "n",
    "bad_rate",
    "auc",
    "ks",
    "expected_bad_rate",
    "expected_auc",
    "expected_ks",
    "expected_bad_rate_applicants",
    "expected_auc_applicants",
    "expected_ks_applicants",
)
DASHBOARD_TAB = "Risk monitoring"


@dataclass(frozen=True)
class MonthSeries:
    """A panel of values a model's kind adds to its month (e.g. campaign tiers, expected loss): the snapshot's
    OrchardValue group `group` with one series per label, drawn as stacked bars or lines."""

    title: str
    group: str
    labels: tuple[str, ...]
    chart: str = "line"  # 'line' | 'bar'
    description: str = ""


_PANEL_NAMESPACE = uuid.UUID("6f1c1f0e-6a51-4c39-9d1b-4f1f4a0e2c7d")


def _month_timestamp(month: str) -> datetime:
    year, mon = (int(part) for part in parse_month(month).split("-"))
    return datetime(year, mon, 1)


def _panel_metric(
    metric_type: str, labels: dict[str, str], legend: str, tag: str, view_params: dict[str, Any] | None = None
) -> Any:
    from evidently.sdk.models import PanelMetric  # deferred: Evidently takes seconds to import

    return PanelMetric(
        legend=legend, metric=metric_type, metric_labels=labels, tags=[tag], view_params=view_params or {}
    )


def dashboard_panels(
    model_name: str, top_features: list[str] | None = None, extra: tuple[MonthSeries, ...] = ()
) -> list[Any]:
    """Return the dashboard panels of a model (ids derived from model and title, so rebuilding is idempotent);
    `extra` adds a panel per series of the model's kind after the monitoring panels."""
    # deferred: Evidently takes seconds to import
    from evidently.sdk.panels import bar_plot_panel, counter_panel, line_plot_panel

    score = {"scope": "score", "label": SCORE_COLUMN}
    if top_features:
        csi = [
            _panel_metric(PSI_METRIC_TYPE, {"scope": "feature", "label": f}, f"CSI {f}", MONTHLY_TAG)
            for f in top_features
        ]
    else:
        csi = [_panel_metric(PSI_METRIC_TYPE, {"scope": "feature"}, "CSI {{label}}", MONTHLY_TAG)]

    def vintage(label: str, legend: str) -> Any:
        return _panel_metric(VALUE_METRIC_TYPE, {"group": "vintage", "label": label}, legend, VINTAGE_TAG)

    panels = [
        counter_panel(
            "Score PSI, latest month",
            [_panel_metric(PSI_METRIC_TYPE, score, "score PSI", MONTHLY_TAG)],
            description="Orchard PSI on frozen reference deciles (> 0.25: significant shift)",
            size="half",
        ),
        counter_panel(
            "Largest feature CSI, latest month",
            [
                _panel_metric(
                    VALUE_METRIC_TYPE, {"group": "drift", "label": "max_feature_csi"}, "max CSI", MONTHLY_TAG
                )
            ],
            description="Largest characteristic stability index over the monitored features",
            size="half",
        ),
        line_plot_panel(
            "Score PSI by month",
            [_panel_metric(PSI_METRIC_TYPE, score, "score PSI", MONTHLY_TAG)],
            description="Population stability of the champion's score against its development sample",
        ),
        line_plot_panel(
            "Top-feature CSI by month",
            csi,
            description="Characteristic stability index per feature on frozen bins",
        ),
        line_plot_panel(
            "Drift share by month",
            [
                _panel_metric(
                    VALUE_METRIC_TYPE, {"group": "drift", "label": "drift_share"}, "drift share", MONTHLY_TAG
                )
            ],
            description="Share of the model's features whose CSI exceeds the breach limit (feature_psi_breach)",
            size="half",
        ),
        bar_plot_panel(
            "Approval and alias events by month",
            [
                _panel_metric(VALUE_METRIC_TYPE, {"group": "events", "label": action}, action, MONTHLY_TAG)
                for action in EVENT_ACTIONS
            ],
            description="Recorded promotions, rejections, rollbacks and challenger changes",
            size="half",
            stacked=True,
        ),
        line_plot_panel(
            "AUC by booking vintage: realised vs expected",
            [
                vintage("auc", "realised AUC"),
                vintage("expected_auc", "expected AUC (CBPE), same cases"),
                vintage("expected_auc_applicants", "expected AUC (CBPE), all scored applicants"),
            ],
            description="Realised on the labelled cases once they mature; expected from calibrated PDs before "
            "that, on the same cases (comparable) and on every scored applicant (not comparable: shown apart)",
            size="half",
        ),
        line_plot_panel(
            "KS by booking vintage: realised vs expected",
            [vintage("ks", "realised KS"), vintage("expected_ks", "expected KS (CBPE), same cases")],
            size="half",
        ),
        line_plot_panel(
            "Bad rate by booking vintage: realised vs expected",
            [
                vintage("bad_rate", "realised bad rate"),
                vintage("expected_bad_rate", "expected bad rate (mean PD), same cases"),
                vintage("expected_bad_rate_applicants", "expected bad rate (mean PD), all scored applicants"),
            ],
        ),
    ]
    for series in extra:
        metrics = [
            _panel_metric(VALUE_METRIC_TYPE, {"group": series.group, "label": label}, label, MONTHLY_TAG)
            for label in series.labels
        ]
        if series.chart == "bar":
            panels.append(bar_plot_panel(series.title, metrics, description=series.description, stacked=True))
        else:
            panels.append(line_plot_panel(series.title, metrics, description=series.description))
    for panel in panels:
        panel.id = uuid.uuid5(_PANEL_NAMESPACE, f"{model_name}/{panel.title}")
    return panels


def ensure_dashboard(
    settings: Settings,
    model_name: str,
    top_features: list[str] | None = None,
    extra: tuple[MonthSeries, ...] = (),
) -> str:
    """Create the model's project (once) and write its dashboard; return the project id. Idempotent."""
    # deferred: Evidently takes seconds to import
    from evidently.sdk.models import DashboardModel, DashboardTabModel

    workspace = open_workspace(settings)
    project_id = project_for_model(workspace, model_name)
    panels = dashboard_panels(model_name, top_features, extra)
    tab = DashboardTabModel(
        id=uuid.uuid5(_PANEL_NAMESPACE, f"{model_name}/tab"),
        title=DASHBOARD_TAB,
        panels=[p.id for p in panels],
    )
    wanted = DashboardModel(tabs=[tab], panels=panels)
    if workspace.get_dashboard(project_id) != wanted:
        workspace.save_dashboard(project_id, wanted)
        log.info("wrote the Evidently dashboard of %s (%d panels)", model_name, len(panels))
    return str(project_id)


def _run(metrics: list[Any], name: str, month: str, tags: list[str], metadata: dict[str, str]) -> Any:
    """Run a report of recorded values (one-row placeholder dataset: the metrics read no data)."""
    from evidently import Dataset, Report  # deferred: Evidently takes seconds to import

    placeholder = Dataset.from_pandas(pd.DataFrame({"placeholder": [0.0]}))
    return Report(metrics).run(
        placeholder, None, timestamp=_month_timestamp(month), name=name, tags=tags, metadata=metadata
    )


def event_counts(events: list[dict[str, Any]]) -> dict[str, float]:
    """Return the number of events per alias action (every known action present, 0 when absent)."""
    unknown = sorted({str(e.get("action")) for e in events} - set(EVENT_ACTIONS))
    if unknown:
        raise OrchardError(
            f"unknown alias action(s) {', '.join(unknown)}: expected {', '.join(EVENT_ACTIONS)}"
        )
    counts = Counter(str(e["action"]) for e in events)
    return {action: float(counts.get(action, 0)) for action in EVENT_ACTIONS}


def _vintage_values(row: pd.Series) -> dict[str, float]:
    values: dict[str, float] = {}
    for key in VINTAGE_VALUES:
        if key in row.index and row[key] is not None and not pd.isna(row[key]):
            values[key] = float(row[key])
    return values


def add_month_snapshot(
    settings: Settings,
    model_name: str,
    month: str,
    psi_values: dict[str, float],
    drift_share: float,
    matured: pd.DataFrame | None,
    events: list[dict[str, Any]],
    extra: dict[str, dict[str, float]] | None = None,
) -> str:
    """Add the month's snapshot (and one per vintage in matured) to the model's project; return the month's run id.

    psi_values: orchard.credit.psi.psi output (the 'score' column is score PSI, the others feature CSI).
    matured: rows per vintage with any of n, bad_rate, auc, ks (realised) and expected_bad_rate, expected_auc,
    expected_ks (estimate), e.g. vintages.performance_by_vintage output; None when nothing new.
    events: the month's alias events (model_registry.history AliasEvent.to_dict()), counted per action.
    extra: values the model's kind adds to the month, by group (a MonthSeries' group) and label.
    """
    month = parse_month(month)
    if not psi_values:
        raise OrchardError(f"no PSI values for {model_name} {month}")
    bad = {k: v for k, v in psi_values.items() if not math.isfinite(float(v)) or float(v) < 0}
    if bad:
        raise OrchardError(f"PSI values must be finite and non-negative: {bad}")
    if not 0.0 <= float(drift_share) <= 1.0:
        raise OrchardError(f"drift share must be within [0, 1], got {drift_share!r}")
    counts = event_counts(events)
    extra = {str(g): {str(k): float(v) for k, v in values.items()} for g, values in (extra or {}).items()}
    reserved = {"vintage", "drift", "events"} & set(extra)
    if reserved:
        raise OrchardError(f"value group(s) {', '.join(sorted(reserved))} are the dashboard's own")
    if not all(math.isfinite(v) for values in extra.values() for v in values.values()):
        raise OrchardError(f"the month's values must be finite: {extra}")
    if matured is not None and len(matured) and "vintage" not in matured.columns:
        raise OrchardError("matured performance needs a 'vintage' column")

    # deferred: Evidently takes seconds to import, and the lifecycle's process only reads this module's series
    # (its lane makes the snapshots)
    from monitoring.evidently_metric import OrchardPSI, OrchardValue

    workspace = open_workspace(settings)
    project_id = project_for_model(workspace, model_name)  # the dashboard is the caller's (ensure_dashboard)
    for _, row in (matured if matured is not None else pd.DataFrame()).iterrows():
        vintage = parse_month(str(row["vintage"]))
        values = _vintage_values(row)
        if values:
            snapshot = _run(
                [OrchardValue(group="vintage", values=values)],
                name=f"{model_name} vintage {vintage}",
                month=vintage,
                tags=[VINTAGE_TAG],
                metadata={"model": model_name, "vintage": vintage, "reported_in": month},
            )
            replace_named_run(settings, workspace, project_id, snapshot)

    score = {k: float(v) for k, v in psi_values.items() if k == SCORE_COLUMN}
    features = {k: float(v) for k, v in psi_values.items() if k != SCORE_COLUMN}
    metrics: list[Any] = [
        OrchardPSI(columns=sorted(part), scope=scope, values=part)
        for scope, part in (("score", score), ("feature", features))
        if part
    ]
    drift = {"drift_share": float(drift_share), "max_feature_csi": max(features.values(), default=0.0)}
    metrics.append(OrchardValue(group="drift", values=drift))
    metrics.append(OrchardValue(group="events", values=counts))
    metrics.extend(
        OrchardValue(group=group, values=values) for group, values in sorted(extra.items()) if values
    )
    snapshot = _run(
        metrics,
        name=f"{model_name} {month} monitoring",
        month=month,
        tags=[MONTHLY_TAG],
        metadata={"model": model_name, "month": month},
    )
    return replace_named_run(settings, workspace, project_id, snapshot)


def series(settings: Settings, model_name: str, metric_type: str, labels: dict[str, str]) -> dict[str, float]:
    """Return {snapshot month: value} of one stored series, read back as the dashboard reads it (for checks)."""
    workspace = open_workspace(settings, fresh=True)
    project_id = project_for_model(workspace, model_name)
    found: dict[str, float] = {}
    for run_id in workspace.list_runs(project_id):
        run = workspace.get_run(project_id, run_id)
        if run is None:
            continue
        for result in run.metric_results.values():
            values = getattr(result, "values", None)
            items = values.values() if isinstance(values, dict) else [result]
            for item in items:
                location = item.metric_value_location
                params = {**location.metric.params, **{k: str(v) for k, v in location.param.items()}}
                if params.get("type") == metric_type and labels.items() <= params.items():
                    found[run.timestamp.strftime("%Y-%m")] = float(item.value)
    return dict(sorted(found.items()))
