"""Browser test: the Evidently UI serves the model dashboard and headless Chromium sees panels carrying data.

Starts `evidently ui` on a free loopback port (a subprocess this test starts and stops by its handle), builds a
workspace with a year of monthly snapshots (PSI computed by orchard.credit.psi on seeded, shifted data; vintages by
monitoring.vintages), loads the project dashboard in Debian's headless Chromium, and checks the rendered DOM.
Skipped when /usr/bin/chromium is missing, unless ORCHARD_REQUIRE_SERVICES=1 (then it fails).

Regenerate the README screenshot (synthetic timeline 2019-01..2021-12 with the 2020-02 shock, or a real state
folder's workspace): python -m tests.integration.test_dashboard_browser docs/img/evidently_dashboard.png
[--home .orchard --model application_pd]
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from monitoring.dashboards import add_month_snapshot, ensure_dashboard
from monitoring.vintages import early_estimate, matured_performance, performance_by_vintage
from orchard.credit.psi import ReferenceProfile, psi
from orchard.months import add_months, month_range, months_between
from orchard.ports import free_port
from orchard.settings import Settings, tool_environment

CHROMIUM = Path("/usr/bin/chromium")
MODEL = "application_pd"
PANEL_TITLES = (
    "Score PSI, latest month",
    "Largest feature CSI, latest month",
    "Score PSI by month",
    "Top-feature CSI by month",
    "Drift share by month",
    "Approval and alias events by month",
    "AUC by booking vintage: realised vs expected",
)
LINE_PANELS = (
    "Score PSI by month",
    "Top-feature CSI by month",
    "AUC by booking vintage: realised vs expected",
)


def _month_frame(rng: np.random.Generator, n: int, shock: float) -> pd.DataFrame:
    """One month of applications: the shock lowers income and raises utilisation and the score's risk."""
    return pd.DataFrame(
        {
            "score": rng.normal(620 - 45 * shock, 45, n),
            "income": rng.lognormal(8.0 - 0.5 * shock, 0.45, n),
            "utilisation": rng.beta(2 + 3 * shock, 5, n),
            "age": rng.normal(40, 11, n),
            "channel": rng.choice(["web", "app", "branch"], n, p=[0.5 - 0.2 * shock, 0.4 + 0.2 * shock, 0.1]),
        }
    )


def build_workspace(settings: Settings, start: str, end: str, shock_month: str, seed: int = 3) -> str:
    """Fill the model's project with one snapshot per month (and per vintage); return the project id."""
    rng = np.random.default_rng(seed)
    reference = _month_frame(rng, 3000, 0.0)
    profile = ReferenceProfile.fit(reference, ["score", "income", "utilisation", "age"], ["channel"])
    project_id = ensure_dashboard(settings, MODEL, top_features=["income", "utilisation", "age", "channel"])
    scores: list[pd.DataFrame] = []
    reported: set[str] = set()
    estimates: list[pd.DataFrame] = []
    retrain_month = add_months(shock_month, 3)
    for month in month_range(start, end):
        after = month >= shock_month
        shock = 0.0 if not after else max(0.0, 1.0 - 0.15 * months_between(shock_month, month))
        if month >= retrain_month:
            shock *= 0.35  # the retrained champion's reference absorbed most of the shift
        batch = _month_frame(rng, 600, shock)
        values = psi(profile, batch)
        pd_values = np.clip(rng.beta(1.5, 16, len(batch)) * (1 + shock), 0, 1)
        scores.append(
            pd.DataFrame(
                {
                    "application_id": [f"{month}-{i}" for i in range(len(batch))],
                    "vintage": month,
                    "pd": pd_values,
                }
            )
        )
        book = pd.concat(scores, ignore_index=True)
        bad_draw = rng.random(len(book)) < book["pd"].to_numpy() * (
            1.0 + 0.4 * (book["vintage"] >= shock_month)
        )
        labels = book[["application_id", "vintage"]].assign(
            mature=[add_months(v, 6) <= month for v in book["vintage"]], bad=bad_draw.astype(float)
        )
        realised = matured_performance(book, labels, month, reported)
        reported |= set(realised["vintage"])
        estimates.append(early_estimate(book.loc[book["vintage"] == month]))  # estimated when booked
        known = pd.concat(estimates, ignore_index=True)
        shown = known.loc[known["vintage"].isin([*realised["vintage"], month])]
        table = performance_by_vintage(realised, shown)  # the estimate beside the realised value
        events = [{"action": "promote", "version": 1}] if month == start else []
        if month == retrain_month:
            events = [{"action": "set_challenger", "version": 2}, {"action": "promote", "version": 2}]
        drifted = sum(v > 0.1 for k, v in values.items() if k != "score") / (len(values) - 1)
        add_month_snapshot(settings, MODEL, month, values, drifted, table, events)
    return project_id


@contextmanager
def evidently_ui(workspace: Path, log_path: Path) -> Iterator[str]:
    """Start `evidently ui` on a free loopback port; yield its base URL; stop that process afterwards."""
    port = free_port()
    env = {**os.environ, "EVIDENTLY_DISABLE_TELEMETRY": "1", "DO_NOT_TRACK": "1"}
    command = [str(Path(sys.executable).parent / "evidently"), "ui", "--workspace", str(workspace)]
    with open(log_path, "wb") as log:
        process = subprocess.Popen(
            [*command, "--host", "127.0.0.1", "--port", str(port)],
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
        )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 90
        while True:
            if process.poll() is not None:
                raise RuntimeError(
                    f"evidently ui exited with {process.returncode}: {log_path.read_text()[-2000:]}"
                )
            try:
                with urllib.request.urlopen(f"{base}/api/projects", timeout=2) as response:
                    if response.status == 200:
                        break
            except (urllib.error.URLError, OSError):
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"evidently ui did not answer within 90 s: {log_path.read_text()[-2000:]}")
            time.sleep(0.5)
        yield base
    finally:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=15)


def chromium(url: str, profile_dir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """Run headless Chromium on a URL with the test flags (reduced motion: charts render without animation)."""
    flags = [
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-background-networking",
        "--disable-component-update",
        "--no-first-run",
        "--disable-sync",
        "--disable-dev-shm-usage",
        "--force-prefers-reduced-motion",
        "--hide-scrollbars",
        f"--user-data-dir={profile_dir}",
        "--window-size=1400,2300",
        "--virtual-time-budget=20000",
    ]
    return subprocess.run(
        [str(CHROMIUM), *flags, *args, url], capture_output=True, text=True, timeout=180, check=False
    )


def panel_segments(dom: str, titles: tuple[str, ...] = PANEL_TITLES) -> dict[str, str]:
    """Return each panel title's DOM, up to the next panel title."""
    positions = sorted((dom.find(t), t) for t in titles if t in dom)
    ends = [p for p, _ in positions[1:]] + [len(dom)] if positions else []
    return {title: dom[start:end] for (start, title), end in zip(positions, ends, strict=True)}


def draws_a_series(segment: str) -> bool:
    """Return whether a line panel's DOM holds at least one drawn line (an SVG path with points)."""
    tags = re.findall(r"<path\b[^>]*>", segment)
    return any("MuiLineElement-root" in t and re.search(r'\sd="M[^"]+"', t) for t in tags)


def drawn_series(segment: str) -> int:
    """Return how many series a panel's DOM draws: distinct series of its bars (SVG rects) or lines (paths)."""
    drawn = set()
    for tag in re.findall(r"<(?:rect|path)\b[^>]*>", segment):
        found = re.search(r"Mui(?:Bar|Line)Element-series-([\w-]+)", tag)
        if found and ("<rect" in tag or re.search(r'\sd="M[^"]+"', tag)):
            drawn.add(found.group(1))
    return len(drawn)


@pytest.fixture
def chromium_available() -> None:
    if not CHROMIUM.exists():
        if os.environ.get("ORCHARD_REQUIRE_SERVICES") == "1":
            pytest.fail(f"{CHROMIUM} is missing and ORCHARD_REQUIRE_SERVICES=1 (apt-get install chromium)")
        pytest.skip(f"{CHROMIUM} is missing (apt-get install chromium)")


@pytest.mark.slow
@pytest.mark.usefixtures("chromium_available")
def test_dashboard_panels_carry_data_in_headless_chromium(settings: Settings, tmp_path: Path) -> None:
    # Given a workspace with a year of monthly snapshots around the shock (score PSI spikes in 2020-02)
    project_id = build_workspace(settings, "2019-07", "2020-06", "2020-02")
    with evidently_ui(settings.evidently_dir.resolve(), tmp_path / "evidently-ui.log") as base:
        # When Chromium loads the project dashboard
        url = f"{base}/projects/{project_id}"
        dump = chromium(url, tmp_path / "chromium-dom", "--dump-dom")
        shot = chromium(url, tmp_path / "chromium-shot", f"--screenshot={tmp_path / 'dashboard.png'}")
    dom = dump.stdout
    assert dump.returncode == 0 and MODEL in dom, f"dashboard page loaded: {dump.stderr[-1500:]}"
    # Then every panel title is rendered
    segments = panel_segments(dom)
    missing = [t for t in PANEL_TITLES if t not in segments]
    assert not missing, f"panels missing from the DOM: {missing}"
    # And the counters show numbers, the line panels draw series, the axes show the business months
    counter_text = re.sub(r"<[^>]+>", " ", segments["Score PSI, latest month"])
    assert re.search(r"\b0\.\d+\b", counter_text), (
        f"the score PSI counter shows a value: {counter_text[:300]}"
    )
    for title in LINE_PANELS:
        assert draws_a_series(segments[title]), f"panel {title!r} draws at least one series"
    ticks = set(re.findall(r"(20\d\d-\d\d)-01", segments["Score PSI by month"]))
    assert ticks and ticks <= set(month_range("2019-07", "2020-06")), (
        f"x axis = the simulated months: {ticks}"
    )
    assert "promote" in segments["Approval and alias events by month"], "the events panel lists its series"
    # And the screenshot is a real image
    image = tmp_path / "dashboard.png"
    assert shot.returncode == 0 and image.exists() and image.stat().st_size > 30_000, shot.stderr[-1500:]


def main() -> None:
    """Write a dashboard screenshot (synthetic demo timeline unless --home points at a state folder)."""
    parser = argparse.ArgumentParser(description="Screenshot the Evidently dashboard of a model.")
    parser.add_argument("output", type=Path)
    parser.add_argument("--home", type=Path, default=None, help="an Orchard state folder with a workspace")
    parser.add_argument("--model", default=MODEL)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="orchard-dashboard-") as tmp:
        tmp_dir = Path(tmp)
        if args.home is None:
            settings = Settings(_env_file=None, home=tmp_dir / "orchard")  # type: ignore[call-arg]
            os.environ.update({k: v for k, v in tool_environment(settings).items() if k != "PREFECT_HOME"})
            project_id = build_workspace(settings, "2019-01", "2021-12", "2020-02")
        else:
            settings = Settings(_env_file=None, home=args.home)  # type: ignore[call-arg]
            project_id = ensure_dashboard(settings, args.model)
        with evidently_ui(settings.evidently_dir.resolve(), tmp_dir / "evidently-ui.log") as base:
            result = chromium(
                f"{base}/projects/{project_id}", tmp_dir / "chromium", f"--screenshot={args.output.resolve()}"
            )
        if result.returncode != 0:
            raise SystemExit(f"chromium failed: {result.stderr[-1500:]}")


if __name__ == "__main__":
    main()
