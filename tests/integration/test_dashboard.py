"""Integration tests of the risk-manager dashboards in a real local Evidently workspace (tmp dir)."""

from __future__ import annotations

import pandas as pd
import pytest

from monitoring.dashboards import (
    EVENT_ACTIONS,
    MONTHLY_TAG,
    VINTAGE_TAG,
    MonthSeries,
    add_month_snapshot,
    ensure_dashboard,
    series,
)
from monitoring.reports import PSI_METRIC_TYPE, VALUE_METRIC_TYPE
from orchard.errors import OrchardError
from orchard.settings import Settings

MODEL = "application_pd"


def _matured(month: str) -> pd.DataFrame:
    return pd.DataFrame(
        [
            {
                "vintage": month,
                "n": 200,
                "expected_bad_rate": 0.05,
                "expected_auc": 0.74,
                "expected_ks": 0.37,
            },
            {"vintage": "2019-01", "n": 180, "bad_rate": 0.06, "auc": 0.71, "ks": 0.33, "expected_auc": 0.74},
        ]
    )


def test_ensure_dashboard_is_idempotent_with_the_risk_panels(settings: Settings) -> None:
    from evidently.ui.workspace import Workspace

    # Given the dashboard ensured twice
    first = ensure_dashboard(settings, MODEL)
    second = ensure_dashboard(settings, MODEL)
    workspace = Workspace(str(settings.evidently_dir))
    dashboard = workspace.get_dashboard(first)
    # Then one project, the same id, the same panels (stable ids), and each panel reads a named metric
    assert first == second and len(workspace.search_project(MODEL)) == 1, "one project per model"
    titles = [p.title for p in dashboard.panels]
    for wanted in ("Score PSI by month", "Top-feature CSI by month", "Drift share by month"):
        assert wanted in titles, f"panel {wanted!r} in {titles}"
    assert any("AUC by booking vintage" in t for t in titles) and any("alias events" in t for t in titles)
    assert all(v.metric in (PSI_METRIC_TYPE, VALUE_METRIC_TYPE) for p in dashboard.panels for v in p.values)
    assert len({p.id for p in dashboard.panels}) == len(titles) and dashboard.tabs[0].panels == [
        p.id for p in dashboard.panels
    ]
    ensure_dashboard(settings, MODEL, top_features=["income", "age"])
    csi = next(p for p in workspace.get_dashboard(first).panels if p.title == "Top-feature CSI by month")
    assert [v.metric_labels["label"] for v in csi.values] == ["income", "age"], "top features as named series"


def test_monthly_snapshots_feed_every_series_and_a_rerun_replaces(settings: Settings) -> None:
    from evidently.ui.workspace import Workspace

    # Given three months, a PSI spike in 2020-02 and a promotion in 2020-03
    months = {"2020-01": 0.03, "2020-02": 0.41, "2020-03": 0.37}
    for month, score_psi in months.items():
        events = [{"action": "promote", "version": 2}] if month == "2020-03" else []
        add_month_snapshot(
            settings,
            MODEL,
            month,
            {"score": score_psi, "income": score_psi / 2, "age": 0.01},
            0.2,
            _matured(month),
            events,
        )
    # When one month is added again with corrected values
    add_month_snapshot(
        settings, MODEL, "2020-01", {"score": 0.05, "income": 0.02, "age": 0.01}, 0.1, None, []
    )
    # Then each series has one point per month, read the way the panels read them (type + labels)
    assert series(settings, MODEL, PSI_METRIC_TYPE, {"scope": "score"}) == {
        "2020-01": 0.05,
        "2020-02": 0.41,
        "2020-03": 0.37,
    }
    assert series(settings, MODEL, PSI_METRIC_TYPE, {"scope": "feature", "label": "income"})[
        "2020-02"
    ] == pytest.approx(0.205)
    drift = series(settings, MODEL, VALUE_METRIC_TYPE, {"group": "drift", "label": "drift_share"})
    assert drift == {"2020-01": 0.1, "2020-02": 0.2, "2020-03": 0.2}, "the re-run month was replaced"
    largest = series(settings, MODEL, VALUE_METRIC_TYPE, {"group": "drift", "label": "max_feature_csi"})
    assert largest["2020-02"] == pytest.approx(0.205), "largest feature CSI recorded for the counter panel"
    promotions = series(settings, MODEL, VALUE_METRIC_TYPE, {"group": "events", "label": "promote"})
    assert promotions == {"2020-01": 0.0, "2020-02": 0.0, "2020-03": 1.0}
    # And vintages sit at their own month: realised beside expected for 2019-01, estimates for the others
    assert series(settings, MODEL, VALUE_METRIC_TYPE, {"group": "vintage", "label": "auc"}) == {
        "2019-01": 0.71
    }
    expected_auc = series(settings, MODEL, VALUE_METRIC_TYPE, {"group": "vintage", "label": "expected_auc"})
    assert set(expected_auc) == {"2019-01", "2020-01", "2020-02", "2020-03"}
    workspace = Workspace(str(settings.evidently_dir))
    project = workspace.search_project(MODEL)[0].id
    runs = [workspace.get_run(project, r) for r in workspace.list_runs(project)]
    tags = sorted(tuple(r.tags) for r in runs if r is not None)
    assert tags.count((MONTHLY_TAG,)) == 3 and tags.count((VINTAGE_TAG,)) == 4, (
        f"no duplicate snapshots: {tags}"
    )


def test_a_kinds_series_gets_its_panel_and_one_point_per_month(settings: Settings) -> None:
    # Given a tiers model whose dashboard adds its campaign tiers as stacked bars
    tiers = MonthSeries("Campaign tiers by month", "tiers", ("A", "B", "C", "D"), "bar")
    project = ensure_dashboard(settings, "precredit_response", extra=(tiers,))
    # When two months are added with their tier counts, one of them twice
    for month, a in (("2020-01", 120), ("2020-02", 80), ("2020-02", 90)):
        counts = {"tiers": {"A": a, "B": 40, "C": 30, "D": 10}}
        add_month_snapshot(settings, "precredit_response", month, {"score": 0.02}, 0.0, None, [], counts)
    # Then the panel reads each tier by label, and each month holds the last counts written
    from evidently.ui.workspace import Workspace

    panel = next(
        p
        for p in Workspace(str(settings.evidently_dir)).get_dashboard(project).panels
        if p.title == tiers.title
    )
    assert [v.metric_labels for v in panel.values] == [{"group": "tiers", "label": t} for t in tiers.labels]
    a = series(settings, "precredit_response", VALUE_METRIC_TYPE, {"group": "tiers", "label": "A"})
    assert a == {"2020-01": 120.0, "2020-02": 90.0}
    # And a kind cannot write into the dashboard's own groups, nor a value that is not a number
    with pytest.raises(OrchardError, match="dashboard's own"):
        add_month_snapshot(settings, MODEL, "2020-03", {"score": 0.1}, 0.1, None, [], {"drift": {"x": 1.0}})
    with pytest.raises(OrchardError, match="finite"):
        add_month_snapshot(
            settings, MODEL, "2020-03", {"score": 0.1}, 0.1, None, [], {"tiers": {"A": float("nan")}}
        )


def test_bad_inputs_are_refused_before_anything_is_written(settings: Settings) -> None:
    # Given invalid values / Then a clear error, and no snapshot is stored
    with pytest.raises(OrchardError, match="finite and non-negative"):
        add_month_snapshot(settings, MODEL, "2020-01", {"score": -0.1}, 0.1, None, [])
    with pytest.raises(OrchardError, match="drift share"):
        add_month_snapshot(settings, MODEL, "2020-01", {"score": 0.1}, 1.5, None, [])
    with pytest.raises(OrchardError, match="unknown alias action"):
        add_month_snapshot(settings, MODEL, "2020-01", {"score": 0.1}, 0.1, None, [{"action": "delete"}])
    with pytest.raises(OrchardError, match="no PSI values"):
        add_month_snapshot(settings, MODEL, "2020-01", {}, 0.1, None, [])
    assert not settings.evidently_dir.exists() or not any(settings.evidently_dir.rglob("*.json")), (
        "nothing written"
    )
    assert set(EVENT_ACTIONS) == {"promote", "reject", "rollback", "set_challenger"}
