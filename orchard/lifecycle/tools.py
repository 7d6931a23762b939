"""The tools a run opens once and reuses: one object, created at the edge and passed down.

The lifecycle flow (`orchard demo`, `orchard run`), a deployed monitor or train flow and a batch-scoring run each
make one `Tools`, pass it to the use cases they call, and close it when they end: nothing stays behind in the
process. A use case called without one (a test, a one-off call) makes its own for that call. It holds:
- the Feast store of the home (opening one costs ~0.2 s; training and scoring read through it every month);
- the Great Expectations project (its context and batch definitions) and the key hashes of lake files its
  reference checks read (every month's batches are checked against the keys of all earlier ones);
- the point-in-time joins of recent calls, and the month's join of every monitored model's cases
  (orchard.lifecycle.datasets.KeptJoin: rows are taken from them instead of joined again);
- loaded model objects (a registered version never changes; unpickling one costs ~0.2 s);
- the train keys of registered versions;
- the Dask cluster the settings configure, if any (orchard.partitions), started or joined on first use (the
  joins, scoring and feature tables partitioned over it; LightGBM's large fits on it, orchard.credit.lightgbm_dask);
- the run's lane (`Tools(lane_process=True)`: the lifecycle's): a second process (orchard.worker, killed with
  this one), started on first use, for work nothing after it in the run reads, run beside the other steps: the
  joint model's month, the dashboard snapshots, the Evidently drift reports. Without it (a one-off call) that
  work runs in place.
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from collections.abc import Callable
from concurrent.futures import Executor, Future
from concurrent.futures import wait as wait_all
from typing import TYPE_CHECKING, Any

import pandas as pd
from feast import FeatureStore

from orchard.contracts import ContractTools
from orchard.credit.lightgbm_dask import ClusterFit
from orchard.feature_store import open_store
from orchard.partitions import Cluster, open_cluster
from orchard.settings import Settings
from orchard.worker import InPlace, Worker, timed

if TYPE_CHECKING:
    from orchard.lifecycle.datasets import KeptJoin

log = logging.getLogger(__name__)

JOINED_KEEP = 6
"""Recent point-in-time joins kept (the models of one population share a join within a month, a gate's rows are
among its fit's)."""


class Tools:
    """The open Feast store, GE project and caches of one run (see the module docstring).

    A plain class, not a dataclass: Prefect looks for futures in a task's parameters, through every field of a
    dataclass and every value of a dict, and the run's loaded models made that 10-20 ms per task call.
    """

    def __init__(self, lane_process: bool = False) -> None:
        self.lane_process = lane_process
        self.joined: OrderedDict[tuple, pd.DataFrame] = OrderedDict()
        self.month_joins: dict[tuple[str, ...], KeptJoin] = {}
        self.recent_joins: list[KeptJoin] = []
        self.models: dict[tuple[str, str, int], Any] = {}
        self.train_keys: dict[tuple[str, str, int], str] = {}
        self._store: tuple[str, FeatureStore] | None = None
        self._contracts: tuple[str, ContractTools] | None = None
        self._cluster: tuple[tuple[str | None, int], Cluster | None] | None = None
        self._lane: Executor | None = None
        self._behind: dict[str, Future[tuple[Any, float]]] = {}

    def feature_store(self, settings: Settings) -> FeatureStore:
        """Return the home's Feast store, opened on first use (again if the settings name another home)."""
        key = str(settings.feast_dir.resolve())
        if self._store is None or self._store[0] != key:
            self._store = (key, open_store(settings))
        return self._store[1]

    def contracts(self, settings: Settings) -> ContractTools:
        """Return the home's GE project and lake key hashes, opened on first use (again for another home)."""
        key = str(settings.gx_dir.resolve())
        if self._contracts is None or self._contracts[0] != key:
            self._contracts = (key, ContractTools.of(settings))
        return self._contracts[1]

    def cluster(self, settings: Settings) -> Cluster | None:
        """Return the Dask cluster the settings configure (None: one process), opened on first use."""
        config = settings.production
        key = (config.dask_address, config.dask_workers)
        if self._cluster is None or self._cluster[0] != key:
            self._close_cluster()
            self._cluster = (key, open_cluster(config))
        return self._cluster[1]

    def cluster_fit(self, settings: Settings) -> ClusterFit | None:
        """Return how a LightGBM fit of settings.production.dask_lightgbm_min_rows rows or more goes to the
        configured Dask cluster (orchard.credit.lightgbm_dask); None when no cluster is configured."""
        cluster = self.cluster(settings)
        if cluster is None:
            return None
        return ClusterFit(cluster.client, cluster.workers, settings.production.dask_lightgbm_min_rows)

    def lane(self) -> Executor:
        """Return the run's lane: its second process (started on first use) when the run has one, else an
        executor that runs each task in place when it is submitted."""
        if self._lane is None:
            self._lane = Worker(die_with_parent=True) if self.lane_process else InPlace()
        return self._lane

    def idle_lane(self) -> Executor | None:
        """Return the run's lane process if it has started and has nothing to do now (None: the run has none, or
        it is busy), for work the run waits for that would otherwise run in its own process."""
        lane = self._lane  # (not started for it: a lane starting up is busy)
        return lane if isinstance(lane, Worker) and lane.idle else None

    def behind(self, stage: str, fn: Callable[..., Any], /, *args: Any) -> None:
        """Run fn(*args) in the lane as the named stage, timed there (orchard.worker.timed); the run waits for it
        at `settle` and when it closes. Run in place (no second process), its error is raised here."""
        future = self.lane().submit(timed, fn, *args)
        if future.done():
            future.result()
        self._behind[stage] = future

    def hand_over(self) -> dict[str, Future[tuple[Any, float]]]:
        """Return the work left behind so far by stage, each future's result (value, seconds); the caller now
        waits for it (the run no longer does)."""
        pending, self._behind = self._behind, {}
        return pending

    def settle(self) -> None:
        """Wait for the work left behind; raise the first error among it."""
        pending = list(self.hand_over().values())
        wait_all(pending)
        for future in pending:
            future.result()

    def _close_cluster(self) -> None:
        if self._cluster is not None and self._cluster[1] is not None:
            self._cluster[1].close()
        self._cluster = None

    def kept_joins(self) -> list[KeptJoin]:
        """Return the joins kept: the month's first, then the recent ones, the latest first."""
        return [*self.month_joins.values(), *self.recent_joins]

    def keep_join(self, join: KeptJoin) -> None:
        """Keep a join, first among the recent ones (the JOINED_KEEP latest are kept)."""
        self.recent_joins = [join, *self.recent_joins][:JOINED_KEEP]

    def joined_frame(self, key: tuple, make: Callable[[], pd.DataFrame]) -> pd.DataFrame:
        """Return the join kept under key, or make, keep (the JOINED_KEEP most recent) and return it: a join
        partitioned over a Dask cluster, kept as it came for the same rows."""
        if key not in self.joined:
            self.joined[key] = make()
            while len(self.joined) > JOINED_KEEP:
                self.joined.popitem(last=False)
        self.joined.move_to_end(key)
        return self.joined[key]

    def close(self) -> None:
        """Drop the store, the GE project and every cached object, close the cluster and the lane (the run is
        over; a month running in the lane is let finish)."""
        self._close_cluster()
        if self._behind:  # (closed after an error: the work left behind still finishes)
            wait_all(self._behind.values())
            for future in self._behind.values():
                if future.exception() is not None:
                    log.error("work left behind failed: %r", future.exception())
            self._behind = {}
        if self._lane is not None:
            self._lane.shutdown()
            self._lane = None
        self._store = None
        self._contracts = None
        self.joined.clear()
        self.month_joins.clear()
        self.recent_joins.clear()
        self.models.clear()
        self.train_keys.clear()

    def __enter__(self) -> Tools:
        return self

    def __exit__(self, error: type[BaseException] | None, *_: object) -> None:
        if error is None:
            self.settle()  # a run that ended well raises what its work left behind raised
        self.close()
