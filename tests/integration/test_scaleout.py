"""Scale-out: per-segment monitoring on a Dask LocalCluster (prefect-dask) equals the sequential run."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from prefect.task_runners import ThreadPoolTaskRunner

from flows.scaleout import monitor_segments, task_runner
from orchard.credit.psi import ReferenceProfile
from tests.services.conftest import ProductionSettings


def _settings(home: Path, **overrides: object) -> ProductionSettings:
    return ProductionSettings(_env_file=None, home=home, n_users=2_000, **overrides)  # type: ignore[call-arg]


def _frames(seed: int = 5) -> tuple[ReferenceProfile, pd.DataFrame]:
    rng = np.random.default_rng(seed)
    n = 3_000
    reference = pd.DataFrame({"income": rng.lognormal(8, 0.4, n), "utilisation": rng.beta(2, 5, n)})
    profile = ReferenceProfile.fit(reference, ["income", "utilisation"], [])
    current = pd.DataFrame(
        {
            "income": rng.lognormal(7.8, 0.5, n),
            "utilisation": rng.beta(3, 5, n),
            "channel": rng.choice(["app", "branch", "web"], n),
        }
    )
    return profile, current


def test_task_runner_follows_the_settings(tmp_path: Path) -> None:
    # Given no Dask configuration, Then tasks run sequentially in the flow's process
    assert isinstance(task_runner(_settings(tmp_path).production), ThreadPoolTaskRunner)
    # Given a scheduler address, Then the Dask runner connects to it
    runner = task_runner(_settings(tmp_path, dask_address="tcp://127.0.0.1:8786").production)
    assert type(runner).__name__ == "DaskTaskRunner" and runner.address == "tcp://127.0.0.1:8786"


@pytest.mark.slow
def test_segments_on_a_dask_local_cluster_equal_the_sequential_run(
    tmp_path: Path, prefect_harness: None
) -> None:
    # Given a reference profile and a month with three channels
    profile, current = _frames()
    # When the per-segment PSI runs sequentially and on a 2-worker LocalCluster
    sequential = monitor_segments(_settings(tmp_path / "a"), profile, current, "channel")
    on_dask = monitor_segments(_settings(tmp_path / "b", dask_workers=2), profile, current, "channel")
    # Then every segment has the same PSI of every column
    assert list(sequential) == ["app", "branch", "web"], sequential
    assert on_dask == sequential, f"Dask {on_dask} != sequential {sequential}"
    assert all(v["income"] > 0.01 for v in sequential.values()), "the shifted income shows up per segment"
