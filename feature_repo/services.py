"""Feast feature services: one versioned service per model that reads features from the store."""

from __future__ import annotations

from feast import FeatureService, FeatureView

from orchard.features import CREDIT_HISTORY, PARTNER_ACTIVITY

APPLICATION_PD_V1 = "application_pd_v1"
SERVICE_VIEWS: dict[str, tuple[str, ...]] = {APPLICATION_PD_V1: (PARTNER_ACTIVITY, CREDIT_HISTORY)}


def feature_services(views: list[FeatureView]) -> list[FeatureService]:
    """Return the feature services over the given views (application request fields are not features)."""
    by_name = {v.name: v for v in views}
    return [
        FeatureService(
            name=APPLICATION_PD_V1,
            features=[by_name[name] for name in SERVICE_VIEWS[APPLICATION_PD_V1]],
            description=(
                "application PD v1: partner activity + credit history; requested_amount, term_months, "
                "income_declared, employment_type, loan_purpose and channel come from the application row"
            ),
            owner="risk-models@orchard",
            tags={"model": "application_pd", "version": "1"},
        )
    ]
