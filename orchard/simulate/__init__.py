"""The seeded lifecycle simulator: monthly partner-user snapshots, applications, repayments, marketing
campaigns and collections.

`simulate(settings)` writes `landing/<source>/<YYYY-MM>.parquet` for partner_users, applications,
repayments, campaigns and collections, for every month from settings.start_month to settings.end_month
(SimulationRun writes them month by month, as the lifecycle reaches each month).
The first three are drawn from one numpy Generator seeded with settings.seed; campaigns and collections
each from a private one (seeded [seed, 101] and [seed, 102]) that only reads the month's engine output,
so adding them left the first three byte-identical. All are consumed month by month (burn-in included),
so the same settings give the same bytes, and a shorter run is the prefix of a longer one (with the same
start month).

The generative story
--------------------
Population. settings.simulation.n_users partner-platform users. Each has a latent creditworthiness z ~ N(0, 1) that
nothing observes directly, and traits correlated with it: age (18-75 at the start, ageing with the
calendar), city_tier, device_os (iOS more likely for higher z and tier-1 cities), a monthly income
(log-normal, median ~2500, +0.5 z, city and age effects), a base employment (salaried more likely for
higher z, students are young), platform engagement. 85% of users signed up before the start (tenure up
to 8 years); the rest join during the first three years. Platform tenure grows by one each month.

Seasoned book. The lender is already running when the data starts: the first 24 months before
settings.start_month are simulated (loans booked, repaid, defaulted) but not written, so the 2019-01
repayments already carry loans booked in 2017-2018 and borrowers' histories are at a steady state instead
of every credit-history feature ramping up from an empty portfolio (which monitoring would flag as drift).

Activity snapshots (partner_users). Each month a user is active with a personal probability (~70%);
only active users appear in that month's snapshot. The snapshot's event_ts is the 1st of its month,
00:00 UTC, and describes the previous 30 days: active_days_30d, txn_count_30d, txn_amount_30d,
income_est_monthly (the true income with ~20% noise) and late_bill_payments_12m (a rolling 12-month
count of late bills, monthly probability sigmoid(-3.6 - 1.5 z + stress)).

Applications. Each month ~13% of last month's active users apply (more for lower z and under stress;
less with loans already open, after a decline in the last two months, or after a charge-off). Each
application has requested_amount (~1.8x declared income, log-normal), term_months (6/12/18/24/36),
income_declared (true income, inflated ~8% with 20% noise), employment_type, loan_purpose and channel;
event_ts is uniform inside the month. application_id is 'A' + an 8-digit counter in time order, unique
across all months. Users re-apply later (after a decline, or while and after repaying), so applicants
build a credit history of previous loans.

Decision. The engine asks its lender (lender.py) which of the month's applications to book, showing it the
applications and the month's snapshot, and shows it every source once the month is over. The incumbent policy,
and the default lender, is a legacy rule score (points for log declared income and age, minus 15 per late bill
payment and 10 per unit of amount-to-income) with a fixed cut-off that approves ~55-63% in normal times (see
policy.py). The lifecycle (`orchard demo`) closes the loop: its lender decides with Orchard's champion from the
month after the first promotion (orchard.lifecycle.lender), so the models learn from loans their own decisions
booked. Approved applications are booked loans; declined applicants have no outcome in the data.

Counterfactual truth. A declined application becomes a counterfactual loan, advanced every month exactly as a
booked one would be (the borrower's real debts plus its own instalment in the burden) from its own generator
([seed, 103]), so it never changes the world. Its statements are the simulator's truth of what the declined
would have done (written beside the landing files, never a source): orchard.lifecycle.selection_bias measures
booked-only training and reject inference against it.

Repayments. Every booked loan gets a monthly statement from months_on_book=1 (the month after booking)
until it is paid off, charged off or the simulation ends: amount_due (annuity instalment at 2% a
month, plus arrears), amount_paid, dpd (30 per missed instalment; a cure pays the arrears and resets
dpd to 0), balance (principal outstanding) and status (current / delinquent / charged_off at 180 dpd /
paid_off). A current loan misses a payment with probability
sigmoid(-4.2 - 1.9 z + 1.5 x debt burden + employment + macro hazard); a delinquent one cures, pays one
instalment or rolls further, worse for low z and under stress. Outcomes are therefore known only after
the performance window: the downstream label is "90+ DPD within 6 months of booking".

Shock. From settings.simulation.shock_month a macro stress path (0.6 at onset, 1.0 for the next two months, then
decaying with a 10-month time constant, ~0.15 left 20 months after the peak) lowers incomes by up to
30% (more for gig and self-employed, less for salaried), platform activity by 40% and the active share
by 20%, shifts the applicant mix (up to 35% of applicants declare gig/unemployed/self-employed,
requested amounts +40%, more medical and debt-consolidation purposes), and raises the default hazard.
Measured at the defaults (n_users=12000, 2019-01..2021-12, seeds 7/8/11): ~1000-1400 applications a month
(a spike to ~1500-1650 at the shock's peak), 6-month 90+DPD bad rate 6.3-6.5% for bookings 2019-01..07,
1.9-2.0x that for bookings 2020-02..06; a logistic regression on the month's snapshot plus application
fields trained on 2019-01..06 bookings has out-of-time AUC 0.74-0.76 on 2019-07..09; its score PSI on each
month's applications stays <= 0.035 in 2019 and reaches 0.32-0.43 in 2020-04, when income and activity
features exceed 0.25 too.

Campaigns. Each month the lender sends a pre-approved offer (campaign 'CMP-YYYY-MM') to a random 30% of the
month's snapshot users who have no loan open at the start of the month and no loan ever charged off; offers
go out on the 1st between 09:00 and 17:00 UTC by push (50%), sms (30%) or in-app (20%), for 1.5x the
platform's income estimate (rounded to 50, 100..100000). offer_id is 'O' + a 9-digit counter in send-time
order. A targeted user has responded when they applied in the offer's month, and application_id is that
application. The simulator models no uplift: who applies is the engine's draw alone, with or without an
offer, so `responded` measures the eligible users' propensity to apply, not the offer's effect (and ~2% of
responses are applications made on the 1st before the offer went out). Measured at the defaults (seeds
7/8/11): 910-1300 offers a month (median ~1070), response rate 18.7-19.2% (~16% a month in 2019, ~29% at the
shock's peak), 6.3-6.6% of offers responded and approved (33-35% of responses approved), and offered users
make ~20% of all applications.

Collections. Every delinquent or charged-off statement gets one collection action 1-10 days after the
statement (capped at the month's last day, 23:00 UTC): sms at 30 dpd, call at 60, field visit at 90-120,
agency at 150, write-off for the charged-off statement (180 dpd). amount_overdue is the statement's amount
due minus amount paid. The contact result (no_contact / promise_to_pay / refused / dispute) is drawn from a
multinomial logit: better z promises to pay more and refuses less, stress and deeper arrears leave more
borrowers out of reach. It is informative about cure (the same z drives it) without causing it: the
borrower's payments are the engine's draw alone. A write-off recovers balance x rate, rate ~ Beta with mean
sigmoid(logit(0.35) + 0.5 z - 0.8 stress) and a + b = 6; the balance of a charged-off statement is the
principal still outstanding after the instalments actually paid (no accrued interest or fees), i.e. the
exposure at default. Measured at the defaults (seeds 7/8/11): 470-1730 rows a month (median ~660, the peak
at the shock), actions sms 27% / call 21% / field visit 32% / agency 12% / write-off 9%; promise_to_pay 23%
of contacts (26-27% in 2019, 14-15% in 2020-03..05), and the next statement is current for 16-17% of
promise_to_pay rows against 11-12% of no_contact ones; mean recovery rate 0.24-0.25 (median ~0.21; ~0.28 in
2019, ~0.21-0.22 in 2020) since written-off borrowers have low z.

Deliberate corruption. For each 'source:YYYY-MM' in settings.simulation.corrupt_batches the batch is written with
defects a data contract must catch, on disjoint random rows (1% of rows each, at least 3): null ids (the
source's first key column), negative amounts (applications.requested_amount,
partner_users.income_est_monthly, repayments.amount_paid, campaigns.offer_amount,
collections.amount_overdue), a value outside the category domain (applications.employment_type='contractor',
partner_users.city_tier='tier9', repayments.status='frozen', campaigns.offer_channel='fax',
collections.action='prison'), event_ts moved 40 days outside the month, and duplicated keys (exact copies of
rows). Columns and dtypes stay right, so the file is readable. An unknown source raises OrchardError before
anything is written; a month outside the simulated range is not written and is listed in
SimulationSummary.skipped_corruptions.

Silent corruption. For each 'source:YYYY-MM' in settings.simulation.silent_corrupt_batches (default applications:2020-10)
the batch keeps its schema, domains and keys but carries the source's corruption in
orchard.simulate.corrupt.SILENT_CORRUPTION (every application declined; two amounts swapped; delinquent
statements marked current; user ids re-keyed; every collection action 'sms'): only contracts that learn from
history, check foreign keys or cross-field rules catch it. It is deterministic (no random draw), reported in
SimulationSummary.silent_corruptions, and not written outside the simulated months.
"""

from __future__ import annotations

from orchard.simulate.corrupt import CorruptionReport
from orchard.simulate.run import SimulationSummary, landing_path, simulate

__all__ = ["CorruptionReport", "SimulationSummary", "landing_path", "simulate"]
