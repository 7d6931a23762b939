"""The registered models of the lifecycle: name, population, feature service, request fields, label (DESIGN.md).

Every model is scored on one population unit, built from a validated source (orchard.populations):
- applications: loan applications (source `applications`); trained on the booked ones;
- offers: pre-credit marketing offers to partner-platform users (source `campaigns`);
- accounts: open booked loans, one snapshot per monthly statement (source `repayments`);
- delinquencies: collection cases, one per delinquent statement after its collection action (`collections`).
The label of a row is the modelled event (column `bad`: the event happened), known once the row's window has
passed (maturity, see orchard.labels and orchard.populations).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Unit = Literal["applications", "offers", "accounts", "delinquencies"]
UNIT_SOURCES: dict[str, str] = {
    "applications": "applications",
    "offers": "campaigns",
    "accounts": "repayments",
    "delinquencies": "collections",
}
LabelKind = Literal["dpd90", "first_payment_default", "charge_off", "response_approved", "cure"]


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
    unit: Unit = "applications"
    label_kind: LabelKind = "dpd90"
    key: str = "application_id"
    increasing: tuple[str, ...] = ()
    """Features whose larger values may never lower the predicted probability (monotone constraints)."""

    @property
    def source(self) -> str:
        """Return the source the model's cases come from (a quarantined batch of it means no cases that month)."""
        return UNIT_SOURCES[self.unit]

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
    increasing=("late_bill_payments_12m", "max_dpd_3m", "missed_payments_3m"),
)

APPLICATION_FRAUD = ModelSpec(
    name="application_fraud",
    purpose="probability that a booked application never pays its first instalment (first payment default)",
    population="loan applications (through the door); trained on booked loans once the first statement is in",
    label="first payment default: nothing paid on the first instalment (statement 1, mature 1 month on)",
    feature_service="application_fraud_v1",
    feast_features=APPLICATION_PD.feast_features,
    request_features=APPLICATION_PD.request_features,
    categorical=APPLICATION_PD.categorical,
    label_kind="first_payment_default",
    increasing=APPLICATION_PD.increasing,
)

# what the platform knows of a user before any application: the customer-level features of the store
PRECREDIT_FEATURES = APPLICATION_PD.feast_features

PRECREDIT_RESPONSE = ModelSpec(
    name="precredit_response",
    purpose=(
        "probability that a partner-platform user offered credit responds and is approved within the offer "
        "month; with a pre-credit risk axis it stratifies prospects into tiers A-D for targeted marketing"
    ),
    population="campaign offers to active partner-platform users without an open loan, monthly",
    label="responded (applied) within the offer month and the application was approved (mature 1 month on)",
    feature_service="precredit_response_v1",
    feast_features=PRECREDIT_FEATURES,
    request_features=("offer_channel", "offer_amount"),
    categorical=("city_tier", "device_os", "offer_channel"),
    unit="offers",
    label_kind="response_approved",
    key="offer_id",
)

BEHAVIOR_PD = ModelSpec(
    name="behavior_pd",
    purpose="probability that an open loan goes 90+ days past due (or is charged off) within the next 6 months",
    population="open booked loans below 90 dpd, one snapshot per monthly statement",
    label="90+ DPD or charge-off within 6 statements after the snapshot (settings.label_window_months)",
    feature_service="behavior_pd_v1",
    feast_features=APPLICATION_PD.feast_features,
    request_features=("months_on_book", "dpd", "balance", "amount_due", "paid_ratio"),
    categorical=("city_tier", "device_os"),
    unit="accounts",
    label_kind="dpd90",
    increasing=("dpd", "late_bill_payments_12m", "max_dpd_3m", "missed_payments_3m"),
    key="account_month_id",
)

COLLECTION_CURE = ModelSpec(
    name="collection_cure",
    purpose="probability that a delinquent loan is cured (back to current or paid off) within 2 months",
    population="delinquent loans after this month's collection action (one case per delinquent statement)",
    label="a current or paid-off statement within the next 2 statements (settings.cure_window_months)",
    feature_service="collection_cure_v1",
    feast_features=APPLICATION_PD.feast_features,
    request_features=("months_on_book", "dpd", "amount_overdue", "balance", "action", "contact_result"),
    categorical=("city_tier", "device_os", "action", "contact_result"),
    unit="delinquencies",
    label_kind="cure",
    key="account_month_id",
)

LOSS_FORECAST = ModelSpec(
    name="loss_forecast",
    purpose=(
        "expected loss of each booked vintage: PD (charge-off within 12 months) x LGD (from collections "
        "recoveries) x EAD (balance at charge-off per unit of principal), set beside realised charge-offs"
    ),
    population="booked loans, aggregated by vintage (booking month)",
    label="charged off within 12 months of booking (settings.loss_window_months)",
    feature_service="loss_forecast_v1",
    feast_features=APPLICATION_PD.feast_features,
    request_features=APPLICATION_PD.request_features,
    categorical=APPLICATION_PD.categorical,
    label_kind="charge_off",
    increasing=APPLICATION_PD.increasing,
)

MODEL_SPECS: dict[str, ModelSpec] = {
    spec.name: spec
    for spec in (
        PRECREDIT_RESPONSE, APPLICATION_PD, APPLICATION_FRAUD, BEHAVIOR_PD, COLLECTION_CURE, LOSS_FORECAST
    )
}  # fmt: skip
"""Every registered model of the lifecycle, in the order of a customer's life."""

SERVED_SPECS: dict[str, ModelSpec] = {spec.name: spec for spec in (APPLICATION_PD, APPLICATION_FRAUD)}
"""The models the real-time decision API loads (an application decision needs both)."""
