"""The registered models of the lifecycle: name, feature service, request fields, label (DESIGN.md names)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ModelSpec:
    """What a registered model is built from and what it predicts."""

    name: str
    purpose: str
    population: str
    label: str
    feature_service: str
    feast_features: tuple[str, ...]
    request_features: tuple[str, ...]
    categorical: tuple[str, ...]

    @property
    def features(self) -> list[str]:
        return [*self.feast_features, *self.request_features]


APPLICATION_PD = ModelSpec(
    name="application_pd",
    purpose="probability that a booked application goes 90+ days past due within 6 months",
    population="loan applications (through the door); trained on booked loans with mature labels",
    label="90+ DPD (or charge-off) within 6 months of booking",
    feature_service="application_pd_v1",
    feast_features=(
        "age",
        "city_tier",
        "device_os",
        "platform_tenure_months",
        "active_days_30d",
        "txn_count_30d",
        "txn_amount_30d",
        "income_est_monthly",
        "late_bill_payments_12m",
        "spend_to_income",
        "open_loans_count",
        "max_dpd_3m",
        "missed_payments_3m",
        "open_balance",
    ),
    request_features=(
        "requested_amount",
        "term_months",
        "income_declared",
        "employment_type",
        "loan_purpose",
        "channel",
    ),
    categorical=("city_tier", "device_os", "employment_type", "loan_purpose", "channel"),
)

APPLICATION_FRAUD = ModelSpec(
    name="application_fraud",
    purpose="probability that a booked application never pays its first instalment (first payment default)",
    population="loan applications (through the door); trained on booked loans once the first statement is in",
    label="first payment default: nothing paid on the first instalment (months_on_book 1)",
    feature_service=APPLICATION_PD.feature_service,
    feast_features=APPLICATION_PD.feast_features,
    request_features=APPLICATION_PD.request_features,
    categorical=APPLICATION_PD.categorical,
)

MODEL_SPECS: dict[str, ModelSpec] = {spec.name: spec for spec in (APPLICATION_PD, APPLICATION_FRAUD)}
