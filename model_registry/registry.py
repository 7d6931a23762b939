"""Register Orchard models in MLflow with lineage, load them back, and move aliases with a history."""

from __future__ import annotations

import logging
import math
import re
from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import Any

import mlflow
import mlflow.pyfunc
import numpy as np
import pandas as pd
from mlflow import MlflowClient
from mlflow.data.pandas_dataset import from_pandas
from mlflow.entities import Run
from mlflow.entities.model_registry import ModelVersion
from mlflow.exceptions import MlflowException
from mlflow.models import infer_signature
from mlflow.protos.databricks_pb2 import RESOURCE_ALREADY_EXISTS, ErrorCode

from model_registry import history
from model_registry.alerts import raise_alert
from model_registry.identity import current_identity
from model_registry.lineage import Lineage, lineage_dict, lineage_tags
from model_registry.pyfunc import PdModel, check_model, pip_requirements
from model_registry.tracking import experiment_id, mlflow_client, tracking_scope
from orchard.errors import OrchardError
from orchard.settings import Settings

log = logging.getLogger(__name__)

TRAIN_KEY_TAG = "orchard.train_key"
TRAINED_BY_TAG = "orchard.trained_by"
KIND_TAG = "orchard.kind"
MODEL_ID_TAG = "orchard.model_id"
MODEL_ARTIFACT = "model"
EXAMPLE_ROWS = 5
# Values we put inside MLflow filter strings; quotes would break (or inject into) the filter.
_SAFE_KEY = re.compile(r"^[A-Za-z0-9_.:@/+=,-]{1,250}$")


@dataclass(frozen=True)
class ModelVersionRef:
    """A registered model version and the run that logged it."""

    name: str
    version: int
    run_id: str


def _check_name(kind: str, value: str) -> str:
    if not isinstance(value, str) or not _SAFE_KEY.match(value):
        raise OrchardError(
            f"{kind} {value!r} must be 1-250 characters of letters, digits and _.:@/+=,- (no quotes or spaces)"
        )
    return value


def _ref(version: ModelVersion) -> ModelVersionRef:
    return ModelVersionRef(name=version.name, version=int(version.version), run_id=version.run_id or "")


def get_version(client: MlflowClient, name: str, version: int) -> ModelVersion:
    """Return a model version, or raise naming the model and version that do not exist."""
    try:
        return client.get_model_version(name, str(int(version)))
    except MlflowException as exc:
        raise OrchardError(f"model {name!r} has no version {version} in the MLflow registry") from exc


def _version_by_train_key(client: MlflowClient, name: str, train_key: str) -> ModelVersion | None:
    found = client.search_model_versions(f"name = '{name}' and tags.`{TRAIN_KEY_TAG}` = '{train_key}'")
    return min(found, key=lambda v: int(v.version)) if found else None


def _finished_run_by_train_key(client: MlflowClient, name: str, train_key: str) -> Run | None:
    experiment = client.get_experiment_by_name(name)
    if experiment is None:
        return None
    runs = client.search_runs(
        [experiment.experiment_id],
        filter_string=f"tags.`{TRAIN_KEY_TAG}` = '{train_key}' and attributes.status = 'FINISHED'",
        order_by=["attributes.start_time DESC"],
        max_results=1,
    )
    # A FINISHED run always holds its model: the model-id tag is the run's last write.
    return runs[0] if runs and MODEL_ID_TAG in runs[0].data.tags else None


def _register_from_run(settings: Settings, client: MlflowClient, name: str, run: Run) -> ModelVersionRef:
    """Create a version of `name` from the model logged by run, carrying the run's orchard tags."""
    try:
        client.create_registered_model(name, description=f"Orchard model {name}")
    except MlflowException as exc:
        if exc.error_code != ErrorCode.Name(RESOURCE_ALREADY_EXISTS):
            raise
    model_id = run.data.tags[MODEL_ID_TAG]
    tags = {k: v for k, v in run.data.tags.items() if k.startswith("orchard.") and k != MODEL_ID_TAG}
    # MLflow's registry resolves a models:/ source through the global tracking URI (its own TODO).
    with tracking_scope(settings):
        version = client.create_model_version(
            name, source=f"models:/{model_id}", run_id=run.info.run_id, tags=tags, model_id=model_id
        )
    log.info("registered %s version %s from run %s", name, version.version, run.info.run_id)
    return _ref(version)


def existing_version(settings: Settings, name: str, train_key: str) -> ModelVersionRef | None:
    """Return the version trained under train_key; register it from a finished run left by a crash."""
    _check_name("model name", name)
    _check_name("train_key", train_key)
    client = mlflow_client(settings)
    version = _version_by_train_key(client, name, train_key)
    if version is not None:
        return _ref(version)
    run = _finished_run_by_train_key(client, name, train_key)
    if run is None:
        return None
    log.warning(
        "run %s logged %s (train_key %s) but was never registered: registering it now",
        run.info.run_id,
        name,
        train_key,
    )
    return _register_from_run(settings, client, name, run)


def _example(model: Any, input_example: pd.DataFrame) -> pd.DataFrame:
    """Return the first rows of the input example, restricted to the model's features."""
    if not isinstance(input_example, pd.DataFrame) or input_example.empty:
        raise OrchardError(f"input_example of model {model.name} must be a non-empty DataFrame")
    missing = [f for f in model.features if f not in input_example.columns]
    if missing:
        raise OrchardError(f"input_example of model {model.name} lacks feature columns: {', '.join(missing)}")
    return input_example.loc[:, list(model.features)].head(EXAMPLE_ROWS).reset_index(drop=True)


def _check_predictions(name: str, predictions: pd.Series, rows: int) -> None:
    values = predictions.to_numpy()
    if len(values) != rows:
        raise OrchardError(f"model {name} predict_pd returned {len(values)} values for {rows} rows")
    if not np.all(np.isfinite(values)) or values.min() < 0 or values.max() > 1:
        raise OrchardError(f"model {name} predict_pd returned values outside [0, 1] on the input example")


def _check_numbers(name: str, kind: str, values: dict[str, Any], allowed: tuple[type, ...]) -> None:
    for key, value in values.items():
        if isinstance(value, bool) or not isinstance(value, allowed):
            raise OrchardError(
                f"{kind} {key!r} of model {name} must be {'/'.join(t.__name__ for t in allowed)}, "
                f"got {value!r}"
            )
        if isinstance(value, float) and kind == "metric" and not math.isfinite(value):
            raise OrchardError(f"metric {key!r} of model {name} is not finite: {value}")


def _artifact_name(key: str) -> str:
    path = PurePosixPath(key)
    if not key or path.is_absolute() or ".." in path.parts:
        raise OrchardError(f"artifact name {key!r} must be a relative path inside the run")
    return key


def _log_run(
    settings: Settings,
    client: MlflowClient,
    name: str,
    model: Any,
    *,
    train_key: str,
    metrics: dict[str, float],
    params: dict[str, str | int | float],
    lineage: Lineage,
    example: pd.DataFrame,
    artifacts: dict[str, dict | str],
) -> Run:
    """Log one training run: params, metrics, lineage, dataset input, artifacts and the pyfunc model."""
    wrapper = PdModel(model)
    predictions = wrapper.predict(None, example)
    _check_predictions(name, predictions, len(example))
    signature = infer_signature(example, predictions)
    trainer = current_identity(settings)
    tags = {
        TRAIN_KEY_TAG: train_key,
        KIND_TAG: model.kind,
        TRAINED_BY_TAG: trainer.name,
        **lineage_tags(lineage),
    }
    dataset = from_pandas(
        example,
        name=f"{name}-train-{lineage.train_window}",
        digest=lineage.data_sha256[:36],  # MLflow keeps at most 36 characters of a digest
    )
    exp_id = experiment_id(client, settings, name)
    with (
        tracking_scope(settings),
        mlflow.start_run(
            experiment_id=exp_id,
            run_name=f"{name}-{train_key}",
            tags=tags,
            nested=mlflow.active_run() is not None,  # a caller's own run becomes the parent
        ) as run,
    ):
        mlflow.log_params({k: str(v) for k, v in params.items()})
        mlflow.log_metrics({k: float(v) for k, v in metrics.items()})
        mlflow.log_input(
            dataset,
            context="training",
            tags={
                "orchard.data_sha256": lineage.data_sha256,
                "orchard.feature_service": lineage.feature_service,
            },
        )
        mlflow.log_dict(lineage_dict(lineage), "lineage.json")
        for key, content in artifacts.items():
            if isinstance(content, str):
                mlflow.log_text(content, key)
            else:
                mlflow.log_dict(content, key)
        info = mlflow.pyfunc.log_model(
            name=MODEL_ARTIFACT,
            python_model=wrapper,
            signature=signature,
            input_example=example,
            pip_requirements=pip_requirements(model),
        )
        # Last write of the run: a FINISHED run with this tag is known to hold a complete model.
        mlflow.set_tag(MODEL_ID_TAG, info.model_id)
    return client.get_run(run.info.run_id)


def register_model(
    settings: Settings,
    name: str,
    model: Any,
    *,
    train_key: str,
    metrics: dict[str, float],
    params: dict[str, str | int | float],
    lineage: Lineage,
    input_example: pd.DataFrame,
    artifacts: dict[str, dict | str] | None = None,
) -> ModelVersionRef:
    """Log a trained model with its lineage and register it under name; idempotent by train_key."""
    _check_name("model name", name)
    _check_name("train_key", train_key)
    check_model(model)
    _check_numbers(name, "metric", metrics, (int, float))
    _check_numbers(name, "param", params, (str, int, float))
    artifacts = {_artifact_name(k): v for k, v in (artifacts or {}).items()}
    if not isinstance(lineage, Lineage):
        raise OrchardError(f"lineage of model {name} must be a model_registry.lineage.Lineage")
    example = _example(model, input_example)

    found = existing_version(settings, name, train_key)
    if found is not None:
        log.info("%s train_key %s is already version %s: nothing logged", name, train_key, found.version)
        return found
    client = mlflow_client(settings)
    run = _log_run(
        settings,
        client,
        name,
        model,
        train_key=train_key,
        metrics=metrics,
        params=params,
        lineage=lineage,
        example=example,
        artifacts=artifacts,
    )
    return _register_from_run(settings, client, name, run)


def alias_version(settings: Settings, name: str, alias: str) -> int | None:
    """Return the version an alias points at, or None if the model or the alias does not exist."""
    return _alias_version(mlflow_client(settings), name, alias)


def _alias_version(client: MlflowClient, name: str, alias: str) -> int | None:
    try:
        return int(client.get_model_version_by_alias(name, alias).version)
    except MlflowException:
        return None


def champion_version(settings: Settings, name: str) -> int | None:
    """Return the version serving decisions: the governance record's champion, never an unrecorded alias.

    The MLflow alias is only a pointer anyone with edit rights on the model can move; the champion is what the
    append-only record says. When they disagree after any governance write in progress has committed, the
    record wins and an alert is raised (logged and appended to the alerts file).
    """
    alias = alias_version(settings, name, history.CHAMPION_ALIAS)
    recorded = history.recorded_champion_now(settings, name)
    if alias == recorded:
        return recorded
    # a promotion moves the alias just before its commit: look again once it is done before alerting
    recorded = history.recorded_champion_now(settings, name, wait_for_writers=True)
    alias = alias_version(settings, name, history.CHAMPION_ALIAS)
    if alias != recorded:
        raise_alert(
            settings,
            "orchard.governance.unrecorded_alias",
            model=name,
            alias_version=alias,
            recorded_version=recorded,
            detail=f"champion alias of {name} points at {'nothing' if alias is None else f'v{alias}'} but the "
            f"governance record says {'none' if recorded is None else f'v{recorded}'}: serving the recorded one",
        )
    return recorded


def version_tags(settings: Settings, name: str, version: int) -> dict[str, str]:
    """Return the tags of a model version."""
    return dict(get_version(mlflow_client(settings), name, version).tags)


def resolve_version(settings: Settings, name: str, ref: str | int) -> int:
    """Return the version number a reference (alias name or version number) stands for."""
    client = mlflow_client(settings)
    if isinstance(ref, int) or (isinstance(ref, str) and ref.isdigit()):
        return int(get_version(client, name, int(ref)).version)
    version = _alias_version(client, name, ref)
    if version is None:
        raise OrchardError(f"model {name!r} has no alias {ref!r} in the MLflow registry")
    return version


_TRAINED_AT = re.compile(r"@(\d{4}-\d{2})$")


def trained_month(key: str) -> str | None:
    """Return the month a train key `<model>@YYYY-MM` names (None for a key of another form)."""
    match = _TRAINED_AT.search(key)
    return match.group(1) if match else None


def trained_months(settings: Settings, name: str) -> dict[int, str]:
    """Return the month each version of a model was trained at (from its train key `<model>@YYYY-MM`).

    Versions registered under another key (a federated job) have no training month and are left out.
    """
    _check_name("model name", name)
    found = mlflow_client(settings).search_model_versions(f"name = '{name}'")
    months = {}
    for version in found:
        month = trained_month(version.tags.get(TRAIN_KEY_TAG, ""))
        if month:
            months[int(version.version)] = month
    return months


LOADED_KEEP = 32
"""Loaded versions a run keeps in its cache (the six models' champions and challengers fit several times over)."""


def load_model(
    settings: Settings, name: str, ref: str | int, cache: dict[tuple[str, str, int], Any] | None = None
) -> Any:
    """Load the original Orchard model object of a version (by alias name or version number).

    A registered version never changes, so a run keeps what it loaded in its `cache` (the lifecycle scores with
    each champion every month: unpickling it again each time cost ~0.2 s); without one, it is loaded afresh. A
    version number found in the cache is not looked up in the registry again.
    """
    numbered = isinstance(ref, int) or (isinstance(ref, str) and ref.isdigit())
    version = int(ref) if numbered else resolve_version(settings, name, ref)
    key = (settings.tracking_uri, name, version)
    if cache is not None and key in cache:
        return cache[key]
    if numbered:
        resolve_version(settings, name, version)  # a version the registry lacks is refused by name
    uri = mlflow_client(settings).get_model_version_download_uri(name, str(version))
    model = mlflow.pyfunc.load_model(uri).unwrap_python_model().model
    if cache is not None:
        if len(cache) >= LOADED_KEEP:
            cache.pop(next(iter(cache)))
        cache[key] = model
    return model


def train_key_of(
    settings: Settings, name: str, version: int, cache: dict[tuple[str, str, int], str] | None = None
) -> str:
    """Return the train key a version was registered with (it never changes once registered; a run may cache it)."""
    key = (settings.tracking_uri, name, int(version))
    if cache is not None and key in cache:
        return cache[key]
    found = version_tags(settings, name, version)[TRAIN_KEY_TAG]
    if cache is not None:
        cache[key] = found
    return found


def _point_alias(client: MlflowClient, name: str, alias: str, version: int) -> None:
    try:
        client.set_registered_model_alias(name, alias, str(version))
    except MlflowException as exc:
        raise OrchardError(
            f"cannot point alias {alias!r} of {name} at version {version}: {exc.message}"
        ) from exc


def set_alias(
    settings: Settings,
    name: str,
    alias: str,
    version: int,
    *,
    action: str,
    reason: str,
    approver: str,
    gate: dict[str, Any] | None,
    effective_month: str,
) -> None:
    """Point an alias at a version and append the decision to the history; a repeated call does nothing."""
    history.check_event(action=action, reason=reason, approver=approver, effective_month=effective_month)
    if action == "promote" and gate is not None and gate.get("passed") is False:
        raise OrchardError(f"cannot promote {name} version {version}: its gate did not pass")
    client = mlflow_client(settings)
    get_version(client, name, version)
    # Under the model's governance lock, so alias move and event append never interleave with another writer's.
    with history.locked(settings, name) as conn:
        current = _alias_version(client, name, alias)
        recorded = history.events_in(conn, name, alias)
        last = recorded[-1] if recorded else None
        if current == version and last is not None and (last.action, last.version) == (action, version):
            log.info("%s@%s is already version %s (%s): nothing to do", name, alias, version, action)
            return
        decision = (action, version, effective_month)
        replayed = [e for e in recorded if (e.action, e.version, e.effective_month) == decision]
        if replayed:
            # A rerun of the lifecycle replays past decisions: never record them twice, and never undo later
            # ones; only re-point the alias if this decision is still the latest and the alias drifted.
            if replayed[-1] is last and current != version:
                _point_alias(client, name, alias, version)
            log.info(
                "%s@%s: %s of version %s in %s is already recorded",
                name,
                alias,
                action,
                version,
                effective_month,
            )
            return
        # Event first, alias last, both before the commit: a failed move rolls the event back, and a crash
        # after the move leaves the alias ahead of the record, which serving ignores and a rerun repairs.
        history.append_event(
            conn,
            model=name,
            alias=alias,
            version=version,
            previous_version=current,
            action=action,
            reason=reason,
            approver=approver,
            gate=gate,
            effective_month=effective_month,
            identity_source="lifecycle",
        )
        if current != version:
            _point_alias(client, name, alias, version)
    log.info("%s@%s -> version %s (%s by %s)", name, alias, version, action, approver)


def record_rejection(
    settings: Settings,
    name: str,
    version: int,
    *,
    reason: str,
    approver: str,
    gate: dict[str, Any] | None,
    effective_month: str,
) -> None:
    """Record that a challenger failed its gate: it keeps the challenger alias, the champion stays."""
    set_alias(
        settings,
        name,
        history.CHALLENGER_ALIAS,
        version,
        action="reject",
        reason=reason,
        approver=approver,
        gate=gate,
        effective_month=effective_month,
    )
