"""MLflow clients and experiments built from the settings, with no process-wide state left behind."""

from __future__ import annotations

import fcntl
import json
import logging
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import urlparse
from urllib.request import url2pathname

import mlflow
import mlflow.tracking._tracking_service.utils as _tracking_utils
from mlflow import MlflowClient
from mlflow.entities import LifecycleStage
from mlflow.environment_variables import MLFLOW_TRACKING_URI
from mlflow.exceptions import MlflowException

from orchard.settings import Settings

log = logging.getLogger(__name__)


_opened: set[str] = set()
"""The sqlite stores this process has opened (their tables exist)."""


def mlflow_client(settings: Settings) -> MlflowClient:
    """Return a client on the settings' tracking store, also used as the model registry."""
    if not settings.tracking_uri.startswith("sqlite:///") or settings.tracking_uri in _opened:
        return _client(settings)
    # sqlite needs its folder (a server URI needs nothing local), and its tables made once
    settings.mlflow_dir.mkdir(parents=True, exist_ok=True)
    return _open_store(settings)


def _client(settings: Settings) -> MlflowClient:
    return MlflowClient(tracking_uri=settings.tracking_uri, registry_uri=settings.tracking_uri)


def _open_store(settings: Settings) -> MlflowClient:
    """Open a sqlite store (MLflow creates and migrates its tables as a client is made) under a file lock.

    Processes that open a new store at once (the lifecycle and its lane, Dask workers, two CLI calls) would each
    create the tables, and all but one fail ("table experiment_tags already exists", or a migration that finds
    its version row gone): the first to hold the lock creates them, the others then find them.
    """
    with (settings.mlflow_dir / ".open.lock").open("a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            client = _client(settings)
            client.search_registered_models(max_results=1)  # the registry's store, on the same database
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)
    _opened.add(settings.tracking_uri)
    return client


def read_run_json(client: MlflowClient, run_id: str, artifact: str) -> dict[str, Any]:
    """Read a JSON artifact of a run: straight from disk for a local store, else downloaded."""
    root = client.get_run(run_id).info.artifact_uri or ""
    if root.startswith("file://"):
        # Local store: no download, and no progress bar on the user's terminal.
        return json.loads((Path(url2pathname(urlparse(root).path)) / artifact).read_text())
    with tempfile.TemporaryDirectory() as tmp:
        return json.loads(Path(client.download_artifacts(run_id, artifact, tmp)).read_text())


@contextmanager
def tracking_scope(settings: Settings) -> Iterator[None]:
    """Point MLflow's fluent API (needed by log_model) at the settings' store, then restore it."""
    previous_uri = _tracking_utils._tracking_uri
    previous_env = MLFLOW_TRACKING_URI.get() if MLFLOW_TRACKING_URI.defined else None
    mlflow.set_tracking_uri(settings.tracking_uri)
    try:
        yield
    finally:
        # set_tracking_uri(None) also unsets the env var, which may have been the caller's own choice.
        # MLflow annotates uri as str | Path, but set_tracking_uri handles None (it unsets the URI)
        mlflow.set_tracking_uri(previous_uri)  # type: ignore[arg-type]
        if previous_env is not None:
            MLFLOW_TRACKING_URI.set(previous_env)


def experiment_id(client: MlflowClient, settings: Settings, name: str) -> str:
    """Return the id of the experiment named after the model, creating it under the artifact root."""
    experiment = client.get_experiment_by_name(name)
    if experiment is None:
        location = f"{settings.artifact_location.rstrip('/')}/{name}"
        try:
            return client.create_experiment(name, artifact_location=location)
        except MlflowException:
            # Another process created it between our look-up and create.
            experiment = client.get_experiment_by_name(name)
            if experiment is None:
                raise
    if experiment.lifecycle_stage == LifecycleStage.DELETED:
        log.warning("restoring deleted MLflow experiment %s", name)
        client.restore_experiment(experiment.experiment_id)
    return experiment.experiment_id
