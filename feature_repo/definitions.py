"""Every Feast object of a portfolio, built for one state folder (no machine paths in the definitions)."""

from __future__ import annotations

from feast.feast_object import FeastObject

from feature_repo.entities import portfolio_entities
from feature_repo.services import feature_services
from feature_repo.views import feature_views
from orchard.settings import Settings


def definitions(settings: Settings) -> list[FeastObject]:
    """Return the entities, views and services whose offline tables live under settings.features_dir."""
    portfolio = settings.portfolio_def
    entities = portfolio_entities(portfolio)
    views = feature_views(portfolio, settings.features_dir, entities)
    return [*entities, *views, *feature_services(portfolio, views)]
