"""Feast sources and feature views, built from the one feature registry (orchard.features.FEATURES)."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

from feast import FeatureView, Field, FileSource
from feast.types import Float64, Int64, PrimitiveFeastType, String

from feature_repo.entities import customer_entity
from orchard.features import CREDIT_HISTORY, FEATURES, PARTNER_ACTIVITY, FeatureDtype
from orchard.sources import EVENT_TIME

OWNER = "risk-data@orchard"
VIEW_TTL: dict[str, timedelta] = {
    # a monthly snapshot stays valid for two months (covers one late batch)
    PARTNER_ACTIVITY: timedelta(days=62),
    # credit history rows exist only in months with statements; keep them past a 12-month window
    CREDIT_HISTORY: timedelta(days=400),
}
VIEW_DESCRIPTION: dict[str, str] = {
    PARTNER_ACTIVITY: "monthly partner-platform activity snapshot of the customer",
    CREDIT_HISTORY: "the customer's own loan history as known at each statement month",
}
_FEAST_TYPES: dict[FeatureDtype, PrimitiveFeastType] = {"int": Int64, "float": Float64, "string": String}


def offline_table(features_dir: Path, view: str) -> Path:
    """Return the offline parquet table of a view (absolute: the duckdb store resolves against the cwd)."""
    return (Path(features_dir) / f"{view}.parquet").resolve()


def feature_fields(view: str) -> list[Field]:
    """Return the Feast fields of a view, described and tagged from the feature registry."""
    return [
        Field(name=f.name, dtype=_FEAST_TYPES[f.dtype], description=f.description, tags=f.tag_dict)
        for f in FEATURES
        if f.view == view
    ]


def file_source(features_dir: Path, view: str) -> FileSource:
    """Return the parquet FileSource of a view."""
    return FileSource(
        name=f"{view}_source",
        path=str(offline_table(features_dir, view)),
        timestamp_field=EVENT_TIME,
        description=f"offline table of {view} (written by orchard.feature_store.update_offline_tables)",
        owner=OWNER,
    )


def feature_views(features_dir: Path) -> list[FeatureView]:
    """Return Orchard's feature views over the offline tables in features_dir."""
    entity = customer_entity()
    return [
        FeatureView(
            name=view,
            entities=[entity],
            ttl=VIEW_TTL[view],
            schema=feature_fields(view),
            source=file_source(features_dir, view),
            online=True,
            description=VIEW_DESCRIPTION[view],
            owner=OWNER,
            tags={"team": "risk", "refresh": "monthly"},
        )
        for view in (PARTNER_ACTIVITY, CREDIT_HISTORY)
    ]
