"""The order a period's batches are checked in comes from the foreign keys, not from the portfolio's listing."""

from __future__ import annotations

from orchard.contracts.waves import validation_waves


def test_a_source_is_checked_after_the_sources_its_foreign_keys_point_to() -> None:
    # Given the demo's shape listed children first
    targets = {
        "collections": ["applications"],
        "campaigns": ["partner_users", "applications"],
        "repayments": ["applications"],
        "applications": ["partner_users"],
        "partner_users": [],
    }
    # Then the parents come first, and the sources of a wave keep the listing's order
    assert validation_waves(targets) == [
        ["partner_users"],
        ["applications"],
        ["collections", "campaigns", "repayments"],
    ]


def test_sources_without_foreign_keys_share_the_first_wave() -> None:
    assert validation_waves({"b": [], "a": [], "c": ["a"]}) == [["b", "a"], ["c"]]


def test_a_key_pointing_at_its_own_source_or_outside_the_portfolio_orders_nothing() -> None:
    assert validation_waves({"users": ["users"], "loans": ["users", "bureau"]}) == [["users"], ["loans"]]


def test_a_cycle_is_broken_at_the_first_source_listed_and_every_source_is_taken_once() -> None:
    # Given a -> b -> c -> a, and d pointing into the cycle
    targets = {"d": ["b"], "b": ["c"], "a": ["b"], "c": ["a"]}
    waves = validation_waves(targets)
    # Then the cycle is broken at b (the first of its sources listed), and d follows b
    assert waves == [["b"], ["d", "a"], ["c"]]
    assert sorted(s for wave in waves for s in wave) == sorted(targets)


def test_no_sources_no_waves() -> None:
    assert validation_waves({}) == []
