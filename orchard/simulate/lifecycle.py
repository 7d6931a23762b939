"""The month-by-month engine: activity snapshots, applications, decisions and loan statements (no I/O)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

import numpy as np

from orchard.months import add_months, month_end, month_range, month_start
from orchard.simulate.campaigns import CampaignStream
from orchard.simulate.collection_actions import collection_actions, collections_generator
from orchard.simulate.lender import Columns, LegacyLender, Lender, checked_decisions
from orchard.simulate.macro import Macro, macro_at_stress, macro_for
from orchard.simulate.policy import legacy_decision, legacy_score
from orchard.simulate.population import Population, draw_population

COUNTERFACTUAL = "counterfactual_repayments"
"""The statements declined applications would have had if booked (the simulator's truth, never a source)."""

MONTHLY_RATE = 0.02
TERMS = (6, 12, 18, 24, 36)
TERM_WEIGHTS = (0.25, 0.35, 0.15, 0.15, 0.10)
LOAN_PURPOSES = ("consumption", "education", "medical", "business", "debt_consolidation")
PURPOSE_WEIGHTS_NORMAL = (0.45, 0.10, 0.10, 0.15, 0.20)
PURPOSE_WEIGHTS_SHOCK = (0.30, 0.08, 0.20, 0.17, 0.25)
CHANNELS = ("partner_app", "web", "branch")
CHANNEL_WEIGHTS = (0.70, 0.25, 0.05)
SHOCK_EMPLOYMENT = ("gig", "unemployed", "self_employed")
SHOCK_EMPLOYMENT_WEIGHTS = (0.4, 0.3, 0.3)
EMPLOYMENT_HAZARD = {"salaried": 0.0, "self_employed": 0.2, "gig": 0.3, "unemployed": 0.6, "student": 0.2}
CHARGE_OFF_MISSED = 6
"""Missed instalments (x 30 days) at which a loan is charged off: 180 dpd."""
DECLINE_COOLDOWN_MONTHS = 2
BASE_APPLY_LOGIT = -1.7
BASE_MISS_LOGIT = -4.2
SECONDS_PER_DAY = 86_400
NS_PER_SECOND = 1_000_000_000


def _sigmoid(x: np.ndarray | float) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-np.asarray(x, dtype=float)))


def annuity_instalment(principal: np.ndarray, term: np.ndarray, rate: float = MONTHLY_RATE) -> np.ndarray:
    """Return the constant monthly instalment that repays principal over term months at rate."""
    return principal * rate / (1.0 - (1.0 + rate) ** (-term.astype(float)))


def annuity_balance(
    principal: np.ndarray, instalment: np.ndarray, paid: np.ndarray, rate: float = MONTHLY_RATE
) -> np.ndarray:
    """Return the principal outstanding after `paid` instalments (never negative)."""
    growth = (1.0 + rate) ** paid.astype(float)
    return np.maximum(principal * growth - instalment * (growth - 1.0) / rate, 0.0)


@dataclass
class _LoanBook:
    """Open loans (the engine's only mutable state besides the users' history)."""

    application_id: np.ndarray = field(default_factory=lambda: np.empty(0, dtype=object))
    user: np.ndarray = field(default_factory=lambda: np.empty(0, dtype=np.int64))
    employment: np.ndarray = field(default_factory=lambda: np.empty(0, dtype=object))
    principal: np.ndarray = field(default_factory=lambda: np.empty(0))
    instalment: np.ndarray = field(default_factory=lambda: np.empty(0))
    term: np.ndarray = field(default_factory=lambda: np.empty(0, dtype=np.int64))
    booked: np.ndarray = field(default_factory=lambda: np.empty(0, dtype=np.int64))
    day: np.ndarray = field(default_factory=lambda: np.empty(0, dtype=np.int64))
    missed: np.ndarray = field(default_factory=lambda: np.empty(0, dtype=np.int64))
    paid: np.ndarray = field(default_factory=lambda: np.empty(0, dtype=np.int64))

    def append(self, **arrays: np.ndarray) -> None:
        for name, values in arrays.items():
            setattr(self, name, np.concatenate([getattr(self, name), values]))

    def keep(self, mask: np.ndarray) -> None:
        for name in self.__dataclass_fields__:
            setattr(self, name, getattr(self, name)[mask])


@dataclass
class _History:
    """What the platform remembers about each user between months."""

    late_bills: np.ndarray
    last_decline: np.ndarray
    charged_off: np.ndarray
    next_application: int = 0


def _user_income(pop: Population, macro: Macro) -> np.ndarray:
    """Return each user's true monthly income under the macro (the shock hits by employment)."""
    cut = (1.0 - macro.income_factor) * pop.income_sensitivity
    return pop.income * np.clip(1.0 - cut, 0.2, None)


def _late_bill_probability(pop: Population, macro: Macro) -> np.ndarray:
    return _sigmoid(-3.6 - 1.5 * pop.creditworthiness + 1.0 * macro.stress)


def _snapshot(
    pop: Population, history: _History, index: int, month: str, prev: Macro, rng: np.random.Generator
) -> tuple[Columns, np.ndarray]:
    """Draw last month's activity and return the snapshot of the users active in it (and the mask)."""
    n = pop.size
    history.late_bills[:, index % 12] = rng.random(n) < _late_bill_probability(pop, prev)
    tenure = index - pop.signup_offset_months
    active = (tenure >= 0) & (rng.random(n) < _sigmoid(pop.activity_logit) * prev.active_share_factor)
    day_share = np.clip(pop.engagement * prev.activity_factor, 0.01, 0.99)
    active_days = np.maximum(rng.binomial(30, day_share), 1)
    txn_count = rng.poisson(active_days * pop.txn_rate)
    income = _user_income(pop, prev)
    txn_amount = txn_count * income * pop.ticket_share * rng.gamma(5.0, 0.2, n)
    income_est = income * rng.lognormal(0.0, 0.2, n)
    ts = np.full(int(active.sum()), month_start(month).value, dtype=np.int64)
    snapshot = {
        "user_id": pop.user_id[active],
        "event_ts": ts,
        "age": np.floor(pop.age_at_start + index / 12.0).astype(np.int64)[active],
        "city_tier": pop.city_tier[active],
        "device_os": pop.device_os[active],
        "platform_tenure_months": tenure[active].astype(np.int64),
        "active_days_30d": active_days[active].astype(np.int64),
        "txn_count_30d": np.minimum(txn_count, 1000)[active].astype(np.int64),
        "txn_amount_30d": np.round(np.minimum(txn_amount, 1_000_000.0), 2)[active],
        "income_est_monthly": np.round(np.minimum(income_est, 1_000_000.0), 2)[active],
        "late_bill_payments_12m": history.late_bills.sum(axis=1).astype(np.int64)[active],
    }
    return snapshot, active


def _advance(
    pop: Population,
    book: _LoanBook,
    index: int,
    month: str,
    macro: Macro,
    rng: np.random.Generator,
    instalments: np.ndarray,
    own: np.ndarray,
) -> tuple[Columns, np.ndarray, np.ndarray]:
    """Advance every loan of a book booked before this month by one statement.

    A borrower's debt burden is `instalments` (per user, the real book's) plus `own` (per loan: what the loan
    adds that `instalments` does not hold). Return the statements, their borrowers' user numbers and the mask
    of loans charged off now (over the book before closed loans are dropped).
    """
    due = book.booked < index
    n = len(book.user)
    income = _user_income(pop, macro)
    burden = (instalments[book.user] + own) / income[book.user]
    z = pop.creditworthiness[book.user]
    employment_hazard = np.array([EMPLOYMENT_HAZARD[e] for e in book.employment], dtype=float)
    p_miss = _sigmoid(BASE_MISS_LOGIT - 1.9 * z + 1.5 * burden + employment_hazard + macro.hazard_shift)
    p_cure = _sigmoid(-1.0 + 0.8 * z - macro.hazard_shift)
    p_stay = 0.10
    u = rng.random(n)
    missed_before = book.missed.copy()
    remaining = book.term - book.paid
    amount_due = book.instalment * np.minimum(missed_before + 1, np.maximum(remaining, 1))
    current = missed_before == 0
    miss = np.where(current, u < p_miss, u >= p_cure + p_stay)
    cure = ~current & (u < p_cure)
    paid_count = np.where(miss, 0, np.where(cure, missed_before + 1, 1))
    paid_count = np.minimum(paid_count, np.maximum(remaining, 0))
    new_missed = np.where(miss, missed_before + 1, np.where(cure, 0, missed_before))
    new_paid = book.paid + paid_count
    # every instalment paid means nothing is owed, even if arrears were counted past maturity
    paid_off = new_paid >= book.term
    new_missed = np.where(paid_off, 0, new_missed)
    charged_off = new_missed >= CHARGE_OFF_MISSED
    status = np.where(
        paid_off,
        "paid_off",
        np.where(charged_off, "charged_off", np.where(new_missed > 0, "delinquent", "current")),
    ).astype(object)
    balance = np.where(paid_off, 0.0, annuity_balance(book.principal, book.instalment, new_paid))
    # a statement is due only for loans booked before this month; others keep their state
    book.missed = np.where(due, new_missed, book.missed)
    book.paid = np.where(due, new_paid, book.paid)
    day_ns = (book.day - 1) * SECONDS_PER_DAY * NS_PER_SECOND + 12 * 3600 * NS_PER_SECOND
    rows = {
        "application_id": book.application_id[due],
        "event_ts": (month_start(month).value + day_ns)[due],
        "user_id": pop.user_id[book.user[due]],
        "months_on_book": (index - book.booked)[due].astype(np.int64),
        "balance": np.round(balance, 2)[due],
        "amount_due": np.round(np.minimum(amount_due, 100_000.0), 2)[due],
        "amount_paid": np.round(np.minimum(paid_count * book.instalment, 100_000.0), 2)[due],
        "dpd": (30 * new_missed)[due].astype(np.int64),
        "status": status[due],
    }
    borrowers = book.user[due]
    closed = due & charged_off
    book.keep(~(due & (paid_off | charged_off)))
    return rows, borrowers, closed


def _statements(
    pop: Population,
    book: _LoanBook,
    shadow: _LoanBook,
    history: _History,
    index: int,
    month: str,
    macro: Macro,
    rng: np.random.Generator,
    shadow_rng: np.random.Generator,
) -> tuple[Columns, np.ndarray, Columns]:
    """Advance the book and the counterfactual book by one statement each.

    Return the real statements, their borrowers' user numbers and the counterfactual statements. A
    counterfactual loan (a declined application, as if booked) carries the borrower's real debts besides its
    own instalment, draws from its own generator and leaves the real world (history, book) untouched.
    """
    instalments = np.bincount(book.user, weights=book.instalment, minlength=pop.size)
    users = book.user.copy()
    rows, borrowers, charged_off = _advance(
        pop, book, index, month, macro, rng, instalments, np.zeros(len(users))
    )
    history.charged_off[users[charged_off]] = True
    counterfactual, _, _ = _advance(
        pop, shadow, index, month, macro, shadow_rng, instalments, shadow.instalment
    )
    return rows, borrowers, counterfactual


def _blend(normal: tuple[float, ...], shock: tuple[float, ...], weight: float) -> np.ndarray:
    p = (1.0 - weight) * np.array(normal) + weight * np.array(shock)
    return p / p.sum()


def _applications(
    pop: Population,
    book: _LoanBook,
    shadow: _LoanBook,
    history: _History,
    snapshot: Columns,
    active: np.ndarray,
    index: int,
    month: str,
    macro: Macro,
    rng: np.random.Generator,
    lender: Lender,
) -> Columns:
    """Draw this month's applications from last month's active users, have the lender decide them, book the
    approved and keep the declined as counterfactual loans (what they would have done if booked)."""
    n = pop.size
    open_loans = np.bincount(book.user, minlength=n)
    recently_declined = index - history.last_decline <= DECLINE_COOLDOWN_MONTHS
    p_apply = (
        _sigmoid(BASE_APPLY_LOGIT - 0.45 * pop.creditworthiness + macro.apply_shift)
        * 0.5**open_loans
        * np.where(recently_declined, 0.3, 1.0)
        * np.where(history.charged_off, 0.2, 1.0)
    )
    applies = active & (rng.random(n) < p_apply)
    users = np.flatnonzero(applies)
    k = len(users)
    start, end = month_start(month).value, month_end(month).value
    ts = start + rng.integers(0, (end - start) // NS_PER_SECOND, k) * NS_PER_SECOND
    switched = rng.random(k) < macro.mix_shift
    shock_employment = rng.choice(
        np.array(SHOCK_EMPLOYMENT, dtype=object), size=k, p=SHOCK_EMPLOYMENT_WEIGHTS
    )
    employment = np.where(switched, shock_employment, pop.employment[users]).astype(object)
    income = _user_income(pop, macro)[users] * np.where(switched & (employment == "unemployed"), 0.6, 1.0)
    declared = np.round(income * rng.lognormal(0.08, 0.2, k), 2)
    requested = declared * rng.lognormal(np.log(1.8), 0.5, k) * macro.amount_factor
    requested = np.clip(np.round(requested / 50.0) * 50.0, 100.0, 100_000.0)
    term = rng.choice(np.array(TERMS, dtype=np.int64), size=k, p=TERM_WEIGHTS)
    purpose = rng.choice(
        np.array(LOAN_PURPOSES, dtype=object),
        size=k,
        p=_blend(PURPOSE_WEIGHTS_NORMAL, PURPOSE_WEIGHTS_SHOCK, min(macro.stress, 1.0)),
    )
    channel = rng.choice(np.array(CHANNELS, dtype=object), size=k, p=CHANNEL_WEIGHTS)
    # the legacy rule sees what the platform knew at the start of the month (the snapshot)
    late = history.late_bills.sum(axis=1)[users]
    age = np.floor(pop.age_at_start[users] + index / 12.0)
    legacy = legacy_decision(legacy_score(declared, late, age, requested)) == "approved"
    order = np.argsort(ts, kind="stable")
    ids = np.array([f"A{history.next_application + i:08d}" for i in range(k)], dtype=object)
    history.next_application += k
    # ids follow event time, so every per-applicant array is put in time order
    users, ts, employment = users[order], ts[order], employment[order]
    declared, requested, term = declared[order], requested[order], term[order]
    purpose, channel, legacy = purpose[order], channel[order], legacy[order]
    applications = {
        "application_id": ids,
        "event_ts": ts,
        "user_id": pop.user_id[users],
        "requested_amount": requested,
        "term_months": term,
        "income_declared": declared,
        "employment_type": employment,
        "loan_purpose": purpose,
        "channel": channel,
    }
    approved = checked_decisions(month, lender.decide(month, dict(applications), snapshot, legacy), k)
    history.last_decline[users[~approved]] = index
    day = np.minimum((ts - start) // (SECONDS_PER_DAY * NS_PER_SECOND) + 1, 28).astype(np.int64)
    for target, chosen in ((book, approved), (shadow, ~approved)):
        target.append(
            application_id=ids[chosen],
            user=users[chosen].astype(np.int64),
            employment=employment[chosen],
            principal=requested[chosen],
            instalment=annuity_instalment(requested[chosen], term[chosen]),
            term=term[chosen],
            booked=np.full(int(chosen.sum()), index, dtype=np.int64),
            day=day[chosen],
            missed=np.zeros(int(chosen.sum()), dtype=np.int64),
            paid=np.zeros(int(chosen.sum()), dtype=np.int64),
        )
    decision = np.where(approved, "approved", "declined").astype(object)
    return {**applications, "decision": decision}


BURN_IN_MONTHS = 24


@dataclass(frozen=True)
class MonthFacts:
    """What the engine knew in a month beyond its three sources, for the side sources to read.

    Every array is a fresh copy aligned with a source's rows, so nothing a side source does with it can
    flow back into the engine.
    """

    stress: float
    open_loan_at_start: np.ndarray
    """Per partner_users row: the user had a loan open at the start of the month."""
    charged_off_at_start: np.ndarray
    """Per partner_users row: the user had a loan charged off before the month."""
    borrower_creditworthiness: np.ndarray
    """Per repayments row: the borrower's latent creditworthiness z."""


def engine_months(
    n_users: int, first: str, end: str, shock_month: str, seed: int, lender: Lender | None = None
) -> Iterator[tuple[str, dict[str, Columns], MonthFacts]]:
    """Yield (month, columns of the three engine sources and the counterfactual statements, facts) for
    every month from first to end; `lender` decides the applications (default: the legacy rule).

    The world is drawn from one Generator seeded with seed, in month order; the counterfactual loans from
    their own ([seed, 103]), so they never change it. The lender is asked and shown each month as it comes,
    so a lender that learns from the months already yielded decides the next one.
    """
    lender = lender or LegacyLender()
    shadow_rng = np.random.default_rng([seed, 103])
    rng = np.random.default_rng(seed)
    pop = draw_population(n_users, rng)
    normal = macro_at_stress(add_months(first, -1), 0.0)
    history = _History(
        late_bills=(rng.random((n_users, 12)) < _late_bill_probability(pop, normal)[:, None]).astype(np.int8),
        last_decline=np.full(n_users, -1_000, dtype=np.int64),
        charged_off=np.zeros(n_users, dtype=bool),
    )
    book, shadow = _LoanBook(), _LoanBook()
    for index, month in enumerate(month_range(first, end)):
        prev, now = macro_for(add_months(month, -1), shock_month), macro_for(month, shock_month)
        open_loan = np.bincount(book.user, minlength=n_users) > 0
        charged_off = history.charged_off.copy()
        snapshot, active = _snapshot(pop, history, index, month, prev, rng)
        repayments, borrowers, counterfactual = _statements(
            pop, book, shadow, history, index, month, now, rng, shadow_rng
        )
        applications = _applications(
            pop, book, shadow, history, snapshot, active, index, month, now, rng, lender
        )
        lender.observe(
            month, {"partner_users": snapshot, "applications": applications, "repayments": repayments}
        )
        facts = MonthFacts(
            stress=now.stress,
            open_loan_at_start=open_loan[active],
            charged_off_at_start=charged_off[active],
            borrower_creditworthiness=pop.creditworthiness[borrowers],
        )
        yield (
            month,
            {
                "partner_users": snapshot,
                "applications": applications,
                "repayments": repayments,
                COUNTERFACTUAL: counterfactual,
            },
            facts,
        )


def simulate_months(
    n_users: int,
    start: str,
    end: str,
    shock_month: str,
    seed: int,
    burn_in_months: int = BURN_IN_MONTHS,
    lender: Lender | None = None,
) -> Iterator[tuple[str, dict[str, Columns]]]:
    """Yield (month, columns per source) for every month from start to end, deterministically from seed.

    The lender is already running when the data starts: `burn_in_months` earlier months are simulated
    (loans booked, repaid, defaulted) but not yielded, so the book and the borrowers' histories are
    seasoned at `start` instead of every feature ramping up from an empty portfolio. Campaigns and
    collections are derived from each month's engine output with their own generators (burn-in months
    included), so they never change the engine's three sources.
    """
    campaigns = CampaignStream(seed)
    collections_rng = collections_generator(seed)
    first = add_months(start, -burn_in_months)
    for month, columns, facts in engine_months(n_users, first, end, shock_month, seed, lender):
        offers = campaigns.offers(
            month,
            columns["partner_users"],
            ~facts.open_loan_at_start & ~facts.charged_off_at_start,
            columns["applications"],
        )
        actions = collection_actions(
            columns["repayments"], facts.borrower_creditworthiness, facts.stress, month, collections_rng
        )
        if month >= start:
            yield month, {**columns, "campaigns": offers, "collections": actions}
