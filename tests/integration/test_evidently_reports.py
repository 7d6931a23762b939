"""Integration tests of the Evidently drift report, its HTML and the local workspace (real Evidently, tmp dirs)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from monitoring.reports import add_to_workspace, drift_report, drift_summary, save_report
from orchard.errors import OrchardError
from orchard.settings import Settings

NUMERIC = [f"num_{i}" for i in range(10)]
CATEGORICAL = [f"cat_{i}" for i in range(5)]


def _frame(n: int, seed: int, shift: bool) -> pd.DataFrame:
    """~15 columns; with shift, num_0 moves by two standard deviations and cat_0 changes its mix."""
    rng = np.random.default_rng(seed)
    data: dict[str, object] = {c: rng.normal(0.0, 1.0, n) for c in NUMERIC}
    for c in CATEGORICAL:
        data[c] = rng.choice(["a", "b", "c", "d"], n)
    if shift:
        data["num_0"] = rng.normal(2.0, 1.0, n)
        data["cat_0"] = rng.choice(["a", "b", "c", "d"], n, p=[0.7, 0.1, 0.1, 0.1])
    return pd.DataFrame(data)


@pytest.fixture(scope="module")
def snapshot():  # type: ignore[no-untyped-def]
    """The drift report of a batch where only num_0 and cat_0 shifted (its speed is benchmarked, not tested)."""
    reference = _frame(3000, seed=0, shift=False)
    current = _frame(1500, seed=1, shift=True)
    return drift_report(reference, current, NUMERIC, CATEGORICAL, name="application_pd 2020-03")


def test_drift_report_flags_the_shifted_columns_only(snapshot) -> None:  # type: ignore[no-untyped-def]
    # Given a current batch where only num_0 and cat_0 shifted
    # When the snapshot is summarised by metric type and id
    summary = drift_summary(snapshot)
    # Then exactly those two columns drift, and the count/share agree
    drifted = sorted(c for c, d in summary.columns.items() if d.drifted)
    assert drifted == ["cat_0", "num_0"], f"only the shifted columns drift: {summary.to_dict()}"
    assert set(summary.columns) == set(NUMERIC + CATEGORICAL), "one ValueDrift result per column"
    assert summary.drifted_count == 2 and summary.drifted_share == pytest.approx(2 / 15)
    assert summary.columns["num_0"].score > summary.columns["num_0"].threshold


def test_save_report_writes_html_atomically(snapshot, tmp_path) -> None:  # type: ignore[no-untyped-def]
    # Given a snapshot / When saved
    path = save_report(snapshot, tmp_path / "reports" / "drift.html")
    # Then a single HTML file is in place and no temporary file is left behind
    text = path.read_text()
    assert path.exists() and "<html" in text.lower(), "an HTML page"
    assert [p.name for p in path.parent.iterdir()] == ["drift.html"], "no leftover temporary files"


def test_workspace_has_one_project_per_model_and_is_idempotent(snapshot, settings: Settings) -> None:  # type: ignore[no-untyped-def]
    from evidently.ui.workspace import Workspace

    # Given the same named snapshot added twice and a second model
    first = add_to_workspace(settings, "application_pd", snapshot)
    again = add_to_workspace(settings, "application_pd", snapshot)
    other = add_to_workspace(settings, "behavior_pd", snapshot)
    # Then the model's project exists once, the re-add replaces the run, and the run can be read back
    workspace = Workspace(str(settings.evidently_dir))
    projects = workspace.search_project("application_pd")
    assert len(projects) == 1, "one project per model, found by name afterwards"
    runs = [str(r) for r in workspace.list_runs(projects[0].id)]
    assert runs == [again], f"re-adding a named snapshot replaces it (no duplicate): {runs}, first {first}"
    assert other != again and len(workspace.search_project("behavior_pd")) == 1
    stored = workspace.get_run(projects[0].id, again)
    assert stored is not None and stored.name == "application_pd 2020-03"


def test_missing_column_and_empty_batch_raise() -> None:
    reference = _frame(50, seed=0, shift=False)
    # Given a current batch without a listed column / Then the error names it
    with pytest.raises(OrchardError, match="num_3"):
        drift_report(reference, reference.drop(columns="num_3"), NUMERIC, CATEGORICAL)
    # Given an empty current batch / Then a clear error
    with pytest.raises(OrchardError, match="rows on both sides"):
        drift_report(reference, reference.iloc[:0], NUMERIC, CATEGORICAL)
