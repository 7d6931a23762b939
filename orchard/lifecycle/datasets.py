"""Model-ready frames: silver applications + mature labels + point-in-time features from Feast."""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd
from feast import FeatureStore

from orchard.atomic import frame_sha256
from orchard.errors import OrchardError
from orchard.feature_store import open_store, training_frame
from orchard.labels import application_labels
from orchard.lake import read_silver
from orchard.model_specs import ModelSpec
from orchard.settings import Settings
from orchard.sources import BATCH_ID, EVENT_TIME


@dataclass(frozen=True)
class ModelFrame:
    """Applications with features (and labels where mature), plus where they came from."""

    frame: pd.DataFrame
    batch_ids: list[str]
    data_sha256: str


def _vintage(ts: pd.Series) -> pd.Series:
    return ts.dt.strftime("%Y-%m")


_STORES: dict[str, FeatureStore] = {}


def _store(settings: Settings) -> FeatureStore:
    """Return this process's Feast store for the settings (opening one costs ~0.2 s; reads reuse it)."""
    key = str(settings.feast_dir.resolve())
    if key not in _STORES:
        _STORES[key] = open_store(settings)
    return _STORES[key]


def application_frame(
    settings: Settings, spec: ModelSpec, months: list[str], as_of: str, *, with_labels: bool = True
) -> ModelFrame:
    """Return the applications of `months` with point-in-time features and labels known at `as_of`."""
    apps = read_silver(settings, "applications", months)
    if apps.empty:
        raise OrchardError(f"no validated applications for {months[0]}..{months[-1]}")
    entity = apps[["application_id", "user_id", EVENT_TIME, BATCH_ID, "decision", *spec.request_features]]
    entity = entity.rename(columns={EVENT_TIME: "event_timestamp"})
    if with_labels:
        repayments = read_silver(settings, "repayments")
        labels = application_labels(apps, repayments, as_of, settings.label_window_months, settings.bad_dpd)
        entity = entity.merge(labels[["application_id", "mature", "bad"]], on="application_id", how="left")
        entity["mature"] = entity["mature"].astype("boolean").fillna(False).astype(bool)
    else:
        entity = entity.assign(mature=False, bad=float("nan"))
    frame = training_frame(settings, entity, spec.feature_service, store=_store(settings))
    frame["vintage"] = _vintage(frame["event_timestamp"])
    frame = frame.sort_values("application_id").reset_index(drop=True)
    batch_ids = sorted(frame[BATCH_ID].unique().tolist())
    return ModelFrame(
        frame=frame, batch_ids=batch_ids, data_sha256=frame_sha256(frame[[*spec.features, "bad"]])
    )


def labelled_vintages(settings: Settings, as_of: str) -> list[str]:
    """Return the vintages whose booked loans all have mature labels at `as_of` (no features needed)."""
    apps = read_silver(settings, "applications")
    repayments = read_silver(settings, "repayments")
    labels = application_labels(apps, repayments, as_of, settings.label_window_months, settings.bad_dpd)
    frame = labels.assign(decision="approved")
    return mature_vintages(frame)


def mature_vintages(frame: pd.DataFrame) -> list[str]:
    """Return the vintages whose booked loans all have mature labels, oldest first."""
    booked = frame[frame["decision"] == "approved"]
    by_vintage = booked.groupby("vintage")["mature"].all()
    return sorted(by_vintage[by_vintage].index.tolist())


def split_vintages(vintages: list[str], holdout: int) -> tuple[list[str], list[str]]:
    """Split mature vintages into (development, out-of-time) with the last `holdout` held out."""
    if len(vintages) <= holdout:
        raise OrchardError(f"need more than {holdout} mature vintages to hold some out, have {len(vintages)}")
    return vintages[:-holdout], vintages[-holdout:]


def labelled(frame: pd.DataFrame, vintages: list[str]) -> pd.DataFrame:
    """Return the booked, mature rows of the given vintages (what a model may learn from)."""
    mask = (frame["decision"] == "approved") & frame["mature"] & frame["vintage"].isin(vintages)
    out = frame[mask].copy()
    out["bad"] = out["bad"].astype(int)
    return out
