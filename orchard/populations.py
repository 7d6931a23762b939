"""The population a model scores, built from validated (silver) sources, with its label known at `as_of`.

One row per scored case: the case key, the customer (user_id), the time the case is scored at (`event_timestamp`,
the point-in-time join's cut: features must be known by then), the batch it came from, the request fields the
model takes from the case itself, whether the row may be learnt from (`eligible`: a declined application has no
outcome), and the label with its maturity (`mature`, `bad` = the modelled event; NaN while unknown).

Units (see orchard.model_specs):
- cases (generic): a row of the model's source (where `where` holds), scored at its event time; learnt from where
  `trainable` holds, with a performance or outcome-date label from the portfolio, or a named label strategy of
  the simulator's lender (90+ dpd, first payment default, charge-off of booked loans: orchard.labels); an
  observed label (a status column as extracted) is mature wherever it is set;
- offers: a campaign offer, scored when it is sent; event = responded and the application was approved, known
  at the end of the offer month;
- accounts: an open loan below `bad_dpd` at a monthly statement, scored at the statement; event = 90+ dpd or
  charge-off within the next `within_months` statements (the label's);
- delinquencies: a delinquent loan after its collection action, scored at the action; event = a current or
  paid-off statement within the next `within_months` statements (the label's).
A population with `max_per_month` keeps at most that many cases per month, chosen by a hash of the key (the
same rows every run); every strategy samples its cases before labelling them.

Warm-up: every account and delinquency has a credit history, whose windowed features (3 statement months) are
complete only from the lake's third month; earlier cases would make the development sample differ from every
later month (monitoring would call that drift), so account-level populations start there.
"""

from __future__ import annotations

import hashlib

import numpy as np
import pandas as pd

from orchard.credit.expected_loss import realised_losses
from orchard.errors import OrchardError
from orchard.labels import (
    application_labels,
    charge_off_labels,
    event_within,
    first_payment_default_labels,
    month_index,
)
from orchard.lake import get_source, read_silver, silver_frames
from orchard.landing import utc_times
from orchard.model_specs import ModelSpec
from orchard.months import add_months, month_range, timestamp_months, utc_timestamps
from orchard.portfolio.expressions import row_mask
from orchard.portfolio.spec import LabelDef, ObservedLabel, OutcomeDateLabel, PerformanceLabel
from orchard.settings import Settings
from orchard.sources import BATCH_ID, EVENT_TIME

# credit-history windows of the simulator's lender (3 statement months: the demo portfolio's credit_history)
HISTORY_WINDOW_MONTHS = 3

ENTITY_TIME = "event_timestamp"
OPEN_STATUSES = ("current", "delinquent")
CURED_STATUSES = ("current", "paid_off")


def _index(ts: pd.Series) -> np.ndarray:
    return timestamp_months(ts).to_numpy()


def strategy_label(spec: ModelSpec) -> LabelDef:
    """Return the model's named label strategy (its window and bad dpd), or raise if it has another label."""
    rule = spec.label_rule
    if rule is None or rule.strategy is None:
        raise OrchardError(f"model {spec.name}: its label is not a named strategy")
    return rule


def _loan_labels(
    settings: Settings, spec: ModelSpec, apps: pd.DataFrame, months: list[str], as_of: str
) -> pd.DataFrame:
    """Return the named label strategies of the simulator's lender over its booked loans of `months`.

    Only the statements a label can see are read: a loan's statements follow its booking, and none after
    `as_of` is observable at `as_of`.
    """
    statements = _later_statements(settings, apps["application_id"], months, as_of)
    return strategy_labels(spec, apps, statements, as_of)


def strategy_labels(
    spec: ModelSpec, apps: pd.DataFrame, repayments: pd.DataFrame, as_of: str
) -> pd.DataFrame:
    """Return the model's named label strategy over booked applications and their statements (pure)."""
    rule = strategy_label(spec)
    if spec.label_kind == "dpd90":
        return application_labels(apps, repayments, as_of, rule.window_months, rule.bad_dpd)
    if spec.label_kind == "first_payment_default":
        return first_payment_default_labels(apps, repayments, as_of)
    if spec.label_kind == "charge_off":
        return charge_off_labels(apps, repayments, as_of, rule.window_months)
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


def _performance_labels(
    settings: Settings, rule: PerformanceLabel, cases: pd.DataFrame, months: list[str], as_of: str, what: str
) -> tuple[np.ndarray, np.ndarray]:
    """Return (bad, mature) per case: a matching row of the performance source met the event in the window."""
    rows = read_silver(settings, rule.source, month_range(min(months), as_of))
    hits = rows.loc[row_mask(rows, rule.event, f"{what}.performance.event")]
    events = pd.DataFrame(
        {
            "application_id": _match_key(hits, list(rule.match)).to_numpy(),
            "stmt_index": _index(hits[EVENT_TIME]),
        }
    )
    observed = pd.DataFrame(
        {
            "application_id": _match_key(cases, list(rule.match.values())).to_numpy(),
            "obs_index": _index(cases[EVENT_TIME]),
        }
    )
    return event_within(observed, events, month_index(as_of), rule.within_months)


def _outcome_date_labels(
    rule: OutcomeDateLabel, cases: pd.DataFrame, as_of: str, zone: str
) -> tuple[np.ndarray, np.ndarray]:
    """Return (bad, mature) per case: its outcome date falls in [case month, case month + N] and by `as_of`.

    The outcome date is read from the case's row as landed (a timestamp column of the source, validated at
    ingest); a naive one is read in the source's zone.
    """
    outcome = utc_times(cases[rule.column], zone)
    obs = _index(cases[EVENT_TIME])
    end = month_index(as_of)
    mature = obs + rule.within_months <= end
    known = outcome.notna().to_numpy()
    out = np.where(known, timestamp_months(outcome.fillna(cases[EVENT_TIME])).to_numpy(), -1)
    hit = known & (out >= obs) & (out <= np.minimum(obs + rule.within_months, end))
    return np.where(hit, 1.0, np.where(mature, 0.0, np.nan)), mature


def observed_labels(rule: ObservedLabel, cases: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """Return (bad, mature) per case from its outcome column as extracted: mature wherever the column is set."""
    values = cases[rule.column]
    numbers = [v for v in rule.bad_values if isinstance(v, int | float) and not isinstance(v, bool)]
    texts = {str(v).strip() for v in rule.bad_values}
    bad = values.astype("string").str.strip().isin(texts).fillna(False).to_numpy(dtype=bool)
    if numbers and pd.api.types.is_numeric_dtype(values):
        bad |= values.isin(numbers).to_numpy(dtype=bool)
    mature = values.notna().to_numpy(dtype=bool)
    return np.where(mature, bad.astype(float), np.nan), mature


def _rule_labels(
    settings: Settings, spec: ModelSpec, cases: pd.DataFrame, months: list[str], as_of: str
) -> tuple[np.ndarray, np.ndarray]:
    """Return (bad, mature) per case from the portfolio's performance, outcome-date or observed label."""
    rule, what = spec.label_rule, f"labels of {spec.name}"
    if rule is not None and rule.performance is not None:
        return _performance_labels(settings, rule.performance, cases, months, as_of, what)
    if rule is not None and rule.outcome_date is not None:
        zone = settings.portfolio_def.source_timezone(spec.source)
        return _outcome_date_labels(rule.outcome_date, cases, as_of, zone)
    if rule is not None and rule.observed is not None:
        return observed_labels(rule.observed, cases)
    raise OrchardError(f"{what}: the label has no performance event, outcome date or observed outcome")


def _generic_cases(
    settings: Settings, spec: ModelSpec, months: list[str], as_of: str, with_labels: bool
) -> pd.DataFrame:
    rows = _cases(settings, spec.source, months, f"{spec.source} cases")
    what = f"models.{spec.name}.population"
    if spec.where:
        rows = rows.loc[row_mask(rows, spec.where, f"{what}.where")]
    extra = [c for c in ("decision",) if c in rows.columns]  # the simulator's lender: booked or declined
    rule = spec.label_rule
    outcome = [r.column for r in (rule.outcome_date, rule.observed) if r is not None] if rule else []
    keep = dict.fromkeys(
        [spec.key, spec.entity, EVENT_TIME, BATCH_ID, *extra, *spec.request_features, *outcome]
    )
    frame = rows[list(keep)].reset_index(drop=True)
    trainable = row_mask(rows, spec.trainable, f"{what}.trainable") if spec.trainable else True
    frame = _capped(frame.assign(eligible=trainable), spec)
    if not with_labels:
        return _unlabelled(frame)
    if rule is None or rule.strategy is not None:
        labels = _loan_labels(settings, spec, rows, months, as_of)
        frame = frame.merge(labels[[spec.key, "mature", "bad"]], on=spec.key, how="left")
        frame["mature"] = frame["mature"].astype("boolean").fillna(False).astype(bool)
        return frame
    bad, mature = _rule_labels(settings, spec, frame, months, as_of)
    eligible = frame["eligible"].to_numpy(dtype=bool)
    frame = frame.drop(columns=[c for c in outcome if c not in {spec.key, spec.entity, *extra}])
    return frame.assign(mature=mature & eligible, bad=np.where(eligible, bad, np.nan))


def _offers(
    settings: Settings, spec: ModelSpec, months: list[str], as_of: str, with_labels: bool
) -> pd.DataFrame:
    offers = _cases(settings, "campaigns", months, "campaign offers")
    frame = offers[
        ["offer_id", "user_id", EVENT_TIME, BATCH_ID, "responded", "application_id", *spec.request_features]
    ].assign(eligible=True)
    frame = _capped(frame, spec)
    if not with_labels:
        return _unlabelled(frame)
    decisions = read_silver(settings, "applications", months, columns=["application_id", "decision"])
    approved = set(decisions.loc[decisions["decision"] == "approved", "application_id"])
    frame = frame.assign(mature=_index(frame[EVENT_TIME]) <= month_index(as_of))
    event = (frame["responded"] == 1) & frame["application_id"].isin(approved)
    return frame.assign(bad=np.where(frame["mature"], event.astype(float), np.nan))


def _sample(frame: pd.DataFrame, key: str, per_month: int) -> pd.DataFrame:
    """Keep at most per_month rows of each month, chosen by a hash of the key (stable across runs): the 8-byte
    BLAKE2b digest, ranked as a big-endian integer (the order of its hex digest)."""
    rank = np.fromiter(
        (int.from_bytes(hashlib.blake2b(str(k).encode(), digest_size=8).digest(), "big") for k in frame[key]),
        dtype=np.uint64,
        count=len(frame),
    )
    month = _index(frame[EVENT_TIME])
    order = pd.DataFrame({"month": month, "rank": rank}).sort_values(["month", "rank"])
    keep = (order.groupby("month").cumcount() < per_month).to_numpy()
    return frame.iloc[np.sort(order.index.to_numpy()[keep])]


def _capped(frame: pd.DataFrame, spec: ModelSpec) -> pd.DataFrame:
    """Apply the population's max_per_month; every builder calls it before labelling (only the cases kept are
    labelled)."""
    return frame if spec.max_per_month is None else _sample(frame, spec.key, spec.max_per_month)


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


_STATEMENT_COLUMNS = ["application_id", "months_on_book", "dpd", "status", "amount_paid", EVENT_TIME]
"""The statement columns a label reads (amount_paid: a first payment default's; event time: a case's events)."""


def _loan_statements(
    settings: Settings, loans: pd.Series, months: list[str], columns: list[str]
) -> pd.DataFrame:
    """Return the given loans' statements of `months` (those columns): read a month at a time, only the loans'
    rows kept, so that the memory is the loans' statements, not the whole book's."""
    ids = pd.Index(loans.unique())
    return read_silver(
        settings, "repayments", months, columns, where=lambda rows: rows["application_id"].isin(ids)
    )


def _later_statements(settings: Settings, loans: pd.Series, months: list[str], as_of: str) -> pd.DataFrame:
    """Return the loans' statements issued from the first of `months` to `as_of` (what their outcomes can be
    seen in), with the columns labels read."""
    have = set(get_source(settings, "repayments").column_names)
    columns = [c for c in _STATEMENT_COLUMNS if c in have]
    return _loan_statements(settings, loans, month_range(min(months), as_of), columns)


def realised_charge_offs(settings: Settings, months: list[str] | None = None) -> pd.DataFrame:
    """Return the charged-off loans' realised losses (orchard.credit.expected_loss) over `months` (all when
    None): a month at a time, only the charged-off statements and the write-offs are kept."""
    charged_off = read_silver(
        settings,
        "repayments",
        months,
        ["application_id", "status", EVENT_TIME, "balance"],
        where=lambda rows: rows["status"] == "charged_off",
    )
    written_off = read_silver(
        settings,
        "collections",
        months,
        ["application_id", "action", "recovered_amount"],
        where=lambda rows: rows["action"] == "write_off",
    )
    return realised_losses(charged_off, written_off)


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


def _open_statements(rows: pd.DataFrame, rule: LabelDef, spec: ModelSpec) -> pd.DataFrame:
    """Return one month file's account cases (open statements below the bad dpd), capped like the population."""
    snap = rows.loc[rows["status"].isin(OPEN_STATUSES) & (rows["dpd"] < rule.bad_dpd)]
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
    )
    return _capped(frame, spec)


def _accounts(
    settings: Settings, spec: ModelSpec, months: list[str], as_of: str, with_labels: bool
) -> pd.DataFrame:
    months = after_warm_up(settings, months)
    rule = strategy_label(spec)
    # each month's file capped as it is read: a case kept from all of them is kept from its own month's
    # (the cap ranks the rows of each event month by a hash of the key), so capping the kept rows again gives
    # the population the whole span gives, in the same order, with one month's statements in memory at a time
    parts = [_open_statements(rows, rule, spec) for rows in silver_frames(settings, "repayments", months)]
    parts = [p for p in parts if len(p)]
    if not parts:
        raise OrchardError(f"no validated open-account statements for {months[0]}..{months[-1]}")
    frame = _capped(pd.concat(parts, ignore_index=True), spec).reset_index(drop=True)
    if not with_labels:
        return _unlabelled(frame)
    statements = _later_statements(settings, frame["application_id"], months, as_of)
    events = _statement_events(statements, (), rule.bad_dpd)
    return _labelled_cases(frame, events, as_of, rule.window_months)


def _delinquencies(
    settings: Settings, spec: ModelSpec, months: list[str], as_of: str, with_labels: bool
) -> pd.DataFrame:
    months = after_warm_up(settings, months)
    cases = _cases(settings, "collections", months, "collection cases")
    cases = cases.loc[cases["action"] != "write_off"]
    columns = ["application_id", "months_on_book", "balance", EVENT_TIME]
    statement = _loan_statements(settings, cases["application_id"], months, columns).rename(
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
    frame = _capped(frame, spec)
    if not with_labels:
        return _unlabelled(frame)
    statements = _later_statements(settings, frame["application_id"], months, as_of)
    events = _statement_events(statements, CURED_STATUSES, None)
    return _labelled_cases(frame, events, as_of, strategy_label(spec).window_months)


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
    frame[ENTITY_TIME] = utc_timestamps(frame[ENTITY_TIME]).dt.floor("us")
    keep = [spec.key, spec.entity, ENTITY_TIME, BATCH_ID, "eligible", "mature", "bad", *spec.request_features]
    if "application_id" not in keep and "application_id" in frame.columns:
        keep.insert(1, "application_id")
    keep += [c for c in ("decision",) if c in frame.columns]
    return frame[[c for c in dict.fromkeys(keep) if c in frame.columns]].reset_index(drop=True)
