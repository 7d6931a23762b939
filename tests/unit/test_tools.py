"""The run's tools: one object the edge opens and closes, no state left in the process."""

from __future__ import annotations

import pandas as pd

from orchard.lifecycle.tools import JOINED_KEEP, Tools


def test_a_join_is_made_once_per_key_and_only_the_recent_ones_are_kept() -> None:
    tools = Tools()
    made: list[int] = []

    def make(i: int) -> pd.DataFrame:
        made.append(i)
        return pd.DataFrame({"x": [i]})

    # Given a join asked twice / Then it is made once
    first = tools.joined_frame(("k", 0), lambda: make(0))
    assert tools.joined_frame(("k", 0), lambda: make(0)) is first and made == [0]
    # Given more distinct joins than are kept / Then the least recently used ones go, the recent ones stay
    for i in range(1, JOINED_KEEP + 2):
        tools.joined_frame(("k", i), lambda i=i: make(i))
    assert len(tools.joined) == JOINED_KEEP
    assert ("k", 0) not in tools.joined and ("k", JOINED_KEEP + 1) in tools.joined


def test_closing_the_tools_leaves_nothing_behind_and_runs_share_nothing() -> None:
    # Given two runs' tools, one holding a join, a loaded model and a train key
    with Tools() as run:
        run.joined_frame(("k",), lambda: pd.DataFrame({"x": [1]}))
        run.models[("uri", "m", 1)] = object()
        run.train_keys[("uri", "m", 1)] = "m@2019-07"
        other = Tools()
        # Then the other run sees none of it
        assert not other.joined and not other.models and not other.train_keys
    # And when the run ends everything it held is dropped
    assert not run.joined and not run.models and not run.train_keys
