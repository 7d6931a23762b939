"""Scale-out: per-model training and per-segment monitoring fanned out on Dask (prefect-dask) when configured.

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

from flows.train import promotion_decision, train_model
from monitoring.psi import ReferenceProfile, psi
from orchard.lifecycle.promotion import PromotionOutcome
from orchard.production import production_config
from orchard.settings import Settings


def task_runner(settings: Settings) -> Any:
    """Return the task runner the settings ask for: Dask at an address, a LocalCluster, or sequential."""
    config = production_config(settings)
    if config.dask_address:
        from prefect_dask import DaskTaskRunner

        return DaskTaskRunner(address=config.dask_address)
    if config.dask_workers > 0:
        from prefect_dask import DaskTaskRunner

        return DaskTaskRunner(
            cluster_class="distributed.LocalCluster",
            cluster_kwargs={"n_workers": config.dask_workers, "threads_per_worker": 1, "processes": True},
        )
    return ThreadPoolTaskRunner(max_workers=1)


@task(name="segment-psi", task_run_name="psi {segment}", cache_policy=NONE)
def segment_psi(profile: dict[str, Any], segment: str, frame: pd.DataFrame) -> dict[str, float]:
    """PSI/CSI of one segment's rows against the frozen reference bins."""
    return psi(ReferenceProfile.from_dict(profile), frame)


def _train_models(settings: Settings, models: list[str], month: str) -> dict[str, PromotionOutcome]:
    trained = {m: train_model.submit(settings, m, month) for m in models}
    # promotions move aliases and write governance records: one model at a time, in a fixed order
    return {m: promotion_decision(settings, trained[m].result(), month) for m in sorted(models)}


def _monitor_segments(
    profile: dict[str, Any], frame: pd.DataFrame, segment_column: str
) -> dict[str, dict[str, float]]:
    groups = {str(k): g.drop(columns=[segment_column]) for k, g in frame.groupby(segment_column, sort=True)}
    futures = {k: segment_psi.submit(profile, k, g) for k, g in groups.items()}
    return {k: futures[k].result() for k in sorted(futures)}


def train_models(settings: Settings, models: list[str], month: str) -> dict[str, PromotionOutcome]:
    """Train every model of the month in parallel on the configured runner, then gate each promotion."""
    runner = task_runner(settings)
    wired = flow(
        name="train-models", flow_run_name=f"train {len(models)} models @ {month}", task_runner=runner
    )
    return wired(_train_models)(settings, models, month)


def monitor_segments(
    settings: Settings, profile: ReferenceProfile, frame: pd.DataFrame, segment_column: str
) -> dict[str, dict[str, float]]:
    """Return PSI/CSI per segment (e.g. channel, region) on the configured runner, segments in sorted order."""
    runner = task_runner(settings)
    wired = flow(name="monitor-segments", flow_run_name=f"monitor by {segment_column}", task_runner=runner)
    return wired(_monitor_segments)(profile.to_dict(), frame, segment_column)
