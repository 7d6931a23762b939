"""Unit tests of the history-based contract: batch profiles, learnt bounds, and the contract block of a portfolio."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from orchard.contracts.bounds import History, bound, learn_checks, robust_centre
from orchard.contracts.expectations import judge
from orchard.contracts.profile import batch_profile, format_profile_columns, parse_profile_columns
from orchard.errors import OrchardError
from orchard.portfolio.load import parse_portfolio
from orchard.portfolio.spec import ContractDef

COLUMNS = [["amount", "number"], ["colour", "category"], ["ref", "text"]]


def _batch(n: int, seed: int, scale: float = 1.0, red: float = 0.5) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame(
        {
            "amount": rng.lognormal(7.0, 0.5, n) * scale,
            "colour": np.where(rng.random(n) < red, "red", "blue"),
            "ref": [f"R{seed}-{i}" if i % 5 else None for i in range(n)],
        }
    )


def _history(batches: list[pd.DataFrame]) -> History:
    records = tuple({"profile": batch_profile(df, COLUMNS)} for df in batches)
    return History(tuple(f"toy-2019-{i + 1:02d}" for i in range(len(batches))), records)


def test_profile_counts_by_hand() -> None:
    # Given a 4-row batch
    df = pd.DataFrame(
        {"amount": [1.0, 2.0, 3.0, None], "colour": ["red", "red", "blue", "red"], "ref": list("abca")}
    )
    # When it is profiled
    profile = batch_profile(df, COLUMNS)
    # Then completeness, distinct values, mean, deviation and shares are those computed by hand
    amount = profile["columns"]["amount"]
    assert profile["rows"] == 4
    assert amount["null_share"] == 0.25 and amount["distinct"] == 3 and amount["values"] == 3
    assert amount["mean"] == 2.0 and amount["std"] == pytest.approx(1.0) and amount["p50"] == 2.0
    assert profile["columns"]["colour"]["shares"] == {"blue": 0.25, "red": 0.75}
    assert profile["columns"]["ref"]["unique_ratio"] == 0.75


def test_profile_columns_round_trip_as_text() -> None:
    assert parse_profile_columns(format_profile_columns(COLUMNS)) == COLUMNS


def test_robust_centre_ignores_one_odd_month() -> None:
    centre, spread = robust_centre([10.0, 11.0, 9.0, 10.0, 1000.0])
    assert centre == 10.0 and spread == pytest.approx(1.4826)


def test_no_history_checks_before_min_history_and_the_note_says_so() -> None:
    # Given two accepted batches and a contract needing three
    learnt = learn_checks(COLUMNS, {"ref"}, [], _history([_batch(500, 1), _batch(500, 2)]), ContractDef())
    # Then nothing is learnt and the note says the contract is the schema only
    assert not learnt.applied and not learnt.checks
    assert "schema contract only" in learnt.note and "2 accepted" in learnt.note


def test_a_clean_batch_passes_and_a_unit_shift_fails_the_scale_check() -> None:
    # Given six accepted batches of one population
    learnt = learn_checks(COLUMNS, {"ref"}, [], _history([_batch(500, s) for s in range(6)]), ContractDef())
    assert learnt.applied
    clean, shifted = (
        batch_profile(_batch(500, 99), COLUMNS),
        batch_profile(_batch(500, 99, scale=100), COLUMNS),
    )
    # When a new clean batch and the same batch x100 are judged
    # Then the clean one is inside every bound, and the shifted one breaks the mean and deviation of amount
    for kind in ("scale", "distribution", "variety", "row_count", "completeness"):
        assert judge(learnt.checks[kind], clean, 5.0)["breaches"] == [], kind
    breaches = judge(learnt.checks["scale"], shifted, 5.0)["breaches"]
    assert {(b["column"], b["metric"]) for b in breaches} == {("amount", "mean"), ("amount", "std")}
    assert "history: median" in breaches[0]["message"] and "outside" in breaches[0]["message"]


def test_a_population_shift_only_moves_the_distribution_not_the_scale() -> None:
    # Given six accepted batches, and a batch whose amounts are 30% lower and with more red
    learnt = learn_checks(COLUMNS, set(), [], _history([_batch(2000, s) for s in range(6)]), ContractDef())
    moved = batch_profile(_batch(2000, 99, scale=0.7, red=0.7), COLUMNS)
    # Then the scale check (severity fail) passes and the distribution check (warn) names mean and share
    assert judge(learnt.checks["scale"], moved, 5.0)["breaches"] == []
    metrics = {b["metric"] for b in judge(learnt.checks["distribution"], moved, 5.0)["breaches"]}
    assert "mean" in metrics and "share[red]" in metrics


def test_bounds_widen_for_a_small_batch() -> None:
    # Given one learnt check of a mean
    check = {"centre": 100.0, "spread": 0.0, "unit_sd": 50.0, "floor": 0.0, "factor": 1.0, "side": "both"}
    # Then its bound at 10 rows is wider than at 10,000 rows, by the sampling error of the mean
    small, large = bound(check, 10, 5.0), bound(check, 10_000, 5.0)
    assert small[1] - small[0] > 10 * (large[1] - large[0])
    assert small[1] == pytest.approx(100.0 + 5.0 * 50.0 / math.sqrt(10))


def test_a_near_empty_or_constant_column_is_skipped_not_checked() -> None:
    # Given a history where amount is zero except in a handful of rows (a sparse column of a young lake)
    batches = []
    for s in range(4):
        df = _batch(200, s)
        df.loc[df.index[5:], "amount"] = 0.0
        batches.append(df)
    learnt = learn_checks(COLUMNS, set(), [], _history(batches), ContractDef())
    # Then no scale or distribution bound is learnt for it, and it is listed as skipped
    assert not [c for c in learnt.checks["scale"] if c["column"] == "amount"]
    assert any(s.startswith("amount:") for s in learnt.skipped)


def test_a_column_that_always_varied_may_not_become_constant() -> None:
    learnt = learn_checks(COLUMNS, set(), [], _history([_batch(500, s) for s in range(4)]), ContractDef())
    constant = _batch(500, 9).assign(colour="red")
    breaches = judge(learnt.checks["variety"], batch_profile(constant, COLUMNS), 5.0)["breaches"]
    assert [(b["column"], b["metric"]) for b in breaches] == [("colour", "distinct")]


def test_row_count_half_missing_fails_and_a_shock_sized_rise_passes() -> None:
    learnt = learn_checks(COLUMNS, set(), [], _history([_batch(1000, s) for s in range(6)]), ContractDef())
    (check,) = learnt.checks["row_count"]
    low, high = (math.exp(v) for v in bound(check, 1000, 5.0))
    assert low > 500, "half the rows missing must break the bound"
    assert high > 1500, "a 50% rise (the demo's shock) must stay inside"


PORTFOLIO = """
name: toy
sources:
  loans:
    landing: {path: "loans/{period}.csv"}
    key: [loan]
    event_time: at
    columns:
      loan: {type: string}
      at: {type: timestamp}
      paid: {type: float}
    rules: ["paid >= 0"]
"""


@pytest.mark.parametrize(
    ("block", "message"),
    [
        (
            "    contract: {severity: {scale: loud}}",
            r"sources\.loans\.contract\.severity\.scale: Input should be",
        ),
        ("    contract: {windw: 3}", r"unknown key 'windw' at sources\.loans\.contract\.windw"),
        ("    contract: {severity: {vibes: warn}}", r"sources\.loans\.contract\.severity\.vibes"),
        ("    contract: {ignore_columns: [nope]}", r"column 'nope' is not among the source's columns"),
        ("    contract: {tolerance: -1}", r"sources\.loans\.contract\.tolerance"),
    ],
)
def test_a_bad_contract_block_is_one_line_naming_the_key(block: str, message: str) -> None:
    with pytest.raises(OrchardError, match=message) as info:
        parse_portfolio(PORTFOLIO + block + "\n", Path("."))
    assert "\n" not in str(info.value)


def test_a_rule_that_calls_code_is_refused() -> None:
    text = PORTFOLIO.replace('["paid >= 0"]', "[\"__import__('os')\"]")
    with pytest.raises(OrchardError, match=r"sources\.loans\.rules: expression .* may only compare"):
        parse_portfolio(text, Path("."))


def test_contract_severities_default_and_override() -> None:
    contract = ContractDef(severity={"distribution": "fail"})
    assert contract.severity_of("distribution") == "fail"
    assert contract.severity_of("scale") == "fail" and ContractDef().severity_of("distribution") == "warn"


def test_foreign_key_orphans_follow_a_run_off_but_a_rekeying_fails() -> None:
    # Given a history whose orphan share runs off month by month (loans booked before the lake began)
    batches = [_batch(800, s) for s in range(6)]
    records = tuple(
        {"profile": batch_profile(df, COLUMNS), "orphan_share": {"ref": share}}
        for df, share in zip(batches, [0.9, 0.8, 0.7, 0.6, 0.5, 0.4], strict=True)
    )
    history = History(tuple(f"toy-2019-{i + 1:02d}" for i in range(6)), records)
    (check,) = learn_checks(COLUMNS, set(), ["ref"], history, ContractDef()).checks["foreign_keys"]
    # Then next month's lower share passes, and every key missing (a re-keyed column) breaks the bound
    low, high = bound(check, 800, 5.0)
    assert low == -math.inf and 0.35 < high < 1.0, (low, high)
    assert "last 0.4" in check["history"]


def test_a_gradual_population_move_is_followed_by_the_scale_check() -> None:
    # Given amounts that grew 40% a month for five months (a real, gradual change of the population)
    batches = [_batch(1000, s, scale=1.4**s) for s in range(6)]
    learnt = learn_checks(COLUMNS, set(), [], _history(batches), ContractDef())
    # Then the next month's further 40% passes the scale check, and a x100 unit change does not
    following = batch_profile(_batch(1000, 42, scale=1.4**6), COLUMNS)
    assert judge(learnt.checks["scale"], following, 5.0)["breaches"] == []
    assert judge(learnt.checks["scale"], batch_profile(_batch(1000, 42, scale=100), COLUMNS), 5.0)["breaches"]
