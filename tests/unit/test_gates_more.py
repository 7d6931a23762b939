"""Unit tests of the full challenger gate (each check passing and failing) and the pure governance helpers."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import pytest

from model_registry.gates import (
    GateInputs,
    GatePolicy,
    auto_promotable,
    calibration_bands,
    calibration_check,
    challenger_gate,
    discrimination_check,
    fairness_check,
    gate_dict,
    gate_tags,
    improvement_check,
    stability_check,
)
from model_registry.governance import champion_lineage, check_history, gate_refusal, parse_moment
from model_registry.history import AliasEvent, event_in_force_at, event_in_force_by_month
from orchard.errors import OrchardError

WINDOW = "2020-01..2020-02"
T0 = datetime(2024, 1, 1, 12, tzinfo=UTC)


def sample(n: int = 2000, seed: int = 3) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Return labels drawn from a calibrated strong PD, that PD, and a weaker noisy PD."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=n)
    strong = 1 / (1 + np.exp(-(-2.0 + 1.2 * x)))
    y = (rng.random(n) < strong).astype(int)
    weak = 1 / (1 + np.exp(-(-2.0 + 0.6 * x + rng.normal(0, 0.7, n))))
    return y, strong, weak


def inputs(**overrides: object) -> GateInputs:
    """Build gate inputs where the challenger is the strong calibrated PD and the champion the weak one."""
    y, strong, weak = sample()
    values: dict[str, object] = {
        "window": WINDOW,
        "y": y,
        "challenger_pd": strong,
        "champion_pd": weak,
        "champion_version": 1,
        "challenger_version": 2,
        "score_psi": 0.05,
    }
    values.update(overrides)
    return GateInputs(**values)  # type: ignore[arg-type]


def test_a_better_stable_calibrated_challenger_is_eligible_and_auto_promotable() -> None:
    # given a challenger better, stable and calibrated
    # when the full gate runs
    result = challenger_gate(inputs(), GatePolicy())
    # then it is eligible, beats the margin, and every check is in the record
    assert result.passed and result.figures["auto_promotable"], result.reasons
    assert [c.name for c in result.checks] == [
        "discrimination",
        "stability",
        "calibration",
        "fairness",
        "improvement",
    ]
    assert result.reasons[0].startswith("eligible on 2020-01..2020-02"), result.reasons[0]
    assert gate_dict(result)["checks"][0]["figures"]["delta_auc"] > 0.05, "AUC gain belongs in the figures"
    assert gate_tags(result, WINDOW)["orchard.gate.check.calibration"] == "passed"


def test_discrimination_fails_when_auc_drops_more_than_the_margin() -> None:
    # given the weak model as challenger against the strong champion
    _y, strong, weak = sample()
    check = discrimination_check(
        inputs(challenger_pd=weak, champion_pd=strong), GatePolicy(max_auc_drop=0.01)
    )
    # then the check fails and says the AUC is worse than the allowed drop
    assert not check.passed and check.figures["delta_auc"] < -0.01, check.figures
    assert "worse than the allowed drop 0.010" in check.reasons[0], check.reasons


def test_discrimination_fails_on_ks_alone_when_the_auc_drop_is_tolerated() -> None:
    # given a tolerant AUC margin but no KS drop allowed
    _y, strong, weak = sample()
    policy = GatePolicy(max_auc_drop=1.0, max_ks_drop=0.0)
    check = discrimination_check(inputs(challenger_pd=weak, champion_pd=strong), policy)
    # then the AUC line passes but the KS line fails the check
    assert not check.passed, check.reasons
    assert "within" in check.reasons[0] and "KS" in check.reasons[1] and "worse than" in check.reasons[1]


def test_discrimination_without_champion_passes_and_reports_the_challenger() -> None:
    check = discrimination_check(inputs(champion_pd=None, champion_version=None), GatePolicy())
    assert check.passed and "no champion yet" in check.reasons[0], check.reasons


@pytest.mark.parametrize(
    ("psi", "passed", "text"),
    [
        (0.0999, True, "score PSI 0.100 < limit 0.100"),
        (0.10, False, ">= limit 0.100"),
        (None, False, "unproven"),
    ],
)
def test_stability_passes_strictly_below_the_limit(psi: float | None, passed: bool, text: str) -> None:
    # given a score PSI just below, at, or missing against a limit of 0.10
    check = stability_check(inputs(score_psi=psi), GatePolicy(max_score_psi=0.10))
    # then only a PSI strictly below the limit passes; a missing PSI cannot prove stability
    assert check.passed is passed and text in check.reasons[0], check.reasons


def test_calibration_fails_when_pd_understates_the_bad_rate() -> None:
    # given PDs halved: every band's observed bad rate is about twice its expected rate
    _y, strong, _ = sample()
    check = calibration_check(inputs(challenger_pd=strong / 2), GatePolicy(calibration_bands=5))
    # then calibration fails and the figures say which bands are out
    assert not check.passed, check.reasons
    bands = check.figures["bands"]
    assert len(bands) == 5 and sum(not b["passed"] for b in bands) >= 3, bands
    assert all(b["observed"] > b["expected"] for b in bands), "halved PDs understate every band"
    assert "outside" in check.reasons[1], check.reasons


def test_calibration_passes_a_calibrated_model_and_allows_for_small_band_noise() -> None:
    # given the calibrated PD on the full window and on a 60-row slice
    y, strong, _ = sample()
    full = calibration_check(inputs(), GatePolicy())
    small = calibration_check(
        inputs(y=y[:60], challenger_pd=strong[:60], champion_pd=None, champion_version=None), GatePolicy()
    )
    # then both pass; the small sample's bands get a wider allowance (binomial noise)
    assert full.passed and small.passed, (full.reasons, small.reasons)
    assert small.figures["bands"][-1]["allowed"] > full.figures["bands"][-1]["allowed"]


def test_fairness_figures_on_a_hand_built_example() -> None:
    # given group A with the four lowest PDs and group B the four highest, approving 50 %
    y = np.array([0, 0, 1, 0, 1, 0, 1, 1])
    p = np.array([0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8])
    groups = np.array(["A"] * 4 + ["B"] * 4, dtype=object)
    policy = GatePolicy(approval_rate=0.5, min_group_size=2, fairness_enforced=True)
    check = fairness_check(
        GateInputs(WINDOW, y, p, groups=groups, group_name="age_band", score_psi=0.0), policy
    )
    # then A is fully approved, B not at all; the gap is 1, the impact ratio 0; enforced, the check fails
    figures = check.figures
    assert figures["cutoff_pd"] == 0.4 and figures["approval_rate_gap"] == 1.0, figures
    assert figures["groups"]["A"]["approval_rate"] == 1.0 and figures["groups"]["B"]["approval_rate"] == 0.0
    assert figures["adverse_impact_ratio"] == 0.0 and figures["groups"]["A"]["auc"] == pytest.approx(2 / 3)
    assert not check.passed and check.required, check.reasons


def test_fairness_reported_but_not_enforced_does_not_block_and_absent_attribute_is_noted() -> None:
    # given a large approval gap between groups, fairness not enforced
    _y, strong, _weak = sample()
    groups = np.where(strong > np.median(strong), "older", "younger")
    result = challenger_gate(inputs(groups=groups), GatePolicy(fairness_enforced=False))
    fairness = next(c for c in result.checks if c.name == "fairness")
    # then the figures show the gap, the check fails, but eligibility does not depend on it
    assert not fairness.passed and not fairness.required and result.passed, fairness.reasons
    assert result.figures["approval_rate_gap"] > 0.5, result.figures
    # and when enforced the same challenger is not eligible
    assert not challenger_gate(inputs(groups=groups), GatePolicy(fairness_enforced=True)).passed
    # and without a protected attribute the check says so
    assert "no protected attribute" in fairness_check(inputs(), GatePolicy()).reasons[0]


def test_small_groups_are_reported_but_left_out_of_the_gaps() -> None:
    y, _strong, _ = sample()
    groups = np.array(["main"] * (len(y) - 5) + ["tiny"] * 5, dtype=object)
    check = fairness_check(inputs(groups=groups), GatePolicy(min_group_size=30))
    assert check.figures["groups"]["tiny"]["n"] == 5 and check.figures["approval_rate_gap"] is None, (
        check.figures
    )
    assert check.passed, check.reasons


def test_eligible_but_not_improving_needs_a_person() -> None:
    # given a challenger equal to the champion (no AUC gain), all else fine
    _y, strong, _ = sample()
    result = challenger_gate(inputs(champion_pd=strong), GatePolicy(margin_auc=0.005))
    # then it is eligible but not auto-promotable, and the summary says a person must approve
    assert result.passed and not auto_promotable(result), result.reasons
    assert "only a person may approve it" in result.reasons[0], result.reasons[0]
    assert not auto_promotable({"passed": True, "reasons": []}), "a gate without its checks proves no gain"
    assert not auto_promotable({"passed": False}), "a failed gate never is"


@pytest.mark.parametrize(("margin", "improves"), [(0.25, True), (0.2500001, False)])
def test_a_gain_exactly_at_the_margin_improves_despite_float_noise(margin: float, improves: bool) -> None:
    # Given a challenger AUC of 1.0 and a champion AUC of 0.75 on the same four cases (a gain of exactly 0.25)
    y = np.array([0, 0, 1, 1])
    gate = inputs(
        y=y, challenger_pd=np.array([0.1, 0.2, 0.3, 0.4]), champion_pd=np.array([0.1, 0.4, 0.35, 0.8])
    )
    # When the improvement is checked against the margin
    check = improvement_check(gate, GatePolicy(margin_auc=margin))
    # Then a gain equal to the margin counts (float noise is rounded away), one just below it does not
    assert check.figures["delta_auc"] == 0.25 and check.passed is improves, check.reasons


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"challenger_pd": np.full(10, 0.1)}, "has 10 rows but the labels have 2000"),
        ({"window": " "}, "out-of-time window"),
        ({"champion_pd": None}, "without its PDs"),
        ({"score_psi": float("nan")}, "finite non-negative PSI"),
    ],
)
def test_bad_inputs_raise_naming_the_problem(overrides: dict[str, object], message: str) -> None:
    with pytest.raises(OrchardError, match=message):
        inputs(**overrides)


def test_bad_policies_and_pds_are_refused() -> None:
    with pytest.raises(OrchardError, match="approval_rate must lie in"):
        GatePolicy(approval_rate=1.0)
    with pytest.raises(OrchardError, match="max_auc_drop must be a finite non-negative"):
        GatePolicy(max_auc_drop=-0.1)
    with pytest.raises(OrchardError, match=r"probabilities in \[0, 1\]"):
        challenger_gate(inputs(challenger_pd=np.full(2000, 1.5)), GatePolicy())


# --- pure governance helpers --------------------------------------------------------------------------------


def event(
    id_: int,
    version: int,
    previous: int | None,
    action: str = "promote",
    month: str = "2020-01",
    minutes: int = 0,
) -> AliasEvent:
    """Build a champion alias event."""
    return AliasEvent(
        id_,
        "m",
        "champion",
        version,
        previous,
        action,
        "r",
        "a",
        None,
        month,
        T0 + timedelta(minutes=minutes),
    )


def test_gate_refusal_cases() -> None:
    passed = {
        "passed": True,
        "figures": {"champion_version": 1},
        "checks": [{"name": "stability", "passed": True}],
    }
    assert gate_refusal(None, 1, "person") == "it has no recorded gate result"
    # a gate that ran no checks proves nothing (behaviour changed: it used to count as passed)
    assert "ran no checks" in (gate_refusal({**passed, "checks": []}, 1, "person") or "")
    assert "gate failed: worse" in (gate_refusal({"passed": False, "reasons": ["worse"]}, 1, "person") or "")
    assert gate_refusal(passed, 1, "person") is None, "a passing gate against the current champion allows it"
    assert "champion is now v3: re-run the gate" in (gate_refusal(passed, 3, "person") or "")
    not_better = {**passed, "checks": [*passed["checks"], {"name": "improvement", "passed": False}]}
    assert gate_refusal(not_better, 1, "person") is None and "person must approve" in (
        gate_refusal(not_better, 1, "policy") or ""
    )


def test_champion_lineage_walks_back_through_rollbacks() -> None:
    # given promotions 1, 2, 3, a rollback to 2, a promotion of 4, a rollback to 2
    events = [
        event(1, 1, None),
        event(2, 2, 1),
        event(3, 3, 2),
        event(4, 2, 3, "rollback"),
        event(5, 4, 2),
        event(6, 2, 4, "rollback"),
    ]
    # then the chain a rollback walks is 1, 2 (3 and 4 were rolled back)
    assert champion_lineage(events) == [1, 2], champion_lineage(events)
    assert champion_lineage(events[:3]) == [1, 2, 3]


def test_check_history_finds_divergence_chain_breaks_and_backdating() -> None:
    good = [event(1, 1, None, month="2020-01"), event(2, 2, 1, month="2020-03")]
    assert check_history(good, 2).ok
    assert not check_history(good, 1).ok, "alias differing from the last event must be flagged"
    broken = [event(1, 1, None), event(2, 3, 2)]
    assert any("moved outside Orchard" in p for p in check_history(broken, 3).problems)
    backdated = [event(1, 1, None, month="2020-05"), event(2, 2, 1, month="2020-03")]
    assert any("back-dated" in p for p in check_history(backdated, 2).problems)


def test_in_force_by_time_and_month_between_changes() -> None:
    events = [event(1, 1, None, month="2019-07", minutes=0), event(2, 2, 1, month="2020-02", minutes=10)]
    assert event_in_force_at(events, T0 - timedelta(seconds=1)) is None
    assert event_in_force_at(events, T0 + timedelta(minutes=5)).version == 1  # type: ignore[union-attr]
    assert event_in_force_at(events, T0 + timedelta(minutes=10)).version == 2  # type: ignore[union-attr]
    assert event_in_force_by_month(events, "2019-06") is None
    assert event_in_force_by_month(events, "2020-01").version == 1  # type: ignore[union-attr]


def test_parse_moment() -> None:
    assert parse_moment(None) == ("now", None)
    assert parse_moment("2020-03") == ("month", "2020-03")
    kind, end_of_day = parse_moment("2024-01-01")
    assert kind == "time" and end_of_day == datetime(2024, 1, 1, 23, 59, 59, 999999, tzinfo=UTC)
    assert parse_moment("2024-01-01T12:00:00")[1] == T0, "a naive datetime is UTC"
    with pytest.raises(OrchardError, match="invalid moment"):
        parse_moment("yesterday")
    with pytest.raises(OrchardError, match="invalid month"):
        parse_moment("2020-13")


def test_a_constant_pd_is_one_calibration_band() -> None:
    # Given a model that predicts the same PD for everyone (a tree with no split on a tiny sample)
    table = calibration_bands(np.array([0, 1, 0, 0]), np.full(4, 0.2), 5)
    # Then the gate still sees one band: every row, expected 0.2, observed 0.25
    assert table[["n", "expected", "observed"]].values.tolist() == [[4, 0.2, 0.25]]
