"""Scale-out: per-segment monitoring fanned out on Dask (prefect-dask) when configured.

The task runner comes from the settings: an existing scheduler (`dask_address`), a LocalCluster
(`dask_workers` > 0), or none (tasks run one after another in the flow's process). The tasks and their inputs
are the same either way, so the results are too.
"""

from __future__ import annotations

from typing import Any

import pandas as pd
from prefect import flow, task
from prefect.cache_policies import NONE
from prefect.task_runners import ThreadPoolTaskRunner

from orchard.credit.psi import ReferenceProfile, psi
from orchard.settings import ProductionConfig, Settings


def task_runner(config: ProductionConfig) -> Any:
    """Return the task runner the production settings ask for: Dask at an address, a LocalCluster, or sequential."""
    if config.dask_address:
        from prefect_dask import DaskTaskRunner  # optional: only with a Dask cluster configured

        return DaskTaskRunner(address=config.dask_address)
    if config.dask_workers > 0:
        from prefect_dask import DaskTaskRunner  # optional: only with a Dask cluster configured

        return DaskTaskRunner(
            cluster_class="distributed.LocalCluster",
            cluster_kwargs={"n_workers": config.dask_workers, "threads_per_worker": 1, "processes": True},
        )
    return ThreadPoolTaskRunner(max_workers=1)


@task(name="segment-psi", task_run_name="psi {segment}", cache_policy=NONE)
def segment_psi(profile: dict[str, Any], segment: str, frame: pd.DataFrame) -> dict[str, float]:
    """PSI/CSI of one segment's rows against the frozen reference bins."""
    return psi(ReferenceProfile.from_dict(profile), frame)


def _monitor_segments(
    profile: dict[str, Any], frame: pd.DataFrame, segment_column: str
) -> dict[str, dict[str, float]]:
    groups = {str(k): g.drop(columns=[segment_column]) for k, g in frame.groupby(segment_column, sort=True)}
    futures = {k: segment_psi.submit(profile, k, g) for k, g in groups.items()}
    return {k: futures[k].result() for k in sorted(futures)}


def monitor_segments(
    settings: Settings, profile: ReferenceProfile, frame: pd.DataFrame, segment_column: str
) -> dict[str, dict[str, float]]:
    """Return PSI/CSI per segment (e.g. channel, region) on the configured runner, segments in sorted order."""
    runner = task_runner(settings.production)
    wired = flow(name="monitor-segments", flow_run_name=f"monitor by {segment_column}", task_runner=runner)
    return wired(_monitor_segments)(profile.to_dict(), frame, segment_column)
