"""A month's batch steps split by entity over a Dask cluster, when the settings name one.

With `dask_address` (an existing scheduler) or `dask_workers` > 0 (a LocalCluster of that many single-threaded
worker processes), the point-in-time joins (batch scoring's and training's) and the batch scoring itself run as
one Dask task per entity partition: a stable hash of the entity key picks each row's partition, every partition
goes to a worker, and the results come back in the rows' original order. A row's join and score depend on that
row alone, so the result is the single-process result, value for value and in the same order. The offline
feature tables' rows are computed the same way (orchard.feature_store: each task reads its entities' silver rows
itself, and the rows are combined in the order one process gives).

Every worker reads the lake and the feature store through the paths of the settings it is given: a remote cluster
needs the home on storage its workers share (a LocalCluster shares the machine).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from orchard.errors import OrchardError
from orchard.settings import ProductionConfig

if TYPE_CHECKING:
    from distributed import Client

log = logging.getLogger(__name__)


def entity_partitions(keys: pd.Series, n: int) -> np.ndarray:
    """Return each row's partition (0..n-1): a hash of the key's text, the same in every process and run."""
    if n < 1:
        raise OrchardError(f"entity partitions need at least one partition, not {n}")
    hashed = pd.util.hash_pandas_object(keys.astype(str), index=False).to_numpy()
    return (hashed % np.uint64(n)).astype(np.int64)


@dataclass
class Cluster:
    """A Dask client, and the LocalCluster behind it when Orchard started one (closed with it)."""

    client: Client
    local: Any | None = None

    @property
    def workers(self) -> int:
        """The cluster's worker thread slots: one partition each."""
        return max(1, sum(self.client.nthreads().values()))

    def close(self) -> None:
        self.client.close()
        if self.local is not None:
            self.local.close()


def open_cluster(config: ProductionConfig) -> Cluster | None:
    """Connect to the configured Dask scheduler or start the configured LocalCluster; None when neither is set."""
    if not config.dask_address and config.dask_workers == 0:
        return None
    from distributed import Client, LocalCluster  # deferred: only a configured cluster needs Dask

    if config.dask_address:
        try:
            return Cluster(Client(config.dask_address, timeout="30s"))
        except OSError as exc:
            raise OrchardError(
                f"the Dask scheduler at {config.dask_address} is not reachable: {exc}"
            ) from None
    local = LocalCluster(
        n_workers=config.dask_workers,
        threads_per_worker=1,
        processes=True,
        dashboard_address=None,
        silence_logs=logging.WARNING,
    )
    log.info("started a Dask LocalCluster of %d workers", config.dask_workers)
    return Cluster(Client(local), local)


def map_entity_partitions(
    cluster: Cluster,
    step: Callable[..., pd.DataFrame],
    frame: pd.DataFrame,
    entity: str,
    *args: Any,
) -> pd.DataFrame:
    """Return step(part, *args) of every entity partition of frame, run on the cluster, rows in frame's order.

    The step must return one row per row of its part, in the part's order (a join or a scoring does).
    """
    part = entity_partitions(frame[entity], cluster.workers)
    positions = [np.flatnonzero(part == i) for i in range(cluster.workers)]
    positions = [rows for rows in positions if len(rows)]
    if not positions:
        return step(frame, *args)
    futures = [
        cluster.client.submit(step, frame.iloc[rows].reset_index(drop=True), *args, pure=False)
        for rows in positions
    ]
    results = cluster.client.gather(futures)
    for rows, result in zip(positions, results, strict=True):
        if len(result) != len(rows):
            raise OrchardError(f"a partition step returned {len(result)} rows for {len(rows)}")
    combined = pd.concat(results, ignore_index=True)
    order = np.argsort(np.concatenate(positions), kind="stable")
    return combined.iloc[order].reset_index(drop=True)
