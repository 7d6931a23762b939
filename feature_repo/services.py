"""Feast feature services: one versioned service per registered model, reading the views its entry names.

What a model takes from the case itself (application fields, offer, account statement, collection action) comes
with the case, not from the store (see orchard.model_specs and orchard.populations).
"""

from __future__ import annotations

from feast import FeatureService, FeatureView

from orchard.model_specs import model_specs
from orchard.portfolio.spec import Portfolio


def service_views(portfolio: Portfolio) -> dict[str, tuple[str, ...]]:
    """Return each model's feature service and the views it reads."""
    return {spec.feature_service: spec.views for spec in model_specs(portfolio).values()}


def feature_services(portfolio: Portfolio, views: list[FeatureView]) -> list[FeatureService]:
    """Return the feature services over the given views, one per registered model."""
    by_name = {v.name: v for v in views}
    return [
        FeatureService(
            name=spec.feature_service,
            features=[by_name[name] for name in spec.views],
            description=(
                f"{spec.name}: {' + '.join(spec.views)} at the case's time; "
                f"{', '.join(spec.request_features) or 'nothing'} come from the case ({spec.unit})"
            ),
            owner="risk-models@orchard",
            tags={"model": spec.name, "version": spec.feature_service.rsplit("_v", 1)[-1], "unit": spec.unit},
        )
        for spec in model_specs(portfolio).values()
    ]
