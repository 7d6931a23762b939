"""The offline feature tables, built month by month from the months they need, equal the whole history's."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from feature_repo.views import offline_files
from orchard.feature_store import update_offline_tables
from orchard.lake import silver_months, silver_path
from orchard.partitions import open_cluster
from orchard.settings import Settings
from orchard.testing.small_lifecycle import SMALL, copy_home, small_portfolio

pytestmark = pytest.mark.slow(seconds=20)


def _tables(settings: Settings) -> dict[str, object]:
    return {
        view: pa.concat_tables([pq.read_table(f) for f in offline_files(settings.features_dir, view)])
        for view in settings.portfolio_def.views
    }


def _files(settings: Settings) -> dict[str, tuple[int, int]]:
    """Return each offline table file's (modification time, size), by path."""
    return {
        str(path): (path.stat().st_mtime_ns, path.stat().st_size)
        for view in settings.portfolio_def.views
        for path in offline_files(settings.features_dir, view)
    }


def _reveal(source_home: Settings, target: Settings, months: list[str]) -> None:
    """Land the given silver months of every source of the target home (copies of the source home's files)."""
    for source in source_home.portfolio_def.sources:
        for month in months:
            if month in silver_months(source_home, source):
                path = silver_path(target, source, month)
                path.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(silver_path(source_home, source, month), path)


def _homes(tmp_path: Path, lifecycle_home: Path) -> tuple[Settings, list[str], Settings, Settings]:
    """Return the small lifecycle's home (a copy), its silver months, and two empty homes on its portfolio."""
    lifecycle = copy_home(lifecycle_home, tmp_path / "lifecycle")
    fields = {**SMALL, "portfolio": small_portfolio(lifecycle)}
    reference = Settings(_env_file=None, home=lifecycle, **fields)  # type: ignore[arg-type]
    months = sorted({m for s in reference.portfolio_def.sources for m in silver_months(reference, s)})
    assert len(months) >= 8, months
    homes = [Settings(_env_file=None, home=tmp_path / n, **fields) for n in ("whole", "stepwise")]  # type: ignore[arg-type]
    return reference, months, homes[0], homes[1]


def test_tables_built_month_by_month_equal_the_whole_historys_and_a_late_month_rebuilds_them(
    tmp_path: Path, small_lifecycle_run: tuple[Path, subprocess.CompletedProcess[str]]
) -> None:
    # Given the silver months of the small lifecycle, and two empty homes on the same portfolio
    reference, months, whole, stepwise = _homes(tmp_path, small_lifecycle_run[0])
    # When one home gets every month at once and the other one month at a time, its tables updated after each
    # month (one month held back and landed last, as a quarantined batch fixed later would be)
    _reveal(reference, whole, months)
    update_offline_tables(whole)
    late = months[3]
    for month in (m for m in months if m != late):
        before = _files(stepwise)
        _reveal(reference, stepwise, [month])
        update_offline_tables(stepwise)
        # each month adds its period's files; no earlier period's file is written again
        after = _files(stepwise)
        assert {p: after[p] for p in before} == before, month
        added = set(after) - set(before)
        assert added and all(p.endswith((f"/{month}.parquet", "/empty.parquet")) for p in added), (
            month,
            added,
        )
    # Then before the late month lands, the month-by-month tables equal the whole history's of the same months
    partial = Settings(_env_file=None, home=tmp_path / "partial", portfolio=reference.portfolio, **SMALL)  # type: ignore[arg-type]
    _reveal(reference, partial, [m for m in months if m != late])
    update_offline_tables(partial)
    assert _tables(stepwise) == _tables(partial)
    # And after it lands (the history changed before the last month featurized: everything again), they
    # equal the whole history's, row for row
    _reveal(reference, stepwise, [late])
    update_offline_tables(stepwise)
    built, expected = _tables(stepwise), _tables(whole)
    assert built == expected, [v for v in expected if built[v] != expected[v]]
    # And the lifecycle's own tables, built month by month as the months landed, are those too
    assert _tables(reference) == expected
    assert all(table.num_rows > 100 for table in expected.values()), {
        v: t.num_rows for v, t in expected.items()
    }


def test_tables_featurized_on_a_dask_local_cluster_equal_the_single_process_ones(
    tmp_path: Path, small_lifecycle_run: tuple[Path, subprocess.CompletedProcess[str]]
) -> None:
    # Given the small lifecycle's silver months, two empty homes on its portfolio, a 2-worker Dask LocalCluster
    reference, months, whole, stepwise = _homes(tmp_path, small_lifecycle_run[0])
    cluster = open_cluster(Settings(_env_file=None, dask_workers=2).production)  # type: ignore[call-arg]
    assert cluster is not None
    try:
        # When one home's tables are featurized on the cluster from every month at once (a rebuild) and the
        # other's month by month (rows added to the tables), each view's rows by entity partition
        _reveal(reference, whole, months)
        update_offline_tables(whole, cluster)
        for month in months:
            _reveal(reference, stepwise, [month])
            update_offline_tables(stepwise, cluster)
        ran = cluster.client.run_on_scheduler(_task_prefixes)
    finally:
        cluster.close()
    # Then both equal the tables the lifecycle built in one process, file for file and row for row
    expected = _tables(reference)
    assert _tables(whole) == expected and _tables(stepwise) == expected
    names = sorted(p.relative_to(reference.features_dir).as_posix() for p in _all_files(reference))
    assert sorted(p.relative_to(whole.features_dir).as_posix() for p in _all_files(whole)) == names
    assert "featurize_part" in ran, ran  # (Dask keys drop the leading _)


def _all_files(settings: Settings) -> list[Path]:
    return [
        path for view in settings.portfolio_def.views for path in offline_files(settings.features_dir, view)
    ]


def _task_prefixes(dask_scheduler: object) -> list[str]:
    return list(dask_scheduler.task_prefixes)  # type: ignore[attr-defined]
