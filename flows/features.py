"""Features flow: silver -> offline feature tables -> Feast apply -> incremental materialization."""

from __future__ import annotations

import time

from prefect import flow, task
from prefect.cache_policies import NONE

from orchard.feature_store import apply_definitions, materialize_month, month_rows, update_offline_tables
from orchard.lifecycle.tools import Tools
from orchard.settings import Settings


@task(name="update-features", cache_policy=NONE)
def update_features(settings: Settings, month: str, tools: Tools) -> dict[str, float]:
    """Recompute the offline tables from silver (on the run's Dask cluster, if the settings name one), apply
    definitions, materialize the month online."""
    start = time.perf_counter()
    tables = update_offline_tables(settings, tools.cluster(settings))
    apply_definitions(settings)
    result = materialize_month(settings, month)
    # rows of the month in the feature tables: the state, the same however many attempts materialized it
    month_total = sum(len(month_rows(settings, view, month)) for view in settings.portfolio_def.views)
    return {
        "offline_rows": float(sum(tables.values())),
        "online_rows_written": float(result.rows),
        "month_rows": float(month_total),
        "seconds": time.perf_counter() - start,
    }


@flow(name="features", flow_run_name="features {month}", validate_parameters=False)
def features_flow(settings: Settings, month: str) -> dict[str, float]:
    """Build and materialize the features of one month."""
    with Tools() as tools:
        return update_features(settings, month, tools)
