"""A month's joins and batch scoring split by entity over a Dask LocalCluster equal the single-process run."""

from __future__ import annotations

import subprocess
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from model_registry.registry import champion_version, load_model, trained_months
from model_registry.tracking import mlflow_client
from orchard.credit.model import TUNING_MIN_TREES
from orchard.errors import OrchardError
from orchard.lifecycle.datasets import model_frame
from orchard.lifecycle.tools import Tools
from orchard.lifecycle.training import ready_to_train, train_and_register
from orchard.model_specs import model_specs
from orchard.months import month_range
from orchard.partitions import Cluster, entity_partitions, map_entity_partitions
from orchard.serving.batch import score_month
from orchard.serving.scoring import ServedModel
from orchard.settings import Settings
from orchard.testing.small_lifecycle import SMALL, copy_home, small_portfolio
from tests.partition_steps import drop_first_row, tag_rows


def test_entity_partitions_are_a_stable_hash_of_the_key() -> None:
    keys = pd.Series([f"U{i:07d}" for i in range(2_000)])
    parts = entity_partitions(keys, 3)
    # Then every row has one of the 3 partitions, each partition holds about a third, a key always lands in the
    # same one (whatever else is in the frame), and numbers and their text hash alike
    assert set(parts) == {0, 1, 2} and min(np.bincount(parts)) > 550, np.bincount(parts)
    assert (entity_partitions(keys.iloc[::-1], 3) == parts[::-1]).all()
    assert (entity_partitions(pd.Series([7, 8]), 2) == entity_partitions(pd.Series(["7", "8"]), 2)).all()
    assert (entity_partitions(keys, 1) == 0).all()
    with pytest.raises(OrchardError, match="at least one partition"):
        entity_partitions(keys, 0)


def test_partition_results_come_back_in_the_frames_row_order() -> None:
    # Given a frame whose entities repeat and are not sorted, on a 3-worker LocalCluster (of threads: the rows'
    # order is the point here; the scenarios below run the settings' LocalCluster of processes)
    from distributed import Client, LocalCluster

    frame = pd.DataFrame({"user_id": [f"U{i % 17}" for i in range(100)][::-1], "x": range(100)})
    local = LocalCluster(n_workers=3, threads_per_worker=1, processes=False, dashboard_address=None)
    cluster = Cluster(Client(local), local)
    assert cluster.workers == 3
    try:
        # When a row-wise step runs per entity partition
        out = map_entity_partitions(cluster, tag_rows, frame, "user_id", "!")
        # Then the rows are the frame's, in its order, each with its own result
        pd.testing.assert_frame_equal(out, frame.assign(tagged=frame["user_id"] + "!"))
        # And a step that loses rows is refused
        with pytest.raises(OrchardError, match="rows for"):
            map_entity_partitions(cluster, drop_first_row, frame, "user_id")
    finally:
        cluster.close()


def _task_prefixes(dask_scheduler: object) -> list[str]:
    return list(dask_scheduler.task_prefixes)  # type: ignore[attr-defined]


def _copied_home(home: Path, tmp_path: Path) -> dict[str, object]:
    """Copy the small lifecycle's home into tmp_path; return the settings fields of the copy."""
    copied = copy_home(home, tmp_path / "orchard")
    return {**SMALL, "home": copied, "portfolio": small_portfolio(copied)}


@pytest.mark.slow(seconds=40)
def test_joins_and_scores_on_a_dask_local_cluster_equal_the_single_process_run(
    tmp_path: Path, small_lifecycle_run: tuple[Path, subprocess.CompletedProcess[str]]
) -> None:
    # Given the small lifecycle's home, read in one process and with a 2-worker Dask LocalCluster
    fields = _copied_home(small_lifecycle_run[0], tmp_path)
    single = Settings(_env_file=None, **fields)  # type: ignore[arg-type]
    on_dask = Settings(_env_file=None, dask_workers=2, **fields)  # type: ignore[arg-type]
    month = str(SMALL["end_month"])
    history = month_range(str(SMALL["start_month"]), month)
    compared = []
    with Tools() as one, Tools() as many:
        for spec in model_specs(single.portfolio_def).values():
            # When a model's training frame (every month, labels known at the end) is joined both ways
            frames = [
                model_frame(s, spec, history, month, tools=t) for s, t in ((single, one), (on_dask, many))
            ]
            # Then the frames are equal, row for row, with the same lineage
            pd.testing.assert_frame_equal(frames[1].frame, frames[0].frame)
            assert frames[1].data_sha256 == frames[0].data_sha256
            version = champion_version(single, spec.name)
            if version is None:
                continue
            # And the month's batch scores of its champion (reason codes included) are equal too
            served = ServedModel.build(spec.name, version, load_model(single, spec.name, version))
            reasons = spec.unit == "cases"
            scores = [
                score_month(s, spec, month, served, with_reasons=reasons, tools=t)
                for s, t in ((single, one), (on_dask, many))
            ]
            pd.testing.assert_frame_equal(scores[1], scores[0])
            compared.append((spec.name, len(frames[0].frame), len(scores[0])))
        # (and the partitions did run on the cluster's workers)
        cluster = many.cluster(on_dask)
        assert cluster is not None and one.cluster(single) is None
        ran = cluster.client.run_on_scheduler(_task_prefixes)
        assert {"join_part", "score_part"} <= set(ran), ran  # Dask keys drop the leading _
    assert len(compared) >= 4 and all(rows > 100 for _, rows, _ in compared), compared


def _searched(settings: Settings, name: str) -> bool:
    """Whether the latest version of a model is a LightGBM whose fit kept its search's winner."""
    versions = trained_months(settings, name)
    if not versions:
        return False
    trials = getattr(load_model(settings, name, max(versions)), "params", {}).get("tuning", [])
    return bool(trials) and max(trials, key=lambda t: t["valid_auc"])["trees"] > TUNING_MIN_TREES


@pytest.mark.slow(seconds=30)
def test_a_lifecycle_fit_above_the_threshold_is_made_by_lightgbms_dask_estimator(
    tmp_path: Path, small_lifecycle_run: tuple[Path, subprocess.CompletedProcess[str]]
) -> None:
    # Given the small lifecycle's home on a 2-worker LocalCluster that takes every LightGBM fit (from 1 row)
    fields = _copied_home(small_lifecycle_run[0], tmp_path)
    settings = Settings(_env_file=None, dask_workers=2, dask_lightgbm_min_rows=1, **fields)  # type: ignore[arg-type]
    # a model whose last fit searched its parameters (enough bads and signal: orchard.credit.model), and a month
    # it has no version of, with enough matured vintages to train
    spec, month = next(
        (s, m)
        for s in model_specs(settings.portfolio_def).values()
        if s.kind == "pd" and _searched(settings, s.name)
        for m in reversed(month_range(str(SMALL["start_month"]), str(SMALL["end_month"])))
        if m not in trained_months(settings, s.name).values() and ready_to_train(settings, s, m)
    )
    with Tools() as tools:
        # When the lifecycle trains that model at that month
        outcome = train_and_register(settings, spec, month, tools)
        cluster = tools.cluster(settings)
        assert cluster is not None
        ran = cluster.client.run_on_scheduler(_task_prefixes)
        frame = model_frame(settings, spec, [month], month, tools=tools).frame
    # Then LightGBM was fitted by its Dask estimator on the cluster, and MLflow says so
    assert "train_part" in ran, ran
    client = mlflow_client(settings)
    run = client.get_run(str(client.get_model_version(spec.name, str(outcome.version)).run_id))
    assert run.data.params["lightgbm_engine"] == "dask"
    # And the registered version loads and scores the month's cases like any other
    scores = load_model(settings, spec.name, outcome.version).predict_pd(frame)
    assert len(scores) == len(frame) > 100 and np.isfinite(scores).all() and 0 < scores.mean() < 1
    assert outcome.metrics["oot_auc"] > 0.55, outcome.metrics
