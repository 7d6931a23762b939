"""The party's worker process: tasks in order, errors carried back, any main module, a dead worker named."""

from __future__ import annotations

import math
import subprocess
import sys
import time
import warnings
from pathlib import Path

import pytest

from orchard.worker import Worker


def test_tasks_run_in_order_and_errors_come_back_as_raised() -> None:
    # given a worker process
    with Worker() as worker:
        # when tasks are submitted, one of them failing
        futures = [worker.submit(math.factorial, n) for n in (5, 3, 10)]
        failing = worker.submit(math.factorial, -1)
        after = worker.submit(pow, 2, 10, 1000)
        printed = worker.submit(print, "a task's own output")  # goes to stderr, not into the answers
        # then each result comes back, the failure as the same exception, and the worker goes on
        assert [f.result() for f in futures] == [120, 6, 3628800], "results in order"
        with pytest.raises(ValueError, match="negative"):
            failing.result()
        assert after.result() == 24, "the worker survives a failed task"
        assert printed.result() is None and worker.submit(abs, -7).result() == 7, "printing breaks nothing"


def test_a_worker_that_died_is_named_in_the_error() -> None:
    # given a worker whose process was killed
    worker = Worker()
    worker._proc.kill()
    worker._proc.wait()
    # when a task is submitted, then the error says the worker process ended
    with pytest.raises(RuntimeError, match="the worker process ended"):
        worker.submit(abs, -1).result()
    worker.shutdown()


def test_a_worker_starts_from_a_script_read_from_stdin(tmp_path: Path) -> None:
    # given a parent program read from standard input (multiprocessing's spawn cannot re-import it)
    script = "from orchard.worker import Worker\nwith Worker() as w:\n    print(w.submit(sum, [1, 2, 3]).result())\n"
    root = Path(__file__).resolve().parents[2]
    # when it runs a task in a worker
    done = subprocess.run(
        [sys.executable, "-"], input=script, text=True, capture_output=True, cwd=root, timeout=60, check=False
    )
    # then the task's result comes back
    assert done.returncode == 0 and done.stdout.strip() == "6", f"rc {done.returncode}: {done.stderr[-500:]}"


class _NeedsTwoArguments(Exception):
    def __init__(self, what: str, why: str) -> None:
        super().__init__(f"{what}: {why}")


def _raise_unloadable() -> None:
    raise _NeedsTwoArguments("a month", "broken")


def _return_unpicklable() -> object:
    return lambda: None


def test_an_answer_that_cannot_be_sent_back_is_named() -> None:
    # given a worker, a task whose exception does not load back and one whose result does not pickle
    with Worker() as worker:
        # when they run, then each raises an error naming the task and what it gave, and the worker goes on
        with pytest.raises(
            RuntimeError, match=r"_raise_unloadable's error could not be sent back.*a month: broken"
        ):
            worker.submit(_raise_unloadable).result()
        with pytest.raises(RuntimeError, match="_return_unpicklable's result could not be sent back"):
            worker.submit(_return_unpicklable).result()
        assert worker.submit(abs, -3).result() == 3, "the worker survives"


def test_a_worker_that_dies_with_its_parent_is_gone_when_the_parent_is_killed(tmp_path: Path) -> None:
    # given a parent process with a worker that dies with it, busy with a long task
    script = (
        "import sys, time\nfrom orchard.worker import Worker\nw = Worker(die_with_parent=True)\n"
        "print(w.submit(__import__('os').getpid).result(), flush=True)\nw.submit(time.sleep, 60)\ntime.sleep(60)\n"
    )
    root = Path(__file__).resolve().parents[2]
    parent = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True, cwd=root)
    assert parent.stdout is not None
    worker_pid = int(parent.stdout.readline())
    # when the parent is killed (SIGKILL: no clean-up of its own)
    parent.kill()
    parent.wait()
    # then the worker does not finish its task for nobody: it is gone within seconds
    deadline = time.monotonic() + 10
    while Path(f"/proc/{worker_pid}").exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    status = Path(f"/proc/{worker_pid}/stat")
    assert not status.exists() or status.read_text().split()[2] == "Z", "the worker outlived its parent"


def test_a_task_runs_under_its_callers_warning_filters() -> None:
    # given a worker, and a caller that turns one kind of warning into errors and ignores another
    with Worker() as worker, warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)
        warnings.simplefilter("ignore", DeprecationWarning)
        # when tasks warn in the worker, then the worker applied the caller's filters
        with pytest.raises(UserWarning, match="as an error"):
            worker.submit(warnings.warn, "as an error", UserWarning).result()
        assert worker.submit(warnings.warn, "quiet", DeprecationWarning).result() is None


def test_what_a_task_imports_stays_quiet_even_if_it_changes_the_filters(
    capfd: pytest.CaptureFixture[str],
) -> None:
    # given a task from a module that puts an "always" filter in front while it is imported, then warns
    with warnings.catch_warnings(record=True):  # its import here records the warning instead of printing it
        from tests.noisy_import import quiet
    # when a worker runs it (the worker imports the module as it reads the task), then the task ran and the
    # worker printed nothing of the import's warning
    with Worker() as worker:
        assert worker.submit(quiet).result() == "ran"
    assert "imported noisily" not in capfd.readouterr().err


def test_a_worker_is_idle_only_when_every_task_submitted_has_finished() -> None:
    # given a worker process with nothing submitted
    with Worker() as worker:
        assert worker.idle
        # when a task is running, and another waits behind it, then it is not idle
        running = worker.submit(time.sleep, 0.5)
        waiting = worker.submit(abs, -3)
        assert not worker.idle
        running.result()
        assert waiting.result() == 3
        # and once both have finished it is idle again (the count drops as each future is done)
        deadline = time.monotonic() + 10
        while not worker.idle and time.monotonic() < deadline:
            time.sleep(0.01)
        assert worker.idle


def test_a_task_logs_under_its_callers_logger_levels(capfd: pytest.CaptureFixture[str]) -> None:
    import logging

    # given a logger this process quieted (as the CLI quiets the tools' and Orchard's own warnings)
    quiet, loud = logging.getLogger("orchard.test_quiet"), logging.getLogger("orchard_test_loud")
    before = quiet.level
    quiet.setLevel(logging.ERROR)
    try:
        with Worker() as worker:
            # when tasks in the worker log a warning on it, and on a logger left as it is
            worker.submit(quiet.warning, "a quieted warning").result()
            worker.submit(loud.warning, "a warning shown").result()
    finally:
        quiet.setLevel(before)
    # then only the warning on the logger left as it is reaches the terminal
    err = capfd.readouterr().err
    assert "a warning shown" in err and "a quieted warning" not in err, err
