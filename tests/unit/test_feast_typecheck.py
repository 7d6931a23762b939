"""Feast imported without typeguard's instrumentation (orchard.feast_typecheck), and only before Feast is loaded."""

from __future__ import annotations

import subprocess
import sys
import textwrap

PROBE = textwrap.dedent(
    """
    {before}
    import feast.on_demand_feature_view as m
    names = m.OnDemandFeatureView.__init__.__code__.co_names
    print("instrumented" if "typeguard" in names else "plain")
    from orchard.feast_typecheck import skip_feast_typechecks
    print(skip_feast_typechecks())
    """
)


def _probe(before: str) -> list[str]:
    done = subprocess.run(
        [sys.executable, "-W", "ignore", "-c", PROBE.format(before=before)],
        capture_output=True,
        text=True,
        check=True,
    )
    return done.stdout.split()


def test_feast_classes_are_instrumented_without_the_call() -> None:
    # Given a process that imports Feast as it is, Then typeguard rewrote its classes (the cost removed), and a
    # later call reports it came too late
    assert _probe("") == ["instrumented", "False"]


def test_the_call_before_feast_leaves_its_classes_plain() -> None:
    # Given a process that calls skip_feast_typechecks before importing Feast (as the CLI, the lane and the tests'
    # workers do), Then Feast's classes are its own code, and the call took effect
    before = "from orchard.feast_typecheck import skip_feast_typechecks; assert skip_feast_typechecks()"
    assert _probe(before) == ["plain", "False"]
