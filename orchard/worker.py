"""A worker process: work run beside the caller on another core, one task at a time.

Used by a federated party for CPU-only arithmetic (gmpy2 and `cryptography` hold the GIL while they compute, so a
second core needs a second process) and by the lifecycle for the work it runs beside its own steps
(orchard.lifecycle.tools.Tools.lane). `Worker` starts `python -m orchard.worker` and talks to it over its stdin
and stdout: a request is a pickled (warning filters, logger levels, pickled (function, arguments)), an answer a
pickled (ok, value or exception), each behind its 8-byte length: a task runs under its caller's warning filters
and logger levels.
multiprocessing's spawn would import the parent's main module again (a benchmark, a notebook, a script read
from stdin, where it fails); this process imports only what the functions need (about 0.3 s to start). Pickle is
safe here: both ends are the same program's processes, on a private pipe.
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import os
import pickle
import signal
import struct
import subprocess
import sys
import threading
import time
import warnings
from collections.abc import Callable
from concurrent.futures import Executor, Future, ThreadPoolExecutor
from typing import IO, Any

_LENGTH = struct.Struct("<Q")
_PR_SET_PDEATHSIG = 1


def _read_exactly(stream: IO[bytes], size: int) -> bytes | None:
    chunks, left = [], size
    while left:
        chunk = stream.read(left)
        if not chunk:
            return None
        chunks.append(chunk)
        left -= len(chunk)
    return b"".join(chunks)


def _write(stream: IO[bytes], value: Any) -> None:
    payload = pickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL)
    stream.write(_LENGTH.pack(len(payload)) + payload)
    stream.flush()


class InPlace(Executor):
    """An executor that runs each task when it is submitted, in the caller's thread: the lane of a run that
    has no second process."""

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Future[Any]:
        """Run fn(*args, **kwargs) now; return its result or error as a completed future."""
        future: Future[Any] = Future()
        try:
            future.set_result(fn(*args, **kwargs))
        except Exception as exc:
            future.set_exception(exc)
        return future


class Worker(Executor):
    """One worker process; tasks run in the order submitted, their results come back as futures."""

    def __init__(self, *, die_with_parent: bool = False) -> None:
        """Start the process. `die_with_parent`: the kernel kills it when the thread that starts it ends, this
        process killed included (Linux; create it on the main thread), so a task is never left running for a
        parent that is gone; otherwise a worker ends at its next read, once its running task is done."""
        command = [sys.executable, "-m", "orchard.worker"]
        if die_with_parent:
            command += ["--die-with", str(os.getpid())]
        self._proc = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        self._io = ThreadPoolExecutor(max_workers=1, thread_name_prefix="worker-io")
        self._lock = threading.Lock()
        self._unfinished = 0

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Future[Any]:
        """Run fn(*args, **kwargs) in the worker process (fn and its arguments must pickle)."""
        with self._lock:
            self._unfinished += 1
        future = self._io.submit(self._call, fn, args, kwargs)
        future.add_done_callback(self._finished)
        return future

    def _finished(self, _: Future[Any]) -> None:
        with self._lock:
            self._unfinished -= 1

    @property
    def idle(self) -> bool:
        """Whether every task submitted so far has finished (one submitted now would start at once)."""
        with self._lock:
            return self._unfinished == 0

    def _call(self, fn: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        stdin, stdout = self._proc.stdin, self._proc.stdout
        if stdin is None or stdout is None:
            raise RuntimeError("the worker process has no pipes")
        try:
            # the task runs under this process's warning filters and logger levels as they are now (a CLI quiets
            # the tools' chatter)
            task = pickle.dumps((fn, args, kwargs), protocol=pickle.HIGHEST_PROTOCOL)
            _write(stdin, (_filters(), _levels(), task))
            header = _read_exactly(stdout, _LENGTH.size)
            body = None if header is None else _read_exactly(stdout, _LENGTH.unpack(header)[0])
        except OSError:  # a broken pipe: the process is gone
            body = None
        if body is None:
            raise RuntimeError(f"the worker process ended (exit code {self._proc.poll()})")
        ok, value = pickle.loads(body)  # noqa: S301 - our own child process, on a private pipe
        if not ok:
            raise value
        return value

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        """Stop taking tasks, let the running one finish, then end the process."""
        self._io.shutdown(wait=True, cancel_futures=cancel_futures)
        if self._proc.stdin is not None:
            with contextlib.suppress(OSError):  # (a broken pipe: it is gone already)
                self._proc.stdin.close()  # end of input: the process exits
        try:
            self._proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self._proc.kill()
            self._proc.wait()
        if self._proc.stdout is not None:
            self._proc.stdout.close()

    def close(self) -> None:
        """Stop the worker: tasks not started are dropped, a running one is finished and its result dropped."""
        self.shutdown(wait=True, cancel_futures=True)


def timed(fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> tuple[Any, float]:
    """Return fn(*args, **kwargs) and the seconds it took, measured where it ran (a task's own time, without
    the time it waited behind others in a worker)."""
    start = time.perf_counter()
    value = fn(*args, **kwargs)
    return value, round(time.perf_counter() - start, 4)


def _filters() -> list[tuple[Any, ...]]:
    """Return this process's warning filters, as filterwarnings' arguments (a pattern compiled or as given)."""
    return [
        (
            action,
            getattr(message, "pattern", message) or "",
            category,
            getattr(module, "pattern", module) or "",
            line,
        )
        for action, message, category, module, line in warnings.filters
    ]


def _levels() -> dict[str, int]:
    """Return the levels this process's loggers were set to (the root logger's under ""), by name."""
    loggers = logging.Logger.manager.loggerDict.items()
    levels = {name: lg.level for name, lg in loggers if isinstance(lg, logging.Logger) and lg.level}
    return {**levels, "": logging.getLogger().level}


def _unshown(*_: object, **__: object) -> None:
    """Show no warning (what a task's imports warn of while they load)."""


def serve(requests: IO[bytes], answers: IO[bytes]) -> None:
    """Answer requests until the input ends."""
    while (header := _read_exactly(requests, _LENGTH.size)) is not None:
        body = _read_exactly(requests, _LENGTH.unpack(header)[0])
        if body is None:
            return
        filters, levels, task = pickle.loads(body)  # noqa: S301 - our own parent process, on a private pipe
        for name, level in levels.items():
            logging.getLogger(name or None).setLevel(level)
        with warnings.catch_warnings():
            # what the task's function imports is imported quietly (libraries warn, and add filters, as they load:
            # Feast puts DeprecationWarning to "once" in front of the ignore, so nothing is shown at all), then the
            # task runs under its caller's filters
            warnings.simplefilter("ignore")
            shown = warnings.showwarning
            warnings.showwarning = _unshown
            fn, args, kwargs = pickle.loads(task)  # noqa: S301 - as above
            warnings.showwarning = shown
            warnings.resetwarnings()
            for action, message, category, module, lineno in reversed(filters):
                warnings.filterwarnings(action, message, category, module, lineno)
            try:
                answer = (True, fn(*args, **kwargs))
            except Exception as exc:  # the parent re-raises it
                answer = (False, exc)
        try:
            payload = pickle.dumps(answer, protocol=pickle.HIGHEST_PROTOCOL)
            if not answer[0]:  # an exception whose class needs other arguments pickles but does not load back
                pickle.loads(payload)  # noqa: S301 - our own answer
        except Exception as exc:  # the parent gets an error that names what could not be sent back
            what = "error" if not answer[0] else "result"
            problem = RuntimeError(
                f"{fn.__qualname__}'s {what} could not be sent back ({exc!r}): {answer[1]!r}"
            )
            payload = pickle.dumps((False, problem), protocol=pickle.HIGHEST_PROTOCOL)
        answers.write(_LENGTH.pack(len(payload)) + payload)
        answers.flush()


def die_with(parent: int) -> None:
    """Have the kernel kill this process when its parent ends (Linux's PR_SET_PDEATHSIG); exit if it has."""
    if sys.platform.startswith("linux"):
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
    if os.getppid() != parent:  # it ended before the request took effect
        os._exit(1)


if __name__ == "__main__":
    from orchard.feast_typecheck import skip_feast_typechecks

    skip_feast_typechecks()  # the lifecycle's lane imports Feast with its first task
    if sys.argv[1:2] == ["--die-with"]:
        die_with(int(sys.argv[2]))
    answers = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)  # whatever a library prints goes to stderr, never into the answers
    serve(sys.stdin.buffer, answers)
