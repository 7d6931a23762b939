"""Browser test: the UIs users live in show what the lifecycle did (Prefect flow runs, MLflow champion alias).

Takes a copy of the session's small lifecycle (run with the CLI), starts the Prefect and MLflow UIs over it with
`orchard ui`'s own functions (processes this test starts and stops), and loads the pages in Debian's headless
Chromium.
Regenerate the README screenshots from a real demo: python -m tests.integration.test_ui_browser --home .orchard
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import urllib.request
from pathlib import Path

import pytest

from monitoring.reports import open_workspace, project_for_model
from orchard.lifecycle.monitoring import kind_series
from orchard.model_specs import model_specs
from orchard.settings import Settings
from orchard.testing.small_lifecycle import copy_home
from tests.integration.test_dashboard_browser import (
    CHROMIUM,
    PANEL_TITLES,
    chromium,
    drawn_series,
    draws_a_series,
    panel_segments,
)
from tests.ui_helpers import running_uis

REPO = Path(__file__).resolve().parents[2]


def _latest_flow_run_id(prefect: str) -> str:
    """Return the id of the newest flow run, read from the Prefect server's API."""
    request = urllib.request.Request(
        f"{prefect}/api/flow_runs/filter",
        data=json.dumps({"sort": "START_TIME_DESC", "limit": 1}).encode(),
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        return str(json.loads(response.read())[0]["id"])


def _monitored_dashboards(home: Path) -> dict[str, str]:
    """Return {model: Evidently project id} of every model with a champion in the state folder's last month."""
    settings = Settings(_env_file=None, home=home)
    last = json.loads(max((home / "state" / "months").glob("*.json")).read_text())
    monitored = [name for name, entry in last["models"].items() if entry["champion"] is not None]
    workspace = open_workspace(settings)
    return {name: str(project_for_model(workspace, name)) for name in monitored}


def capture(
    home: Path, out_dir: Path, work: Path, dashboards: dict[str, str] | None = None
) -> dict[str, str]:
    """Load the Prefect runs and flow-run pages, the MLflow model page and the given models' Evidently dashboards
    (project ids); write screenshots; return the DOMs."""
    with running_uis(home, work / "logs") as (prefect, mlflow, evidently):
        pages = {
            "prefect_runs": (f"{prefect}/runs", None),
            # the runs list is a virtual scroller that headless Chromium may leave unrendered: the run's own
            # page is what the test reads
            "prefect_flow_run": (f"{prefect}/runs/flow-run/{_latest_flow_run_id(prefect)}", "lifecycle"),
            "mlflow_models": (f"{mlflow}/#/models/application_pd", "champion"),
            **{
                f"dashboard_{name}": (f"{evidently}/projects/{project}", "Score PSI by month")
                for name, project in (dashboards or {}).items()
            },
        }
        shots = ("prefect_runs", "mlflow_models")
        doms = {}
        for name, (url, expected) in pages.items():
            # one Chromium run per load: the DOM and, for the README's pages, the screenshot of the same load.
            # The single-page apps fill in from their APIs after loading: give a slow load more tries
            shot = [f"--screenshot={out_dir / f'{name}.png'}"] if name in shots else []
            for attempt in range(3):
                doms[name] = chromium(url, work / f"{name}-dom-{attempt}", "--dump-dom", *shot).stdout
                if expected is None or expected in doms[name]:
                    break
    return doms


@pytest.mark.slow
def test_prefect_and_mlflow_uis_show_the_lifecycle(
    tmp_path: Path, small_lifecycle_run: tuple[Path, subprocess.CompletedProcess[str]]
) -> None:
    if not CHROMIUM.exists():
        if os.environ.get("ORCHARD_REQUIRE_SERVICES") == "1":
            pytest.fail(f"{CHROMIUM} is missing and ORCHARD_REQUIRE_SERVICES=1")
        pytest.skip(f"{CHROMIUM} is missing")
    # Given the session's small lifecycle run by the CLI (a champion is promoted, a later retrain decided),
    # copied, since the UIs' servers write to their databases and another test may rerun the lifecycle there
    home = copy_home(small_lifecycle_run[0], tmp_path / "orchard")
    # When Chromium loads the Prefect flow-runs page, the MLflow registered-model page and every model's
    # Evidently dashboard
    dashboards = _monitored_dashboards(home)
    doms = capture(home, tmp_path, tmp_path, dashboards)
    # Then Prefect lists the lifecycle's flow run, completed, and MLflow shows the model with its champion alias
    prefect_dom = doms["prefect_flow_run"]
    assert "lifecycle 2019-01..2019-09" in prefect_dom and "Completed" in prefect_dom, prefect_dom[-1500:]
    assert "application_pd" in doms["mlflow_models"], doms["mlflow_models"][-1500:]
    assert "champion" in doms["mlflow_models"], "the champion alias is shown on the model page"
    assert (tmp_path / "mlflow_models.png").stat().st_size > 10_000
    assert (tmp_path / "prefect_runs.png").stat().st_size > 10_000
    # And every monitored model of the portfolio has its dashboard (loss_forecast has no champion in 9 months: its
    # charge-offs do not mature), the joint model's too: the monitoring panels with a score PSI counter showing a
    # number, the score PSI line, realised beside expected AUC by vintage, and its kind's own panel with every
    # series drawn
    portfolio = Settings(_env_file=None, home=home).portfolio_def
    specs = model_specs(portfolio)
    assert portfolio.joint is not None, "the small lifecycle runs the joint model"
    assert set(dashboards) == set(specs) - {"loss_forecast"} | {portfolio.joint.model}, dashboards
    for name in dashboards:
        dom = doms[f"dashboard_{name}"]
        kind = kind_series(specs[name]) if name in specs else ()  # the joint model has no kind's panel
        segments = panel_segments(dom, PANEL_TITLES + tuple(s.title for s in kind))
        missing = [t for t in PANEL_TITLES if t not in segments]
        assert not missing, f"{name}: panels missing from its dashboard: {missing}"
        counter = re.sub(r"<[^>]+>", " ", segments["Score PSI, latest month"])
        assert re.search(r"\b\d\.\d+\b", counter), (
            f"{name}: the score PSI counter shows a value: {counter[:300]}"
        )
        assert draws_a_series(segments["Score PSI by month"]), f"{name}: the score PSI line is drawn"
        vintage = drawn_series(segments["AUC by booking vintage: realised vs expected"])
        assert vintage >= 2, f"{name}: realised and expected AUC by vintage are drawn ({vintage} series)"
        for series in kind:
            drawn = drawn_series(segments.get(series.title, ""))
            assert drawn == len(series.labels), f"{name}: {series.title!r} draws {drawn} of {series.labels}"


def main() -> None:
    """Write docs/img/prefect_runs.png and docs/img/mlflow_models.png from a state folder."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--home", type=Path, default=REPO / ".orchard")
    parser.add_argument("--out", type=Path, default=REPO / "docs" / "img")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as work:
        doms = capture(args.home.resolve(), args.out, Path(work))
    print({name: len(dom) for name, dom in doms.items()})


if __name__ == "__main__":
    sys.exit(main())
