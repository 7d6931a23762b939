"""A LightGBM fit large enough for the cluster runs on LightGBM's Dask estimator over a LocalCluster, and scores like
the same fit in one process."""

from __future__ import annotations

import pickle
from collections.abc import Iterator

import numpy as np
import pytest

from orchard.credit.lightgbm_dask import ClusterFit, search_sample
from orchard.credit.metrics import auc
from orchard.credit.model import train_lightgbm
from orchard.lifecycle.tools import Tools
from orchard.partitions import Cluster, open_cluster
from orchard.settings import Settings
from tests.applicants import CATEGORICAL, applicants

FEATURES = ["missed_payments_12m", "income", "employment"]


@pytest.fixture(scope="module")
def cluster() -> Iterator[Cluster]:
    opened = open_cluster(Settings(_env_file=None, dask_workers=2).production)  # type: ignore[call-arg]
    assert opened is not None
    yield opened
    opened.close()


def _lightgbm_task_ran(dask_scheduler: object) -> bool:
    """Whether the scheduler ran LightGBM's Dask training task (lightgbm.dask._train_part: prefix `train_part`)."""
    return "train_part" in dask_scheduler.task_prefixes  # type: ignore[attr-defined]


def test_a_fit_at_the_threshold_runs_on_the_cluster_and_scores_like_one_process(cluster: Cluster) -> None:
    # Given 12,000 applicants and a cluster fit from 10,000 rows, the search on at most 6,000
    train, holdout = applicants(12_000, seed=3), applicants(4_000, seed=4)
    on_cluster = ClusterFit(cluster.client, cluster.workers, min_rows=10_000, search_rows=6_000)
    # When LightGBM is trained with it and in one process
    dask_fit = train_lightgbm(train, "bad", FEATURES, CATEGORICAL, seed=7, cluster=on_cluster)
    local = train_lightgbm(train, "bad", FEATURES, CATEGORICAL, seed=7)
    # Then the cluster's fit ran LightGBM's Dask training task, on every fitting row, the search on the sample
    assert cluster.client.run_on_scheduler(_lightgbm_task_ran)
    assert dask_fit.params["engine"] == "dask" and dask_fit.params["workers"] == 2
    assert dask_fit.params["search_rows"] == 6_000 and dask_fit.params["fit_rows"] == 9_600
    assert "engine" not in local.params
    # And it came back as a plain local booster (pickled and scored with no cluster), with the winner's trees
    booster = dask_fit.estimator.model  # type: ignore[attr-defined]
    assert type(booster).__name__ == "LGBMClassifier" and booster.n_estimators == dask_fit.params["trees"]
    assert dask_fit.params["trees"] > 10
    restored = pickle.loads(pickle.dumps(dask_fit))
    pd_dask, pd_local = restored.predict_pd(holdout), local.predict_pd(holdout)
    # And it ranks and calibrates new applicants as the one-process fit does, closely but not exactly
    auc_dask, auc_local = auc(holdout["bad"], pd_dask), auc(holdout["bad"], pd_local)
    assert abs(auc_dask - auc_local) < 0.01, (auc_dask, auc_local)
    assert abs(pd_dask.mean() - holdout["bad"].mean()) < 0.03
    assert np.corrcoef(pd_dask, pd_local)[0, 1] > 0.95


def test_a_fit_below_the_threshold_stays_in_this_process(cluster: Cluster) -> None:
    train = applicants(4_000, seed=5)
    on_cluster = ClusterFit(cluster.client, cluster.workers, min_rows=10_000)
    below = train_lightgbm(train, "bad", FEATURES, CATEGORICAL, seed=7, cluster=on_cluster)
    alone = train_lightgbm(train, "bad", FEATURES, CATEGORICAL, seed=7)
    # the same fit, value for value
    assert "engine" not in below.params and below.params == alone.params
    np.testing.assert_array_equal(below.predict_pd(train), alone.predict_pd(train))


def test_the_search_sample_is_stratified_seeded_and_capped() -> None:
    y = np.array([1] * 100 + [0] * 900)
    rows = np.arange(1000)
    kept = search_sample(y, rows, 200, seed=7)
    assert len(kept) == 200 and y[kept].sum() == 20 and (np.diff(kept) > 0).all()
    assert (search_sample(y, rows, 200, seed=7) == kept).all()
    assert (search_sample(y, rows[:150], 200, seed=7) == rows[:150]).all()


def test_the_run_tools_hand_the_configured_cluster_and_threshold_to_training() -> None:
    settings = Settings(_env_file=None, dask_workers=1, dask_lightgbm_min_rows=5)  # type: ignore[call-arg]
    with Tools() as tools:
        fit = tools.cluster_fit(settings)
        assert fit is not None and fit.min_rows == 5 and fit.workers == 1
    assert Tools().cluster_fit(Settings(_env_file=None)) is None
