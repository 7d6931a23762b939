"""The population a model scores, built from validated (silver) sources, with its label known at `as_of`.

One row per scored case: the case key, the customer (user_id), the time the case is scored at (`event_timestamp`,
the point-in-time join's cut: features must be known by then), the batch it came from, the request fields the
model takes from the case itself, whether the row may be learnt from (`eligible`: a declined application has no
outcome), and the label with its maturity (`mature`, `bad` = the modelled event; NaN while unknown).

Units (see orchard.model_specs):
- cases (generic): a row of the model's source (where `where` holds), scored at its event time; learnt from where
  `trainable` holds, with a performance or outcome-date label from the portfolio, or a named label strategy of
  the simulator's lender (90+ dpd, first payment default, charge-off of booked loans: orchard.labels);
- offers: a campaign offer, scored when it is sent; event = responded and the application was approved, known
  at the end of the offer month;
- accounts: an open loan below `bad_dpd` at a monthly statement, scored at the statement; event = 90+ dpd or
  charge-off within the next `label_window_months` statements;
- delinquencies: a delinquent loan after its collection action, scored at the action; event = a current or
  paid-off statement within the next `cure_window_months` statements.
Accounts are sampled to at most `max_rows_per_month` per month, by a hash of the key (the same rows every run).

Warm-up: every account and delinquency has a credit history, whose windowed features (3 statement months) are
complete only from the lake's third month; earlier cases would make the development sample differ from every
later month (monitoring would call that drift), so account-level populations start there.
"""

from __future__ import annotations

import hashlib

import numpy as np
import pandas as pd

from orchard.errors import OrchardError
from orchard.labels import (
    application_labels,
    charge_off_labels,
    event_within,
    first_payment_default_labels,
    month_index,
)
from orchard.lake import read_silver
from orchard.model_specs import ModelSpec
from orchard.months import add_months, month_range, timestamp_months
from orchard.portfolio.expressions import row_mask
from orchard.portfolio.spec import LabelDef
from orchard.settings import Settings
from orchard.sources import BATCH_ID, EVENT_TIME

# credit-history windows of the simulator's lender (3 statement months: the demo portfolio's credit_history)
HISTORY_WINDOW_MONTHS = 3

ENTITY_TIME = "event_timestamp"
OPEN_STATUSES = ("current", "delinquent")
CURED_STATUSES = ("current", "paid_off")


def _index(ts: pd.Series) -> np.ndarray:
    return timestamp_months(ts).to_numpy()


def _loan_labels(settings: Settings, spec: ModelSpec, apps: pd.DataFrame, as_of: str) -> pd.DataFrame:
    """Return the named label strategies of the simulator's lender over its booked loans."""
    repayments = read_silver(settings, "repayments")
    if spec.label_kind == "dpd90":
        return application_labels(apps, repayments, as_of, settings.label_window_months, settings.bad_dpd)
    if spec.label_kind == "first_payment_default":
        return first_payment_default_labels(apps, repayments, as_of)
    if spec.label_kind == "charge_off":
        return charge_off_labels(apps, repayments, as_of, settings.loss_window_months)
    raise OrchardError(f"model {spec.name}: label {spec.label_kind!r} does not apply to applications")


def _cases(settings: Settings, source: str, months: list[str], what: str) -> pd.DataFrame:
    """Return the validated rows of a source for the months, or raise naming what is missing."""
    rows = read_silver(settings, source, months)
    if rows.empty:
        raise OrchardError(f"no validated {what} for {months[0]}..{months[-1]}")
    return rows


def _unlabelled(frame: pd.DataFrame) -> pd.DataFrame:
    return frame.assign(mature=False, bad=np.nan)


def _match_key(frame: pd.DataFrame, columns: list[str]) -> pd.Series:
    """Return one join key per row from one or more columns (several are joined with a separator)."""
    if len(columns) == 1:
        return frame[columns[0]].astype(str)
    return frame[columns].astype(str).agg("\x1f".join, axis=1)


def _event_labels(
    settings: Settings, rule: LabelDef, cases: pd.DataFrame, months: list[str], as_of: str, what: str
) -> tuple[np.ndarray, np.ndarray]:
    """Return (bad, mature) per case from the portfolio's performance or outcome-date label."""
    event = rule.performance or rule.outcome_date
    if event is None:  # the spec allows exactly one kind; strategies are handled by the caller
        raise OrchardError("the label has neither a performance event nor an outcome date")
    rows = read_silver(settings, event.source, month_range(min(months), as_of))
    if rule.performance is not None:
        hits = rows.loc[row_mask(rows, rule.performance.event, f"{what}.performance.event")]
        times = hits[EVENT_TIME]
    else:
        column = rule.outcome_date.column if rule.outcome_date else ""
        hits = rows.loc[rows[column].notna()]
        times = hits[column]
    events = pd.DataFrame(
        {
            "application_id": _match_key(hits, list(event.match)).to_numpy(),
            "stmt_index": timestamp_months(times).to_numpy(),
        }
    )
    observed = pd.DataFrame(
        {
            "application_id": _match_key(cases, list(event.match.values())).to_numpy(),
            "obs_index": _index(cases[EVENT_TIME]),
        }
    )
    return event_within(observed, events, month_index(as_of), event.within_months)


def _generic_cases(
    settings: Settings, spec: ModelSpec, months: list[str], as_of: str, with_labels: bool
) -> pd.DataFrame:
    rows = _cases(settings, spec.source, months, f"{spec.source} cases")
    what = f"models.{spec.name}.population"
    if spec.where:
        rows = rows.loc[row_mask(rows, spec.where, f"{what}.where")]
    extra = [c for c in ("decision",) if c in rows.columns]  # the simulator's lender: booked or declined
    keep = dict.fromkeys([spec.key, spec.entity, EVENT_TIME, BATCH_ID, *extra, *spec.request_features])
    frame = rows[list(keep)].reset_index(drop=True)
    trainable = row_mask(rows, spec.trainable, f"{what}.trainable") if spec.trainable else True
    frame = frame.assign(eligible=trainable)
    if not with_labels:
        return _unlabelled(frame)
    rule = spec.label_rule
    if rule is None or rule.strategy is not None:
        labels = _loan_labels(settings, spec, rows, as_of)
        frame = frame.merge(labels[[spec.key, "mature", "bad"]], on=spec.key, how="left")
        frame["mature"] = frame["mature"].astype("boolean").fillna(False).astype(bool)
        return frame
    bad, mature = _event_labels(settings, rule, frame, months, as_of, f"labels of {spec.name}")
    eligible = frame["eligible"].to_numpy(dtype=bool)
    return frame.assign(mature=mature & eligible, bad=np.where(eligible, bad, np.nan))


def _offers(
    settings: Settings, spec: ModelSpec, months: list[str], as_of: str, with_labels: bool
) -> pd.DataFrame:
    offers = _cases(settings, "campaigns", months, "campaign offers")
    frame = offers[
        ["offer_id", "user_id", EVENT_TIME, BATCH_ID, "responded", "application_id", *spec.request_features]
    ].assign(eligible=True)
    if not with_labels:
        return _unlabelled(frame)
    decisions = read_silver(settings, "applications", months)[["application_id", "decision"]]
    approved = set(decisions.loc[decisions["decision"] == "approved", "application_id"])
    frame = frame.assign(mature=_index(frame[EVENT_TIME]) <= month_index(as_of))
    event = (frame["responded"] == 1) & frame["application_id"].isin(approved)
    return frame.assign(bad=np.where(frame["mature"], event.astype(float), np.nan))


def _sample(frame: pd.DataFrame, key: str, per_month: int) -> pd.DataFrame:
    """Keep at most per_month rows of each month, chosen by a hash of the key (stable across runs)."""
    rank = frame[key].map(lambda k: hashlib.blake2b(k.encode(), digest_size=8).hexdigest())
    month = _index(frame[EVENT_TIME])
    order = pd.DataFrame({"month": month, "rank": rank.to_numpy()}).sort_values(["month", "rank"])
    keep = (order.groupby("month").cumcount() < per_month).to_numpy()
    return frame.iloc[np.sort(order.index.to_numpy()[keep])]


def _statement_events(
    repayments: pd.DataFrame, statuses: tuple[str, ...], bad_dpd: int | None
) -> pd.DataFrame:
    if bad_dpd is None:
        mask = repayments["status"].isin(statuses)
    else:
        mask = (repayments["dpd"] >= bad_dpd) | (repayments["status"] == "charged_off")
    events = repayments.loc[mask, ["application_id"]].copy()
    events["stmt_index"] = _index(repayments.loc[mask, EVENT_TIME])
    return events


def _later_statements(settings: Settings, months: list[str], as_of: str) -> pd.DataFrame:
    """Return the statements issued from the first of `months` to `as_of` (what outcomes can be seen in)."""
    return read_silver(settings, "repayments", month_range(min(months), as_of))


def _labelled_cases(frame: pd.DataFrame, events: pd.DataFrame, as_of: str, window: int) -> pd.DataFrame:
    cases = pd.DataFrame(
        {"application_id": frame["application_id"].to_numpy(), "obs_index": _index(frame["_statement_ts"])}
    )
    bad, mature = event_within(cases, events, month_index(as_of), window)
    return frame.assign(mature=mature, bad=bad)


def _account_key(application_id: pd.Series, months_on_book: pd.Series) -> pd.Series:
    return application_id.astype(str) + "-" + months_on_book.astype("int64").map("{:02d}".format)


def after_warm_up(settings: Settings, months: list[str]) -> list[str]:
    """Return the months whose credit-history windows are complete (from the lake's third month on)."""
    first = add_months(settings.start_month, HISTORY_WINDOW_MONTHS - 1)
    kept = [m for m in months if m >= first]
    if not kept:
        raise OrchardError(f"{months[0]}..{months[-1]} is inside the credit-history warm-up (before {first})")
    return kept


def _accounts(
    settings: Settings, spec: ModelSpec, months: list[str], as_of: str, with_labels: bool
) -> pd.DataFrame:
    months = after_warm_up(settings, months)
    repayments = read_silver(settings, "repayments", months)
    snap = repayments.loc[repayments["status"].isin(OPEN_STATUSES) & (repayments["dpd"] < settings.bad_dpd)]
    if snap.empty:
        raise OrchardError(f"no validated open-account statements for {months[0]}..{months[-1]}")
    # statement fields only: loans booked before the lake began (no application row) are in the book too
    frame = pd.DataFrame(
        {
            "account_month_id": _account_key(snap["application_id"], snap["months_on_book"]),
            "application_id": snap["application_id"],
            "user_id": snap["user_id"],
            EVENT_TIME: snap[EVENT_TIME],
            BATCH_ID: snap[BATCH_ID],
            "_statement_ts": snap[EVENT_TIME],
            "months_on_book": snap["months_on_book"],
            "dpd": snap["dpd"],
            "balance": snap["balance"],
            "amount_due": snap["amount_due"],
            "paid_ratio": (snap["amount_paid"] / snap["amount_due"].where(snap["amount_due"] > 0)).fillna(
                1.0
            ),
            "eligible": True,
        }
    ).reset_index(drop=True)
    frame = _sample(frame, "account_month_id", settings.max_rows_per_month)
    if not with_labels:
        return _unlabelled(frame)
    events = _statement_events(_later_statements(settings, months, as_of), (), settings.bad_dpd)
    return _labelled_cases(frame, events, as_of, settings.label_window_months)


def _delinquencies(
    settings: Settings, spec: ModelSpec, months: list[str], as_of: str, with_labels: bool
) -> pd.DataFrame:
    months = after_warm_up(settings, months)
    cases = _cases(settings, "collections", months, "collection cases")
    cases = cases.loc[cases["action"] != "write_off"]
    repayments = read_silver(settings, "repayments", months)
    statement = repayments[["application_id", "months_on_book", "balance", EVENT_TIME]].rename(
        columns={EVENT_TIME: "_statement_ts"}
    )
    cases = cases.merge(statement, on=["application_id", "months_on_book"], how="inner")
    frame = pd.DataFrame(
        {
            "account_month_id": _account_key(cases["application_id"], cases["months_on_book"]),
            "application_id": cases["application_id"],
            "user_id": cases["user_id"],
            EVENT_TIME: cases[EVENT_TIME],
            BATCH_ID: cases[BATCH_ID],
            "_statement_ts": cases["_statement_ts"],
            "months_on_book": cases["months_on_book"],
            "dpd": cases["dpd"],
            "amount_overdue": cases["amount_overdue"],
            "balance": cases["balance"],
            "action": cases["action"],
            "contact_result": cases["contact_result"],
            "eligible": True,
        }
    )
    if not with_labels:
        return _unlabelled(frame)
    events = _statement_events(_later_statements(settings, months, as_of), CURED_STATUSES, None)
    return _labelled_cases(frame, events, as_of, settings.cure_window_months)


_BUILDERS = {
    "cases": _generic_cases,
    "offers": _offers,
    "accounts": _accounts,
    "delinquencies": _delinquencies,
}


def population(
    settings: Settings, spec: ModelSpec, months: list[str], as_of: str, *, with_labels: bool = True
) -> pd.DataFrame:
    """Return the model's cases of `months` with request fields and (if asked) labels known at `as_of`."""
    frame = _BUILDERS[spec.unit](settings, spec, months, as_of, with_labels)
    frame = frame.rename(columns={EVENT_TIME: ENTITY_TIME})
    # the offline store joins at microsecond precision; a source may carry nanoseconds
    frame[ENTITY_TIME] = pd.to_datetime(frame[ENTITY_TIME], utc=True).dt.floor("us")
    keep = [spec.key, spec.entity, ENTITY_TIME, BATCH_ID, "eligible", "mature", "bad", *spec.request_features]
    if "application_id" not in keep and "application_id" in frame.columns:
        keep.insert(1, "application_id")
    keep += [c for c in ("decision",) if c in frame.columns]
    return frame[[c for c in dict.fromkeys(keep) if c in frame.columns]].reset_index(drop=True)
