"""The vertical split of the simulator's data: the lender (guest) and the platform (host) tables.

The sample unit is a customer-month: the key is '<user_id>:<YYYY-MM>' of a booked application's month.
The guest (lender) holds, per booked application with a mature label, the application fields, the borrower's
repayment history before that month and the label `bad`. The host (platform) holds one row per active user
and month: the partner_users snapshot dated the 1st of that month (activity of the previous 30 days), so a
matched host row is known at application time. Neither table holds the other's columns.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from orchard.atomic import atomic_path, frame_sha256, write_parquet
from orchard.errors import OrchardError
from orchard.federated.party_spec import FeatureColumn, PartyTable
from orchard.labels import application_labels
from orchard.months import month_index, month_range, timestamp_month_labels, timestamp_months
from orchard.portfolio.spec import LabelDef
from orchard.settings import Settings

log = logging.getLogger(__name__)

KEY = "customer_key"
LABEL = "bad"
VINTAGE = "vintage"
GUEST_FEATURES = [
    "log_requested_amount",
    "term_months",
    "log_income_declared",
    "amount_to_income",
    "prev_loans_count",
    "prev_max_dpd",
    "employment_self_employed",
    "employment_gig",
    "employment_unemployed",
    "employment_student",
    "purpose_education",
    "purpose_medical",
    "purpose_business",
    "purpose_debt_consolidation",
    "channel_web",
    "channel_branch",
]
HOST_FEATURES = [
    "age",
    "platform_tenure_months",
    "active_days_30d",
    "log_txn_count_30d",
    "log_txn_amount_30d",
    "log_income_est_monthly",
    "late_bill_payments_12m",
    "city_tier1",
    "city_tier2",
    "city_rural",
    "device_ios",
    "device_other",
]
_DUMMIES = {
    "employment_type": {
        "self_employed": "employment_self_employed",
        "gig": "employment_gig",
        "unemployed": "employment_unemployed",
        "student": "employment_student",
    },
    "loan_purpose": {
        "education": "purpose_education",
        "medical": "purpose_medical",
        "business": "purpose_business",
        "debt_consolidation": "purpose_debt_consolidation",
    },
    "channel": {"web": "channel_web", "branch": "channel_branch"},
    "city_tier": {"tier1": "city_tier1", "tier2": "city_tier2", "rural": "city_rural"},
    "device_os": {"ios": "device_ios", "other": "device_other"},
}


_BOOL_FEATURES = {name for levels in _DUMMIES.values() for name in levels.values()}


def _columns(names: list[str]) -> list[FeatureColumn]:
    return [FeatureColumn(name=n, type="bool" if n in _BOOL_FEATURES else "float") for n in names]


def simulator_guest_spec() -> PartyTable:
    """Return the spec of the lender's table in the simulator's split (one use of PartyTable)."""
    return PartyTable(
        role="guest",
        id_column=KEY,
        features=_columns(GUEST_FEATURES),
        label_column=LABEL,
        vintage_column=VINTAGE,
    )


def simulator_host_spec() -> PartyTable:
    """Return the spec of the platform's table in the simulator's split (one use of PartyTable)."""
    return PartyTable(role="host", id_column=KEY, features=_columns(HOST_FEATURES), vintage_column=VINTAGE)


@dataclass(frozen=True)
class VerticalSplit:
    """Where each party's table was written, and what it holds."""

    guest_path: Path
    host_path: Path
    guest_rows: int
    host_rows: int
    guest_sha256: str  # "" when not asked for (digest=False)
    host_sha256: str
    batch_ids: list[str] = field(default_factory=list)


_STATEMENT_COLUMNS = ["application_id", "user_id", "event_ts", "months_on_book", "dpd", "status"]
"""The statement columns the guest's table reads: its labels' and the borrower's prior worst dpd."""


def _read_landing(settings: Settings, source: str, months: list[str]) -> pd.DataFrame:
    paths = [settings.landing_dir / source / f"{m}.parquet" for m in months]
    present = [p for p in paths if p.exists()]
    if not present:
        raise OrchardError(
            f"no landing files of {source} under {settings.landing_dir}; run the simulator first"
        )
    return pd.concat([pd.read_parquet(p) for p in present], ignore_index=True)


def _dummies(frame: pd.DataFrame, column: str) -> pd.DataFrame:
    values = frame[column].astype("string")
    return pd.DataFrame(
        {name: (values == level).fillna(False).astype(float) for level, name in _DUMMIES[column].items()},
        index=frame.index,
    )


def guest_table(
    applications: pd.DataFrame, repayments: pd.DataFrame, as_of_month: str, window_months: int, bad_dpd: int
) -> pd.DataFrame:
    """Return the lender's table: one row per customer-month of a booked application.

    A loan whose label window has not ended by `as_of_month` has no label yet (NaN): it is scored and
    monitored in its month, never trained on.
    """
    labels = application_labels(applications, repayments, as_of_month, window_months, bad_dpd)
    labels[LABEL] = labels[LABEL].where(labels["mature"].astype(bool))  # not mature yet: no label
    apps = applications.merge(labels[["application_id", LABEL]], on="application_id", how="inner")
    apps = apps.assign(app_month=timestamp_month_labels(apps["event_ts"])).sort_values(
        ["event_ts", "application_id"]
    )
    apps = apps.drop_duplicates(["user_id", "app_month"], keep="last").reset_index(drop=True)

    all_apps = applications.assign(app_month=timestamp_month_labels(applications["event_ts"]))
    booked = all_apps.loc[all_apps["decision"] == "approved", ["user_id", "event_ts"]]
    prior = apps[["application_id", "user_id", "event_ts"]].merge(
        booked, on="user_id", suffixes=("", "_prev")
    )
    prev_count = (prior["event_ts_prev"] < prior["event_ts"]).groupby(prior["application_id"]).sum()

    prev_dpd = _prior_max_dpd(apps, repayments)

    out = pd.DataFrame(
        {
            KEY: apps["user_id"] + ":" + apps["app_month"],
            VINTAGE: apps["app_month"],
            "log_requested_amount": np.log(apps["requested_amount"].clip(lower=1.0)),
            "term_months": apps["term_months"].astype(float),
            "log_income_declared": np.log1p(apps["income_declared"].clip(lower=0.0)),
            "amount_to_income": apps["requested_amount"] / apps["income_declared"].clip(lower=100.0),
            "prev_loans_count": apps["application_id"].map(prev_count).fillna(0).astype(float),
            "prev_max_dpd": apps["application_id"].map(prev_dpd).fillna(0).astype(float),
        }
    )
    for column in ("employment_type", "loan_purpose", "channel"):
        out = out.join(_dummies(apps, column))
    out[LABEL] = apps[LABEL].astype(float).to_numpy()
    return out[[KEY, VINTAGE, *GUEST_FEATURES, LABEL]]


def _prior_max_dpd(apps: pd.DataFrame, repayments: pd.DataFrame) -> pd.Series:
    """Return each application's worst dpd over the borrower's statements of the months before its own.

    One row per borrower and statement month, its running maximum, and an as-of join on the month before the
    application's: memory in the borrower-months, never applications x statements.
    """
    stmts = repayments.loc[repayments["dpd"].notna(), ["user_id", "event_ts", "dpd"]]
    grouped = stmts.assign(at=timestamp_months(stmts["event_ts"]).astype("int64")).groupby(["user_id", "at"])
    monthly = pd.DataFrame(grouped["dpd"].max()).reset_index().sort_values(["user_id", "at"])
    monthly["dpd"] = monthly.groupby("user_id")["dpd"].cummax()
    asked = apps[["application_id", "user_id"]].assign(
        at=apps["app_month"].map(month_index).astype("int64") - 1
    )
    joined = pd.merge_asof(
        asked.sort_values("at"), monthly.sort_values("at"), on="at", by="user_id", direction="backward"
    )
    return joined.set_index("application_id")["dpd"]


def host_table(partner_users: pd.DataFrame) -> pd.DataFrame:
    """Return the platform's table: one row per active user and month (the snapshot of that month).

    Built column by column from numpy arrays, the months formatted once per distinct month: the platform's
    history is the largest table of a job month (1.1M snapshots at 120,000 users over a year).
    """
    users = partner_users.drop_duplicates(["user_id", "event_ts"]).reset_index(drop=True)
    index = timestamp_months(users["event_ts"]).to_numpy()
    months = {int(i): f"{int(i) // 12:04d}-{int(i) % 12 + 1:02d}" for i in np.unique(index)}
    vintage = pd.Series(index).map(months).astype(object)
    columns: dict[str, Any] = {
        KEY: (users["user_id"].astype(str) + ":" + vintage).to_numpy(dtype=object),
        VINTAGE: vintage.to_numpy(dtype=object),
        "age": users["age"].to_numpy(dtype=float),
        "platform_tenure_months": users["platform_tenure_months"].to_numpy(dtype=float),
        "active_days_30d": users["active_days_30d"].to_numpy(dtype=float),
        "log_txn_count_30d": np.log1p(users["txn_count_30d"].to_numpy(dtype=float).clip(min=0)),
        "log_txn_amount_30d": np.log1p(users["txn_amount_30d"].to_numpy(dtype=float).clip(min=0.0)),
        "log_income_est_monthly": np.log1p(users["income_est_monthly"].to_numpy(dtype=float).clip(min=0.0)),
        "late_bill_payments_12m": users["late_bill_payments_12m"].to_numpy(dtype=float),
    }
    del index, vintage
    for column in ("city_tier", "device_os"):
        values = users[column].to_numpy(dtype=object)
        for level, name in _DUMMIES[column].items():
            columns[name] = (values == level).astype(float)
    out = pd.DataFrame(columns)
    del columns, users
    return out.loc[~out[KEY].duplicated(), [KEY, VINTAGE, *HOST_FEATURES]].reset_index(drop=True)


def _write_host_table(months: Iterator[pd.DataFrame], path: Path, digest: bool = True) -> tuple[int, str]:
    """Write the platform's table month by month (a Parquet row group each), atomically; return its rows and
    digest (SHA-256 over the months' frame digests, in order; "" unless `digest`).

    Memory is one month's snapshots, whatever the length of the history.
    """
    hashed, rows = hashlib.sha256(), 0
    with atomic_path(path) as tmp:
        writer: pq.ParquetWriter | None = None
        try:
            for snapshots in months:
                if snapshots.empty:
                    continue
                table = host_table(snapshots)
                arrow = pa.Table.from_pandas(table, preserve_index=False)
                if writer is None:
                    writer = pq.ParquetWriter(tmp, arrow.schema)
                writer.write_table(arrow.cast(writer.schema))
                if digest:
                    hashed.update(frame_sha256(table).encode())
                rows += len(table)
        finally:
            if writer is not None:
                writer.close()
        if writer is None:  # no snapshot at all: an empty table with the columns
            empty = {KEY: pd.Series(dtype=object), VINTAGE: pd.Series(dtype=object)}
            pd.DataFrame({**empty, **{f: pd.Series(dtype=float) for f in HOST_FEATURES}}).to_parquet(
                tmp, index=False
            )
    return rows, hashed.hexdigest() if digest else ""


def _guest_label(settings: Settings) -> LabelDef:
    """Return the label of the portfolio's decision PD model: the guest's label, if it is a loan event."""
    portfolio = settings.portfolio_def
    if portfolio.decision is None:
        raise OrchardError(
            f"portfolio {portfolio.name} has no decision model whose label the guest table takes"
        )
    model = portfolio.decision.pd_model
    rule = portfolio.labels[portfolio.models[model].label]
    if rule.strategy != "loan_event":
        raise OrchardError(
            f"the federated guest table labels booked loans with a loan_event label; {model}'s label is not one"
        )
    return rule


def write_vertical_split(
    settings: Settings,
    out_dir: Path,
    as_of_month: str | None = None,
    *,
    require_labels: bool = True,
    validated: bool = False,
    host_months: list[str] | None = None,
    guest_from: str | None = None,
    digest: bool = True,
) -> VerticalSplit:
    """Read the simulator's landing files and write guest.parquet and host.parquet into out_dir.

    `validated`: read the lake's silver batches (those the contracts passed; a quarantined batch is never
    used) up to `as_of_month`, as the lifecycle does, instead of the landing files.
    `require_labels`: refuse a guest table without both classes among its mature labels (a job would fail).
    `host_months`: the platform's snapshots of these months only (a month's monitoring needs no other).
    `guest_from`: the lender's applications (and their statements) from this month on only.
    `digest`: hash each table (a job's lineage); a split only scored through leaves both digests "".
    """
    # deferred: the lake pulls in SQLAlchemy, which a party process (importing this module) never needs
    from orchard.lake import read_silver, silver_months

    as_of = as_of_month or settings.end_month
    months = month_range(settings.start_month, as_of if validated else settings.end_month)
    guest_months = [m for m in months if guest_from is None or m >= guest_from]

    def read(source: str, wanted: list[str] = guest_months, columns: list[str] | None = None) -> pd.DataFrame:
        if validated:
            return read_silver(settings, source, wanted, columns)
        frame = _read_landing(settings, source, wanted)
        return frame if columns is None else frame[columns]

    applications = read("applications")
    repayments = read("repayments", columns=_STATEMENT_COLUMNS)
    rule = _guest_label(settings)
    guest = guest_table(applications, repayments, as_of, rule.window_months, rule.bad_dpd)
    if require_labels and guest[LABEL].dropna().nunique() < 2:
        raise OrchardError(
            f"the simulated data holds no usable mature labels by {as_of}; simulate more months"
        )
    out_dir = Path(out_dir)
    guest_path = write_parquet(guest, out_dir / "guest.parquet")
    wanted = [m for m in months if host_months is None or m in host_months]
    if not validated:
        wanted = [m for m in wanted if (settings.landing_dir / "partner_users" / f"{m}.parquet").exists()]
    host_path = out_dir / "host.parquet"
    host_rows, host_sha256 = _write_host_table(
        (read("partner_users", [m]) for m in wanted), host_path, digest
    )
    log.info("vertical split: guest %d rows, host %d rows", len(guest), host_rows)
    sources = ("applications", "repayments")
    batch_ids = sorted(
        f"{s}-{m}"
        for s in sources
        for m in (silver_months(settings, s) if validated else months)
        if m in guest_months
    )
    return VerticalSplit(
        guest_path=guest_path,
        host_path=host_path,
        guest_rows=len(guest),
        host_rows=host_rows,
        guest_sha256=frame_sha256(guest) if digest else "",
        host_sha256=host_sha256,
        batch_ids=batch_ids,
    )


@dataclass(frozen=True)
class Scaler:
    """Per-feature standardisation fitted on one party's own training rows (missing -> 0 after scaling)."""

    features: list[str]
    mean: list[float]
    std: list[float]

    @classmethod
    def fit(cls, frame: pd.DataFrame, features: list[str]) -> Scaler:
        """Return a scaler fitted on the frame's features."""
        values = frame.loc[:, features].to_numpy(dtype=float)
        mean = np.nanmean(values, axis=0)
        std = np.nanstd(values, axis=0)
        std = np.where(std > 1e-12, std, 1.0)
        return cls(features=list(features), mean=mean.tolist(), std=std.tolist())

    def transform(self, frame: pd.DataFrame) -> np.ndarray:
        """Return the standardised feature matrix (rows x features)."""
        missing = [f for f in self.features if f not in frame.columns]
        if missing:
            raise OrchardError(f"frame lacks feature column(s) {', '.join(missing)}")
        values = frame.loc[:, self.features].to_numpy(dtype=float)
        z = (values - np.asarray(self.mean)) / np.asarray(self.std)
        return np.nan_to_num(z, nan=0.0)
