"""Feast sources and feature views, compiled from a portfolio's views (orchard.features names every feature)."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

from feast import Entity, FeatureView, Field, FileSource
from feast.types import Float64, Int64, PrimitiveFeastType, String

from orchard.features import FeatureDtype, view_feature_specs
from orchard.portfolio.spec import Portfolio, ViewDef
from orchard.sources import EVENT_TIME

_FEAST_TYPES: dict[FeatureDtype, PrimitiveFeastType] = {"int": Int64, "float": Float64, "string": String}


def offline_table(features_dir: Path, view: str) -> Path:
    """Return the folder of a view's offline table: one parquet file per period of its rows' event times
    (absolute: the duckdb store resolves against the cwd)."""
    return (Path(features_dir) / view).resolve()


def offline_period(features_dir: Path, view: str, period: str) -> Path:
    """Return the file of a view's offline rows whose event time falls in a period (YYYY-MM)."""
    return offline_table(features_dir, view) / f"{period}.parquet"


def offline_files(features_dir: Path, view: str) -> list[Path]:
    """Return the files of a view's offline table, in period order."""
    return sorted(offline_table(features_dir, view).glob("*.parquet"))


def feature_fields(name: str, view: ViewDef) -> list[Field]:
    """Return the Feast fields of a view, described and tagged from the portfolio."""
    return [
        Field(name=f.name, dtype=_FEAST_TYPES[f.dtype], description=f.description, tags=f.tag_dict)
        for f in view_feature_specs(name, view)
    ]


def file_source(features_dir: Path, view: str) -> FileSource:
    """Return the parquet FileSource of a view."""
    return FileSource(
        name=f"{view}_source",
        path=str(offline_table(features_dir, view) / "*.parquet"),  # every period's file (a DuckDB glob)
        timestamp_field=EVENT_TIME,
        description=f"offline table of {view} (written by orchard.feature_store.update_offline_tables)",
        owner="risk-data@orchard",
    )


def feature_views(portfolio: Portfolio, features_dir: Path, entities: list[Entity]) -> list[FeatureView]:
    """Return the portfolio's feature views over the offline tables in features_dir."""
    by_name = {e.name: e for e in entities}
    return [
        FeatureView(
            name=name,
            entities=[by_name[view.entity]],
            ttl=timedelta(days=view.ttl_days),
            schema=feature_fields(name, view),
            source=file_source(features_dir, name),
            online=True,
            description=view.description,
            owner=view.owner,
            tags={"team": "risk", "refresh": "monthly", "source": view.source},
        )
        for name, view in portfolio.views.items()
    ]
