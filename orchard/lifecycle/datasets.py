"""Model-ready frames: a model's population (silver cases + mature labels) + point-in-time features from Feast."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from functools import cached_property

import pandas as pd
import pyarrow as pa

from feature_repo.services import service_views
from feature_repo.views import offline_files
from orchard.atomic import frame_sha256
from orchard.errors import OrchardError
from orchard.feature_store import ENTITY_TIME, feature_table, service_join_keys, training_frame
from orchard.lifecycle.tools import Tools
from orchard.model_specs import ModelSpec
from orchard.months import month_range, timestamp_month_labels, utc_timestamps
from orchard.partitions import map_entity_partitions
from orchard.populations import population
from orchard.portfolio.spec import TRAIN_LOOKBACK_MONTHS
from orchard.settings import Settings
from orchard.sources import BATCH_ID


@dataclass(frozen=True)
class ModelFrame:
    """A model's cases with features (and labels where mature), plus where they came from."""

    frame: pd.DataFrame
    batch_ids: list[str]
    columns: tuple[str, ...]  # what data_sha256 hashes: the model's features and its label

    @cached_property
    def data_sha256(self) -> str:
        """The lineage hash of the frame's features and labels (computed when asked: a month's scoring never
        reads it)."""
        return frame_sha256(self.frame[list(self.columns)])


def _tables_fingerprint(settings: Settings, service: str) -> tuple:
    """Return what identifies the offline tables a service reads (a rewritten table changes it)."""
    views = service_views(settings.portfolio_def)[service]
    files = {str(path): path.stat() for view in views for path in offline_files(settings.features_dir, view)}
    return tuple(views), tuple((path, st.st_mtime_ns, st.st_size) for path, st in files.items())


def _join_part(times: pd.DataFrame, settings: Settings, service: str) -> pd.DataFrame:
    """The point-in-time join of one entity partition (a Dask task: it opens the home's store itself)."""
    return training_frame(settings, times, service)


@dataclass(frozen=True)
class KeptJoin:
    """A point-in-time join the run keeps, as Feast gave it (Arrow), and the (key, time) rows it joined: any set of
    its rows is taken from it instead of a join of their own. The month's join of every monitored model's cases
    (join_month_cases) is one; the run's recent joins are others (a gate's out-of-time rows are among the fit's)."""

    views: tuple[str, ...]  # the views joined, in their order (a service reading the same ones takes rows)
    tables: tuple  # the offline tables' state it was joined on (_tables_fingerprint)
    rows: pd.MultiIndex  # (entity key, event time) of each row, unique
    features: pa.Table  # each row's features, as Feast gives them

    def take(self, wanted: pd.MultiIndex) -> pd.DataFrame | None:
        """Return the features of the given (key, UTC time) rows (_join_rows) in their order, as their own join
        would give them; None when a row is not in this join."""
        positions = self.rows.get_indexer(wanted)
        if (positions < 0).any():
            return None
        return self.features.take(positions).to_pandas()


def _join_rows(times: pd.DataFrame) -> pd.MultiIndex:
    """Return the (key, UTC time) of each row of a join's entity times, as a kept join is asked for them."""
    return pd.MultiIndex.from_arrays([times.iloc[:, 0], utc_timestamps(times.iloc[:, 1])])


def _kept_join(settings: Settings, service: str, times: pd.DataFrame, tools: Tools) -> KeptJoin:
    """Join the distinct (key, time) rows of `times` with the service's features, to keep."""
    rows = _join_rows(times).unique()
    features = feature_table(
        settings,
        rows.to_frame(index=False, name=list(times.columns)),
        service,
        store=tools.feature_store(settings),
    )
    views = service_views(settings.portfolio_def)[service]
    return KeptJoin(tuple(views), _tables_fingerprint(settings, service), rows, features)


def join_month_cases(settings: Settings, specs: list[ModelSpec], month: str, tools: Tools) -> int:
    """Join the month's cases of the given models (their monitoring populations) with Feast at once: one join per
    set of views their services read, kept in the run's tools, instead of one join per model (a join costs about
    the same for 500 rows as for 5,000). Return the rows joined.

    Each model's rows taken from it equal its own join (orchard.feature_store.feature_table). With a Dask
    cluster nothing is joined here: each model's join is partitioned over the cluster as before.
    """
    tools.month_joins.clear()
    if tools.cluster(settings) is not None:
        return 0
    groups: dict[tuple[str, ...], list[tuple[ModelSpec, pd.DataFrame]]] = {}
    for spec in specs:
        if len(service_join_keys(settings, spec.feature_service)) != 1:
            continue  # refused when the model joins (_join_times)
        times = _join_times(settings, spec, population(settings, spec, [month], month, with_labels=False))
        groups.setdefault(tuple(spec.views), []).append((spec, times))
    joined = 0
    for views, members in groups.items():
        if len(members) < 2:
            continue  # one model's join is made when it asks
        times = pd.concat([t for _, t in members], ignore_index=True)
        tools.month_joins[views] = kept = _kept_join(settings, members[0][0].feature_service, times, tools)
        joined += len(kept.rows)
    return joined


def _join_times(settings: Settings, spec: ModelSpec, entity: pd.DataFrame) -> pd.DataFrame:
    """Return the (join key, event time) of each case, as the model's point-in-time join takes them."""
    keys = service_join_keys(settings, spec.feature_service)
    if len(keys) != 1:
        raise OrchardError(f"model {spec.name}: its views must share one entity, not {keys}")
    return entity[[spec.entity, ENTITY_TIME]].rename(columns={spec.entity: keys[0]})


def _point_in_time(settings: Settings, spec: ModelSpec, entity: pd.DataFrame, tools: Tools) -> pd.DataFrame:
    """Return the entity rows joined point in time with the service's features.

    Rows a join the run keeps holds (the month's join of every monitored model's cases, the recent joins) are
    taken from it, as their own join would give them: models of the same population (application_pd,
    application_fraud, loss_forecast) join the same rows at the same times with the same views, and a gate's
    out-of-time rows were joined with the fit's. A kept join serves only while the offline tables are as they
    were joined. With a Dask cluster each join is partitioned over it and kept as it came, for the same rows.
    """
    times = _join_times(settings, spec, entity)
    tables = _tables_fingerprint(settings, spec.feature_service)
    views = tuple(spec.views)
    wanted = _join_rows(times)
    for kept in tools.kept_joins():
        taken = kept.take(wanted) if kept.views == views and kept.tables == tables else None
        if taken is not None:
            return pd.concat([entity.reset_index(drop=True), taken], axis=1)
    cluster = tools.cluster(settings)
    if cluster is None:
        kept = _kept_join(settings, spec.feature_service, times, tools)
        tools.keep_join(kept)
        return pd.concat([entity.reset_index(drop=True), kept.take(wanted)], axis=1)
    digest = hashlib.sha256(pd.util.hash_pandas_object(times, index=False).to_numpy().tobytes()).hexdigest()
    key = (str(settings.features_dir.resolve()), tables, digest)

    def join() -> pd.DataFrame:
        # each entity partition joined by a worker, on its own store
        key_column = str(times.columns[0])
        joined = map_entity_partitions(cluster, _join_part, times, key_column, settings, spec.feature_service)
        return joined.drop(columns=list(times.columns))

    features = tools.joined_frame(key, join)
    return pd.concat([entity.reset_index(drop=True), features.reset_index(drop=True)], axis=1)


def model_frame(
    settings: Settings,
    spec: ModelSpec,
    months: list[str],
    as_of: str,
    *,
    with_labels: bool = True,
    tools: Tools | None = None,
) -> ModelFrame:
    """Return the model's cases of `months` with point-in-time features and labels known at `as_of`."""
    entity = population(settings, spec, months, as_of, with_labels=with_labels)
    return _with_features(settings, spec, entity, tools or Tools())


def _with_features(settings: Settings, spec: ModelSpec, entity: pd.DataFrame, tools: Tools) -> ModelFrame:
    """Return a population's cases joined point in time with their features, sorted by key, and their lineage."""
    frame = _point_in_time(settings, spec, entity, tools)
    frame["vintage"] = timestamp_month_labels(frame["event_timestamp"])
    frame = frame.sort_values(spec.key).reset_index(drop=True)
    batch_ids = sorted(frame[BATCH_ID].unique().tolist())
    return ModelFrame(frame=frame, batch_ids=batch_ids, columns=(*spec.features, "bad"))


MIN_CLASS_ROWS = 10
"""Events and non-events each sample (development, out-of-time) needs before a model is trained."""


def _fit_cases(settings: Settings, spec: ModelSpec, as_of: str) -> tuple[pd.DataFrame, list[str]]:
    """Return the cases read for a fit at `as_of` (labels, no features) and the mature vintages it uses.

    Every mature vintage since the first period, or with the policy's `train_vintages` the latest that many,
    read back from `as_of` a span at a time: the months read are bounded by the window and its labels'
    maturity, not by the length of the history.
    """
    months = month_range(settings.start_month, as_of)
    wanted = spec.policy.train_vintages
    span = len(months) if wanted is None else wanted + _maturity_months(spec)
    while True:
        window = months[-span:]
        whole = len(window) == len(months)
        try:
            frame = vintage_cases(settings, spec, window, as_of)
        except OrchardError:  # nothing validated (or still warming up) in the window: read further back
            if whole:
                raise
            span *= 2
            continue
        vintages = mature_vintages(frame)
        if wanted is None or len(vintages) >= wanted or whole:
            return frame, vintages if wanted is None else vintages[-wanted:]
        span *= 2


def _maturity_months(spec: ModelSpec) -> int:
    """Return how many months past a vintage its label needs to mature: its window and the month itself, or
    TRAIN_LOOKBACK_MONTHS for a label without one (an outcome observed whenever it is set)."""
    rule = spec.label_rule
    windows = (
        []
        if rule is None
        else [
            rule.within_months,
            rule.performance.within_months if rule.performance else None,
            rule.outcome_date.within_months if rule.outcome_date else None,
        ]
    )
    return next((w + 1 for w in windows if w is not None), TRAIN_LOOKBACK_MONTHS)


def _windowed_cases(settings: Settings, spec: ModelSpec, as_of: str) -> tuple[pd.DataFrame, str]:
    """Return a windowed fit's cases (_fit_cases) and its oldest vintage; raise when it has none."""
    cases, vintages = _fit_cases(settings, spec, as_of)
    if not vintages:
        raise OrchardError(f"model {spec.name}: no mature vintage at {as_of} to fit on")
    return cases, vintages[0]


def fit_frame(settings: Settings, spec: ModelSpec, as_of: str, *, tools: Tools | None = None) -> ModelFrame:
    """Return the model frame a fit at `as_of` develops and tests on: its cases of fit_months, with features;
    with a window, the cases found while looking for its vintages are the ones joined (read once)."""
    if spec.policy.train_vintages is None:
        return model_frame(settings, spec, fit_months(settings, spec, as_of), as_of, tools=tools)
    cases, first = _windowed_cases(settings, spec, as_of)
    entity = cases[cases["vintage"] >= first].drop(columns="vintage").reset_index(drop=True)
    return _with_features(settings, spec, entity, tools or Tools())


def fit_months(settings: Settings, spec: ModelSpec, as_of: str) -> list[str]:
    """Return the months a fit at `as_of` reads: from the first period, or with the policy's `train_vintages`
    from the oldest of the vintages it develops and tests on (orchard.lifecycle.datasets._fit_cases)."""
    if spec.policy.train_vintages is None:
        return month_range(settings.start_month, as_of)
    return month_range(_windowed_cases(settings, spec, as_of)[1], as_of)


def ready_vintages(settings: Settings, spec: ModelSpec, as_of: str) -> list[str]:
    """Return the mature vintages a fit at `as_of` would use if a model can be trained on them, else [] (no
    features needed).

    Trainable: at least the policy's min_mature_vintages mature vintages, and both the development and the
    out-of-time vintages hold MIN_CLASS_ROWS events and non-events.
    """
    try:
        frame, vintages = _fit_cases(settings, spec, as_of)
    except OrchardError:  # nothing validated yet
        return []
    policy = spec.policy
    if len(vintages) < max(policy.min_mature_vintages, policy.oot_months + 1):
        return []
    for sample in split_vintages(vintages, policy.oot_months):
        bad = labelled(frame, sample)["bad"]
        if min(int(bad.sum()), int((1 - bad).sum())) < MIN_CLASS_ROWS:
            return []
    return vintages


def vintage_cases(settings: Settings, spec: ModelSpec, months: list[str], as_of: str) -> pd.DataFrame:
    """Return the model's cases of `months` with labels known at `as_of` and their vintage (no features read)."""
    frame = population(settings, spec, months, as_of)
    return frame.assign(vintage=timestamp_month_labels(frame["event_timestamp"]))


def population_vintages(settings: Settings, spec: ModelSpec, months: list[str], as_of: str) -> list[str]:
    """Return which of `months` are mature vintages of the model's population at `as_of` (no features read)."""
    return mature_vintages(vintage_cases(settings, spec, months, as_of))


def mature_vintages(frame: pd.DataFrame) -> list[str]:
    """Return the vintages whose learnable cases all have mature labels, oldest first."""
    eligible = frame[frame["eligible"].astype(bool)]
    by_vintage = eligible.groupby("vintage")["mature"].all()
    return sorted(by_vintage[by_vintage].index.tolist())


def split_vintages(vintages: list[str], holdout: int) -> tuple[list[str], list[str]]:
    """Split mature vintages into (development, out-of-time) with the last `holdout` held out."""
    if len(vintages) <= holdout:
        raise OrchardError(f"need more than {holdout} mature vintages to hold some out, have {len(vintages)}")
    return vintages[:-holdout], vintages[-holdout:]


def declined(frame: pd.DataFrame, vintages: list[str]) -> pd.DataFrame:
    """Return the cases of the given vintages that cannot be learnt from (e.g. declined applications)."""
    return frame[~frame["eligible"].astype(bool) & frame["vintage"].isin(vintages)].copy()


def labelled(frame: pd.DataFrame, vintages: list[str]) -> pd.DataFrame:
    """Return the learnable (e.g. booked), mature rows of the given vintages (what a model may learn from)."""
    mask = frame["eligible"].astype(bool) & frame["mature"] & frame["vintage"].isin(vintages)
    out = frame[mask].copy()
    out["bad"] = out["bad"].astype(int)
    return out
