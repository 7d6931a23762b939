"""LightGBM's Dask estimator for a training set that calls for a cluster: the search on a sample in this process,
the winner fitted on every row by `lightgbm.DaskLGBMClassifier` over the cluster's workers.

LightGBM's Dask interface has no early stopping (lightgbm-org/LightGBM#3712, #4189), and the per-fit search
(orchard.credit.model.TUNING_GRID) early-stops every candidate. So the search runs here, as in one process, on a
stratified sample of at most `search_rows` of the fitting rows, against the whole validation cut; the winner's
parameters, with its early-stopped tree count, are then fitted on every fitting row by LightGBM's data-parallel
tree learner, one partition of rows per worker. The booster that comes back (`to_local`) is a plain
`LGBMClassifier`, scored and registered like any other, and Platt-calibrated on the same validation cut.

A data-parallel fit finds each feature's bins from every worker's rows and sums the workers' histograms, so it is
not the booster one process fits on the same rows (bins found on one sample of every row): their scores agree
closely, not exactly (tests/integration/test_lightgbm_dask.py measures the gap).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from orchard.credit.model import TUNING_MIN_TREES, Tuned, search_lightgbm, validation_cut

if TYPE_CHECKING:
    from distributed import Client

LABEL_COLUMN = "__orchard_label__"


@dataclass(frozen=True)
class ClusterFit:
    """Where and from what size a LightGBM fit goes to the cluster: its Dask client and worker slots, the fewest
    training rows that call for it, and the most rows the search fits on in this process."""

    client: Client
    workers: int
    min_rows: int
    search_rows: int = 200_000


def search_sample(y: np.ndarray, rows: np.ndarray, cap: int, seed: int) -> np.ndarray:
    """Return at most `cap` of `rows`, stratified by label and seeded (all of them when they are fewer)."""
    if len(rows) <= cap:
        return rows
    from sklearn.model_selection import train_test_split  # deferred: heavy to import, only a fit needs it

    kept, _ = train_test_split(rows, train_size=cap, stratify=y[rows], random_state=seed)
    return np.sort(np.asarray(kept))


def tune_on_cluster(
    cluster: ClusterFit,
    x: pd.DataFrame,
    y: np.ndarray,
    categorical: list[str],
    base: dict[str, Any],
    seed: int,
) -> Tuned:
    """Search on a sample here, then fit the winner on every fitting row over the cluster; return it as Tuned.

    A search whose winner found no signal (orchard.credit.model.TUNING_MIN_TREES) is returned as it is: the
    caller falls back to the fixed parameters, as it does for a fit in one process.
    """
    import dask.dataframe as dd  # deferred: only a cluster fit needs Dask
    import lightgbm as lgb

    fit_rows, valid_rows = validation_cut(y, seed)
    sample = search_sample(y, fit_rows, cluster.search_rows, seed)
    validation = (x.iloc[valid_rows], y[valid_rows])
    searched = search_lightgbm((x.iloc[sample], y[sample]), validation, categorical, base)
    if searched.trees <= TUNING_MIN_TREES:
        return searched
    params = {**searched.model.get_params(), "n_estimators": searched.trees, "tree_learner": "data"}
    rows = x.iloc[fit_rows].assign(**{LABEL_COLUMN: y[fit_rows]})
    parts = dd.from_pandas(rows, npartitions=max(1, min(cluster.workers, len(rows))), sort=False)
    features = list(x.columns)
    booster = lgb.DaskLGBMClassifier(client=cluster.client, **params).fit(
        parts[features], parts[LABEL_COLUMN], categorical_feature=list(categorical) or "auto"
    )
    model = booster.to_local()
    fit = {
        "engine": "dask",
        "workers": cluster.workers,
        "search_rows": len(sample),
        "fit_rows": len(fit_rows),
    }
    raw = np.asarray(model.predict(validation[0], raw_score=True))
    return Tuned(model, searched.trees, raw, validation[1], searched.trials, fit)
