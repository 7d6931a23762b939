"""Every Feast object of Orchard, built for one state folder (no machine paths in the definitions)."""

from __future__ import annotations

from feast import Entity, FeatureService, FeatureView

from feature_repo.entities import customer_entity
from feature_repo.services import feature_services
from feature_repo.views import feature_views
from orchard.settings import Settings

FeastObject = Entity | FeatureView | FeatureService


def definitions(settings: Settings) -> list[FeastObject]:
    """Return the entity, views and services whose offline tables live under settings.features_dir."""
    views = feature_views(settings.features_dir)
    return [customer_entity(), *views, *feature_services(views)]
