"""Integration tests of Orchard's PSI as an Evidently 0.7 custom metric (real Evidently Report runs)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from evidently import DataDefinition, Dataset, Report

from monitoring.evidently_metric import (
    OrchardPSI,
    OrchardValue,
    psi_report_metrics,
    read_psi,
)
from monitoring.reports import PSI_METRIC_TYPE, drift_report, save_report
from orchard.credit.psi import ReferenceProfile, psi
from orchard.errors import OrchardError

NUMERIC = ["score", "income", "utilisation"]
CATEGORICAL = ["channel"]


def _frame(n: int, seed: int, shift: float) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame(
        {
            "score": rng.normal(600 - 40 * shift, 50, n),
            "income": rng.lognormal(8 - shift, 0.5, n),
            "utilisation": rng.beta(2, 5, n),
            "channel": rng.choice(["web", "app", "branch"] if not shift else ["web", "app", "partner"], n),
        }
    )
    frame.loc[rng.random(n) < 0.05, "income"] = np.nan
    return frame


def _dataset(frame: pd.DataFrame) -> Dataset:
    definition = DataDefinition(numerical_columns=NUMERIC, categorical_columns=CATEGORICAL)
    return Dataset.from_pandas(frame, data_definition=definition)


@pytest.fixture(scope="module")
def frames() -> tuple[pd.DataFrame, pd.DataFrame, ReferenceProfile]:
    reference, current = _frame(800, 0, 0.0), _frame(300, 1, 1.0)
    return reference, current, ReferenceProfile.fit(reference, NUMERIC, CATEGORICAL)


def test_stored_profile_metric_reads_only_the_current_data_and_equals_psi(frames) -> None:  # type: ignore[no-untyped-def]
    _, current, profile = frames
    # Given the model's stored profile and only the current batch (no reference dataset in the run)
    snapshot = Report(psi_report_metrics(profile)).run(_dataset(current), None)
    # When read back by metric type
    found = read_psi(snapshot)
    # Then score PSI and feature CSI equal orchard.credit.psi.psi exactly, split by scope
    expected = psi(profile, current)
    assert found["score"] == {"score": expected["score"]}, "score PSI in the 'score' scope"
    assert found["feature"] == {c: expected[c] for c in ["income", "utilisation", "channel"]}
    assert found["score"]["score"] > 0.25, "the shifted score shows a significant PSI"


def test_metric_without_profile_freezes_bins_from_the_run_reference(frames) -> None:  # type: ignore[no-untyped-def]
    reference, current, profile = frames
    # Given no profile: the run's reference dataset is the development sample
    metric = OrchardPSI(columns=["income", "channel"], categorical=["channel"])
    snapshot = Report([metric]).run(_dataset(current), _dataset(reference))
    # Then the values equal the profile fitted on that reference
    expected = psi(profile, current)
    assert read_psi(snapshot)["feature"] == pytest.approx(
        {c: expected[c] for c in ["income", "channel"]}, abs=1e-12
    )
    # And without profile or reference the metric refuses
    with pytest.raises(OrchardError, match="stored profile or a reference"):
        Report([OrchardPSI(columns=["income"])]).run(_dataset(current), None)


def test_stored_config_keeps_only_the_dashboard_labels(frames) -> None:  # type: ignore[no-untyped-def]
    _, current, profile = frames
    # Given a run with a stored profile (a large parameter)
    snapshot = Report(psi_report_metrics(profile)).run(_dataset(current), None)
    configs = [m["config"] for m in snapshot.dict()["metrics"] if m["config"]["type"] == PSI_METRIC_TYPE]
    # Then only type and scope are stored with the values: series continue across retrains
    assert sorted(tuple(sorted(c)) for c in configs) == [("scope", "type"), ("scope", "type")], configs


def test_recorded_values_and_missing_values(frames) -> None:  # type: ignore[no-untyped-def]
    _, current, _ = frames
    # Given values computed by the monthly check / Then they are recorded as is, beside other values
    metrics = [
        OrchardPSI(columns=["score"], scope="score", values={"score": 0.31}),
        OrchardValue(group="drift", values={"drift_share": 0.4}),
    ]
    snapshot = Report(metrics).run(_dataset(current.head(1)), None)
    assert read_psi(snapshot) == {"score": {"score": 0.31}}
    drift = [m for m in snapshot.dict()["metrics"] if m["config"].get("group") == "drift"]
    assert drift and drift[0]["value"] == {"drift_share": 0.4}, "OrchardValue read by its group"
    with pytest.raises(OrchardError, match="no value for column\\(s\\) income"):
        Report([OrchardPSI(columns=["income"], values={"score": 0.1})]).run(_dataset(current.head(1)), None)


def test_drift_report_carries_orchard_psi_in_its_html(frames, tmp_path) -> None:  # type: ignore[no-untyped-def]
    reference, current, profile = frames
    # Given the lifecycle's drift report with the model's profile
    snapshot = drift_report(
        reference, current, NUMERIC, CATEGORICAL, name="application_pd 2020-03", profile=profile
    )
    # Then Evidently's drift metrics and Orchard's PSI are both in the snapshot and the HTML page
    types = {m["config"]["type"] for m in snapshot.dict()["metrics"]}
    assert {"evidently:metric_v2:DriftedColumnsCount", PSI_METRIC_TYPE} <= types, types
    assert read_psi(snapshot)["score"]["score"] == pytest.approx(psi(profile, current)["score"], abs=1e-12)
    html = save_report(snapshot, tmp_path / "drift.html").read_text()
    assert "Score PSI (Orchard" in html and "Feature CSI (Orchard" in html, "the custom metric renders"
    # And a profile column the report does not cover is refused
    with pytest.raises(OrchardError, match="not among the report's columns"):
        drift_report(reference, current, ["income"], [], profile=profile)
