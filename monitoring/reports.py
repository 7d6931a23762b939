"""Evidently (0.7 API) drift reports: run, summarise by metric type/id, save as HTML, add to the workspace."""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

from orchard.atomic import locked, write_json, write_text
from orchard.credit.psi import ReferenceProfile
from orchard.errors import OrchardError
from orchard.settings import Settings

if TYPE_CHECKING:
    from evidently.core.report import Snapshot

log = logging.getLogger(__name__)

DRIFTED_COLUMNS_METRIC = "evidently:metric_v2:DriftedColumnsCount"
VALUE_DRIFT_METRIC = "evidently:metric_v2:ValueDrift"
PSI_METRIC_TYPE = "evidently:metric_v2:OrchardPSI"
"""Orchard's PSI/CSI metric (monitoring/evidently_metric.OrchardPSI), as stored in snapshots and panels."""
VALUE_METRIC_TYPE = "evidently:metric_v2:OrchardValue"
"""Orchard's value metric (monitoring/evidently_metric.OrchardValue), as stored in snapshots and panels."""


@dataclass(frozen=True)
class ColumnDrift:
    """Evidently's drift verdict for one column."""

    column: str
    method: str
    threshold: float
    score: float
    drifted: bool


@dataclass(frozen=True)
class DriftSummary:
    """The parts of a drift snapshot Orchard acts on, read by metric type and id (never by position)."""

    drifted_count: int
    drifted_share: float
    columns: dict[str, ColumnDrift] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-serialisable dict."""
        return {
            "drifted_count": self.drifted_count,
            "drifted_share": self.drifted_share,
            "columns": {
                name: {"method": c.method, "threshold": c.threshold, "score": c.score, "drifted": c.drifted}
                for name, c in self.columns.items()
            },
        }


def _check_columns(frame: pd.DataFrame, columns: list[str], what: str) -> None:
    absent = [c for c in columns if c not in frame.columns]
    if absent:
        raise OrchardError(f"{what} is missing column(s) {', '.join(absent)}")


def drift_report(
    reference: pd.DataFrame,
    current: pd.DataFrame,
    numeric: list[str],
    categorical: list[str],
    name: str | None = None,
    profile: ReferenceProfile | None = None,
    psi_values: dict[str, float] | None = None,
) -> Snapshot:
    """Run Evidently's DataDriftPreset on the listed columns and return the run result (a Snapshot).

    With the model's frozen PSI profile, the report also carries Orchard's score PSI and feature CSI
    (OrchardPSI custom metrics), so the HTML report shows both Evidently's drift tests and the exact PSI.
    With `psi_values` (the monthly check's output for every profiled column) the PSI metrics carry those
    values, so Evidently's own tests may run on a subset of the columns (its cost grows per column).
    """
    from evidently import DataDefinition, Dataset, Report  # deferred: Evidently takes seconds to import
    from evidently.presets import DataDriftPreset

    from monitoring.evidently_metric import psi_report_metrics

    columns = [*numeric, *categorical]
    if not columns:
        raise OrchardError("a drift report needs at least one numeric or categorical column")
    if reference.empty or current.empty:
        raise OrchardError(
            f"a drift report needs rows on both sides (reference {len(reference)}, current {len(current)})"
        )
    _check_columns(reference, columns, "reference")
    _check_columns(current, columns, "current batch")
    definition = DataDefinition(numerical_columns=list(numeric), categorical_columns=list(categorical))
    extra: list[Any] = []
    if profile is not None:
        outside = [c for c in profile.column_names if c not in columns]
        if outside and psi_values is None:
            raise OrchardError(
                f"PSI profile column(s) {', '.join(outside)} are not among the report's columns"
            )
        extra = psi_report_metrics(profile, values=psi_values)
    report = Report([DataDriftPreset(columns=columns), *extra], include_tests=True)
    snapshot = report.run(
        Dataset.from_pandas(current.loc[:, columns], data_definition=definition),
        Dataset.from_pandas(reference.loc[:, columns], data_definition=definition),
        name=name,
    )
    return snapshot


def drift_summary(snapshot: Snapshot) -> DriftSummary:
    """Return the drifted-column count/share and each column's drift score and verdict from a snapshot."""
    content = snapshot.dict()
    failed_metric_ids = {
        test["metric_config"]["metric_id"]
        for test in content.get("tests", [])
        if str(getattr(test["status"], "value", test["status"])) == "FAIL" and test.get("metric_config")
    }
    drifted_count: int | None = None
    drifted_share = 0.0
    columns: dict[str, ColumnDrift] = {}
    for metric in content["metrics"]:
        kind = metric["config"]["type"]
        if kind == DRIFTED_COLUMNS_METRIC:
            drifted_count = int(metric["value"]["count"])
            drifted_share = float(metric["value"]["share"])
        elif kind == VALUE_DRIFT_METRIC:
            column = metric["config"]["column"]
            columns[column] = ColumnDrift(
                column=column,
                method=str(metric["config"]["method"]),
                threshold=float(metric["config"]["threshold"]),
                score=float(metric["value"]),
                drifted=metric["id"] in failed_metric_ids,
            )
    if drifted_count is None:
        raise OrchardError("the snapshot has no DriftedColumnsCount metric: not a drift report")
    return DriftSummary(drifted_count=drifted_count, drifted_share=drifted_share, columns=columns)


def save_report(snapshot: Snapshot, path: Path) -> Path:
    """Write the snapshot as a self-contained HTML page, atomically."""
    return write_text(snapshot.get_html_str(as_iframe=False), Path(path))


def project_for_model(workspace: Any, model_name: str) -> Any:
    """Return the id of the workspace project named after the model, creating it the first time."""
    found = workspace.search_project(model_name)
    if len(found) > 1:
        raise OrchardError(
            f"Evidently workspace has {len(found)} projects named {model_name!r}; expected one"
        )
    if found:
        return found[0].id
    project = workspace.create_project(model_name, description=f"Drift monitoring of model {model_name}")
    log.info("created Evidently project %s for model %s", project.id, model_name)
    return project.id


def _run_index_path(settings: Settings) -> Path:
    return settings.state_dir / "evidently_runs.json"


def replace_named_run(settings: Settings, workspace: Any, project_id: Any, snapshot: Snapshot) -> str:
    """Add a named snapshot, replacing the run of the same name added before (found by a local index).

    The index (name -> run id, under the state folder) avoids loading every stored snapshot to find one by
    name, which made each month slower than the last.
    """
    name = snapshot.get_name()
    path = _run_index_path(settings)
    with locked(path):  # the lifecycle's joint model publishes from its own process (Tools.lane)
        index: dict[str, str] = json.loads(path.read_text()) if path.exists() else {}
        key = f"{project_id}/{name}"
        if name and key in index:
            try:
                workspace.delete_run(project_id, index[key])
            except Exception:  # already gone (e.g. the workspace was reset): nothing to replace
                log.debug("run %s of %r was not in the workspace", index[key], name)
        run_id = str(workspace.add_run(project_id, snapshot, include_data=False, name=name).id)
        if name:
            index[key] = run_id
            write_json(index, path)
    return run_id


_WORKSPACES: dict[str, Any] = {}


def open_workspace(settings: Settings, *, fresh: bool = False) -> Any:
    """Return this process's handle on the local Evidently workspace (opening one reads every snapshot: ~1.5 s
    at the end of the demo, so it is opened once per process and reused).

    A handle knows the projects as they were when it opened; a reader of what another process may have written
    since (the lifecycle's joint model publishes from its own, Tools.lane) asks for a fresh one."""
    from evidently.ui.workspace import Workspace  # deferred: Evidently takes seconds to import

    settings.evidently_dir.mkdir(parents=True, exist_ok=True)
    key = str(settings.evidently_dir.resolve())
    if fresh or key not in _WORKSPACES:
        _WORKSPACES[key] = Workspace(key)
    return _WORKSPACES[key]


def add_to_workspace(settings: Settings, model_name: str, snapshot: Snapshot) -> str:
    """Add a snapshot to the model's project in the local workspace and return the run id.

    The project is created once and found by name afterwards. A named snapshot replaces the run of the same
    name (so a re-run month does not duplicate its report). Unnamed snapshots are always added.
    """
    if not model_name:
        raise OrchardError("a workspace project needs a model name")
    workspace = open_workspace(settings)
    project_id = project_for_model(workspace, model_name)
    return replace_named_run(settings, workspace, project_id, snapshot)
