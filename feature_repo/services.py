"""Feast feature services: one versioned service per registered model, reading the customer's features.

Every service reads the customer-level views (the partner platform's activity snapshot and the customer's own
credit history); what a model takes from the case itself (application fields, offer, account statement,
collection action) comes with the case, not from the store (see orchard.model_specs and orchard.populations).
"""

from __future__ import annotations

from feast import FeatureService, FeatureView

from orchard.features import CREDIT_HISTORY, PARTNER_ACTIVITY
from orchard.model_specs import APPLICATION_PD, MODEL_SPECS

APPLICATION_PD_V1 = APPLICATION_PD.feature_service
SERVICE_VIEWS: dict[str, tuple[str, ...]] = {
    spec.feature_service: (PARTNER_ACTIVITY, CREDIT_HISTORY) for spec in MODEL_SPECS.values()
}


def feature_services(views: list[FeatureView]) -> list[FeatureService]:
    """Return the feature services over the given views, one per registered model."""
    by_name = {v.name: v for v in views}
    return [
        FeatureService(
            name=spec.feature_service,
            features=[by_name[name] for name in SERVICE_VIEWS[spec.feature_service]],
            description=(
                f"{spec.name}: {' + '.join(SERVICE_VIEWS[spec.feature_service])} at the case's time; "
                f"{', '.join(spec.request_features)} come from the case ({spec.unit})"
            ),
            owner="risk-models@orchard",
            tags={"model": spec.name, "version": spec.feature_service.rsplit("_v", 1)[-1], "unit": spec.unit},
        )
        for spec in MODEL_SPECS.values()
    ]
