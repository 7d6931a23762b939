"""The data sources Orchard accepts: columns, types, domains and keys (the basis of each data contract).

The simulator writes exactly these columns; the Great Expectations suites are derived from these specs;
feature functions read them from silver. One canonical name per column, everywhere.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

Dtype = Literal["string", "int", "float", "timestamp", "category"]

EVENT_TIME = "event_ts"
BATCH_ID = "batch_id"


@dataclass(frozen=True)
class ColumnSpec:
    """One column of a source: its type, whether it may be null, and its allowed values."""

    name: str
    dtype: Dtype
    description: str
    nullable: bool = False
    min_value: float | None = None
    max_value: float | None = None
    categories: tuple[str, ...] | None = None


@dataclass(frozen=True)
class SourceSpec:
    """A source: its key (unique per batch), its columns, and row-count bounds per partner user."""

    name: str
    description: str
    key: tuple[str, ...]
    columns: tuple[ColumnSpec, ...]
    rows_per_user: tuple[float, float] = field(default=(0.0, 1.0))

    @property
    def column_names(self) -> list[str]:
        return [c.name for c in self.columns]

    def column(self, name: str) -> ColumnSpec:
        for col in self.columns:
            if col.name == name:
                return col
        raise KeyError(f"{self.name} has no column {name!r}")

    def row_bounds(self, n_users: int) -> tuple[int, int]:
        """Return the (min, max) rows a monthly batch may have for a population of n_users."""
        low, high = self.rows_per_user
        return int(low * n_users), max(1, int(high * n_users))


def _common(id_description: str, id_name: str) -> tuple[ColumnSpec, ...]:
    return (
        ColumnSpec(id_name, "string", id_description),
        ColumnSpec(EVENT_TIME, "timestamp", "when the event happened (UTC), inside the batch's month"),
        ColumnSpec(BATCH_ID, "string", "the batch this row arrived in: '<source>-<YYYY-MM>'"),
    )


PARTNER_USERS = SourceSpec(
    name="partner_users",
    description="monthly activity snapshot of the partner platform's active users",
    key=("user_id",),
    rows_per_user=(0.3, 1.0),
    columns=(
        *_common("partner-platform user id (the customer entity)", "user_id"),
        ColumnSpec("age", "int", "age in years", min_value=18, max_value=80),
        ColumnSpec(
            "city_tier", "category", "city tier of residence", categories=("tier1", "tier2", "tier3", "rural")
        ),
        ColumnSpec(
            "device_os",
            "category",
            "operating system of the user's main device",
            categories=("android", "ios", "other"),
        ),
        ColumnSpec(
            "platform_tenure_months",
            "int",
            "months since sign-up on the platform",
            min_value=0,
            max_value=240,
        ),
        ColumnSpec(
            "active_days_30d", "int", "days with activity in the last 30 days", min_value=0, max_value=30
        ),
        ColumnSpec(
            "txn_count_30d", "int", "platform transactions in the last 30 days", min_value=0, max_value=1000
        ),
        ColumnSpec(
            "txn_amount_30d", "float", "platform spend in the last 30 days", min_value=0, max_value=1_000_000
        ),
        ColumnSpec(
            "income_est_monthly",
            "float",
            "platform-estimated monthly income",
            min_value=0,
            max_value=1_000_000,
        ),
        ColumnSpec(
            "late_bill_payments_12m",
            "int",
            "late utility/phone bill payments in the last 12 months",
            min_value=0,
            max_value=12,
        ),
    ),
)

APPLICATIONS = SourceSpec(
    name="applications",
    description="loan applications with the incumbent decision (approved ones are booked loans)",
    key=("application_id",),
    rows_per_user=(0.005, 0.5),
    columns=(
        *_common("application id (also the loan id once booked)", "application_id"),
        ColumnSpec("user_id", "string", "partner-platform user id of the applicant"),
        ColumnSpec("requested_amount", "float", "amount asked for", min_value=100, max_value=100_000),
        ColumnSpec("term_months", "int", "loan term in months", min_value=3, max_value=60),
        ColumnSpec(
            "income_declared",
            "float",
            "monthly income declared on the application",
            min_value=0,
            max_value=1_000_000,
        ),
        ColumnSpec(
            "employment_type",
            "category",
            "employment declared",
            categories=("salaried", "self_employed", "gig", "unemployed", "student"),
        ),
        ColumnSpec(
            "loan_purpose",
            "category",
            "declared purpose",
            categories=("consumption", "education", "medical", "business", "debt_consolidation"),
        ),
        ColumnSpec(
            "channel",
            "category",
            "where the application came in",
            categories=("partner_app", "web", "branch"),
        ),
        ColumnSpec(
            "decision", "category", "decision of the policy in force", categories=("approved", "declined")
        ),
    ),
)

REPAYMENTS = SourceSpec(
    name="repayments",
    description="monthly performance statement of every open booked loan",
    key=("application_id", "months_on_book"),
    rows_per_user=(0.0, 2.0),
    columns=(
        *_common("loan id: the application id of the booked loan", "application_id"),
        ColumnSpec("user_id", "string", "borrower's partner-platform user id"),
        ColumnSpec(
            "months_on_book",
            "int",
            "statement number since booking (1 = first month)",
            min_value=1,
            max_value=60,
        ),
        ColumnSpec(
            "balance", "float", "outstanding principal after this statement", min_value=0, max_value=100_000
        ),
        ColumnSpec("amount_due", "float", "instalment due this month", min_value=0, max_value=100_000),
        ColumnSpec("amount_paid", "float", "amount paid this month", min_value=0, max_value=100_000),
        ColumnSpec("dpd", "int", "days past due at statement", min_value=0, max_value=720),
        ColumnSpec(
            "status",
            "category",
            "account status at statement",
            categories=("current", "delinquent", "charged_off", "paid_off"),
        ),
    ),
)

CAMPAIGNS = SourceSpec(
    name="campaigns",
    description="monthly pre-approved marketing offers to platform users without credit, and their response",
    key=("offer_id",),
    rows_per_user=(0.02, 0.4),
    columns=(
        *_common("offer id: 'O' + a 9-digit counter in send-time order, unique across months", "offer_id"),
        ColumnSpec("user_id", "string", "partner-platform user id of the user offered credit"),
        ColumnSpec("campaign_id", "string", "the month's campaign: 'CMP-<YYYY-MM>'"),
        ColumnSpec(
            "offer_channel", "category", "how the offer was sent", categories=("push", "sms", "in_app")
        ),
        ColumnSpec(
            "offer_amount",
            "float",
            "pre-approved amount shown (1.5x the platform's income estimate, rounded to 50)",
            min_value=100,
            max_value=100_000,
        ),
        ColumnSpec(
            "responded", "int", "1 if the user applied in the offer's month, else 0", min_value=0, max_value=1
        ),
        ColumnSpec(
            "application_id",
            "string",
            "the user's application of the offer's month (the response); null when responded = 0",
            nullable=True,
        ),
    ),
)

COLLECTIONS = SourceSpec(
    name="collections",
    description="monthly collection action on every delinquent or charged-off loan statement",
    key=("application_id", "months_on_book"),
    rows_per_user=(0.005, 0.5),
    columns=(
        *_common("loan id: the application id of the booked loan", "application_id"),
        ColumnSpec("user_id", "string", "borrower's partner-platform user id"),
        ColumnSpec(
            "months_on_book",
            "int",
            "statement number the action follows (as in repayments)",
            min_value=1,
            max_value=60,
        ),
        ColumnSpec("dpd", "int", "days past due at the statement", min_value=30, max_value=720),
        ColumnSpec(
            "amount_overdue",
            "float",
            "arrears left at the statement: amount due minus amount paid",
            min_value=0,
            max_value=100_000,
        ),
        ColumnSpec(
            "action",
            "category",
            "collection action: by dpd bucket, write_off for a charged-off statement",
            categories=("sms", "call", "field_visit", "agency", "write_off"),
        ),
        ColumnSpec(
            "contact_result",
            "category",
            "outcome of the contact attempt",
            categories=("no_contact", "promise_to_pay", "refused", "dispute"),
        ),
        ColumnSpec(
            "recovered_amount",
            "float",
            "recovery on the charged-off balance (0 unless action = write_off)",
            min_value=0,
            max_value=100_000,
        ),
    ),
)

SOURCES: dict[str, SourceSpec] = {
    s.name: s for s in (PARTNER_USERS, APPLICATIONS, REPAYMENTS, CAMPAIGNS, COLLECTIONS)
}


def get_source(name: str) -> SourceSpec:
    """Return a source's spec, or raise a clear error naming the known sources."""
    from orchard.errors import OrchardError

    if name not in SOURCES:
        raise OrchardError(f"unknown source {name!r}; known sources: {', '.join(sorted(SOURCES))}")
    return SOURCES[name]


def batch_id(source: str, month: str) -> str:
    """Return the batch id of a source's monthly batch."""
    return f"{source}-{month}"
