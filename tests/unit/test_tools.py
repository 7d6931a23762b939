"""The run's tools: one object the edge opens and closes, no state left in the process."""

from __future__ import annotations

import dataclasses
import math
import os
import time
from pathlib import Path

import pandas as pd
import pytest

from orchard.lifecycle.tools import JOINED_KEEP, Tools
from orchard.worker import InPlace, Worker


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


def test_the_month_joins_come_first_then_the_recent_joins_the_latest_first() -> None:
    tools = Tools()
    joins = [object() for _ in range(JOINED_KEEP + 2)]
    tools.month_joins[("v",)] = joins[0]  # type: ignore[assignment]
    for join in joins[1:]:
        tools.keep_join(join)  # type: ignore[arg-type]
    assert tools.kept_joins() == [joins[0], *reversed(joins[-JOINED_KEEP:])]


def test_closing_the_tools_leaves_nothing_behind_and_runs_share_nothing() -> None:
    # Given two runs' tools, one holding a join, a loaded model and a train key
    with Tools() as run:
        run.joined_frame(("k",), lambda: pd.DataFrame({"x": [1]}))
        run.keep_join(object())  # type: ignore[arg-type]
        run.models[("uri", "m", 1)] = object()
        run.train_keys[("uri", "m", 1)] = "m@2019-07"
        other = Tools()
        # Then the other run sees none of it
        assert not other.joined and not other.models and not other.train_keys
    # And when the run ends everything it held is dropped
    assert not run.joined and not run.recent_joins and not run.models and not run.train_keys


def test_prefect_does_not_walk_the_tools_caches_when_they_are_a_task_parameter() -> None:
    from prefect.utilities.collections import visit_collection

    # Given a run's tools holding loaded models (a dataclass each: Prefect walks a dataclass field by field)
    @dataclasses.dataclass
    class Model:
        weights: list[float]

    tools = Tools()
    tools.models[("uri", "m", 1)] = Model([0.1, 0.2])
    seen: list[object] = []
    # When Prefect looks for futures in a task's parameters as it does for every task call
    visit_collection({"tools": tools}, visit_fn=lambda x: seen.append(x) or x, return_data=False)
    # Then the tools are one value to it: nothing they hold is visited
    assert any(x is tools for x in seen)
    assert not any(isinstance(x, Model) for x in seen) and 0.1 not in seen


def test_the_lane_is_one_other_process_started_on_first_use_and_stopped_with_the_run() -> None:
    # Given a run's tools with a lane process
    with Tools(lane_process=True) as run:
        assert run._lane is None, "no process before it is asked for"
        # When work is given to its lane twice
        lane = run.lane()
        pids = {lane.submit(os.getpid).result(), run.lane().submit(os.getpid).result()}
        # Then it ran in one process, not this one
        assert len(pids) == 1 and os.getpid() not in pids
        assert isinstance(lane, Worker)
        process = lane._proc
    # And the process is gone when the run ends
    assert run._lane is None and process.poll() is not None


def test_work_left_behind_runs_beside_the_run_and_its_error_comes_back_when_the_run_settles(
    tmp_path: Path,
) -> None:
    # Given a run with a lane process, work left behind: a wait, a write and a failing call
    run = Tools(lane_process=True)
    run.behind("wait", time.sleep, 0.3)
    run.behind("write", Path.write_text, tmp_path / "written", "done")
    assert not (tmp_path / "written").exists(), "the run went on without waiting"
    run.behind("fail", math.factorial, -1)
    # When the run settles, then the write is done and the failure is raised
    with pytest.raises(ValueError, match="negative"):
        run.settle()
    assert (tmp_path / "written").read_text() == "done"
    # And nothing is left to settle, and closing stops the lane
    run.settle()
    run.close()


def test_a_run_closed_after_an_error_still_finishes_its_work_left_behind(tmp_path: Path) -> None:
    # Given a run that fails with work left behind
    def failing_run() -> None:
        with Tools(lane_process=True) as run:
            run.behind("wait", time.sleep, 0.3)
            run.behind("write", Path.write_text, tmp_path / "written", "done")
            raise RuntimeError("a stage failed")

    with pytest.raises(RuntimeError, match="a stage failed"):
        failing_run()
    # Then the work was finished before the lane stopped, and the stage's error is the one raised
    assert (tmp_path / "written").exists()


def test_without_a_lane_process_work_runs_in_place_and_raises_at_once(tmp_path: Path) -> None:
    # Given one-off tools (no lane process)
    tools = Tools()
    # When work is left behind, then it has run already, here
    tools.behind("write", Path.write_text, tmp_path / "written", "done")
    assert (tmp_path / "written").read_text() == "done"
    assert isinstance(tools.lane(), InPlace)
    # And a failure is raised to the caller at once
    with pytest.raises(ValueError, match="negative"):
        tools.behind("fail", math.factorial, -1)
