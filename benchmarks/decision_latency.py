"""Benchmark: decision latency in process and over HTTP, next to Feast's own get_online_features.

Run: python -m benchmarks.decision_latency [--seconds 30] [--rps 100] [--clients 16] [--home PATH]
[--before CHECKOUT] [--workers 1 2]. Without --home it builds the small serving home of the integration tests in a
temporary folder (~1-2 minutes). Side by side, on the same customers: (1) Feast `get_online_features` for the
application_pd_v1 service (the baseline), (2) the in-process decision (Feast read + both champions + policy +
durable log write), (3) POST /v1/decisions/application to a real server in its own process group on loopback,
for the code of --before (e.g. a checkout of main) and for this code at each worker count: at a fixed request
rate (open loop; latency from each request's scheduled send time, so falling behind counts), then at saturation
(closed loop, --clients callers) with decisions/s, the server's CPU cores used (from /proc), decisions per core-
second, and /health latency probed while saturated.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

GOAL_IN_PROCESS_P99_MS = 3.0
GOAL_HTTP_P99_MS = 15.0
WORKERS = 8


def _percentiles(seconds: list[float]) -> dict[str, float]:
    ms = np.asarray(seconds) * 1e3
    return {"p50": float(np.percentile(ms, 50)), "p99": float(np.percentile(ms, 99)), "max": float(ms.max())}


def _settings(home: Path) -> Any:
    from orchard.testing.serving_home import serving_settings

    return serving_settings(home)


def _bodies(settings: Any, n: int) -> list[dict[str, Any]]:
    from orchard.testing.serving_home import applications

    return applications(settings, n=n)


def measure_feast(settings: Any, bodies: list[dict[str, Any]], n: int) -> list[float]:
    """Return the latency of Feast's own get_online_features (+ to_dict) per customer."""
    from orchard.feature_store import open_store
    from orchard.model_specs import model_spec

    store = open_store(settings)
    service = store.get_feature_service(model_spec(settings.portfolio_def, "application_pd").feature_service)
    timings = []
    for i in range(n + 200):
        started = time.perf_counter()
        store.get_online_features(
            features=service, entity_rows=[{"user_id": bodies[i % len(bodies)]["customer_id"]}]
        ).to_dict()
        if i >= 200:  # warm-up excluded
            timings.append(time.perf_counter() - started)
    return timings


def measure_in_process(settings: Any, bodies: list[dict[str, Any]], n: int) -> list[float]:
    """Return the latency of the in-process decision (what the route does after validation)."""
    from pydantic import SecretStr

    from orchard.serving.app import decide_application_request, start_runtime
    from orchard.serving.schemas import application_request
    from orchard.settings import ServingConfig

    config = ServingConfig(api_key=SecretStr("bench"), champion_poll_seconds=3600)
    runtime = start_runtime(settings, config)
    served = runtime.portfolio
    assert served.pd_model is not None, "the benchmark decides with the portfolio's decision block"
    request_model = application_request(served.pd_model, served.columns)
    validated = [request_model.model_validate(b).model_dump() for b in bodies]
    timings = []
    try:
        for i in range(n + 200):
            started = time.perf_counter()
            decide_application_request(runtime, validated[i % len(validated)])
            if i >= 200:
                timings.append(time.perf_counter() - started)
    finally:
        runtime.close()
    return timings


def _serve(home: Path, port: int, key: str) -> None:
    """Serve the API on loopback with create_app (how the code before this change had to be served)."""
    import uvicorn
    from pydantic import SecretStr

    from orchard.serving.app import create_app
    from orchard.settings import ServingConfig

    app = create_app(_settings(home), config=ServingConfig(api_key=SecretStr(key)))
    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning", access_log=False)


class Server:
    """A decision API in its own process (group) on loopback: one code tree, one worker count."""

    def __init__(self, home: Path, code: Path | None, workers: int) -> None:
        from orchard.ports import free_port
        from orchard.testing.serving_home import API_KEY, container_command, server_env

        self.port, self.key = free_port(), API_KEY
        self.url = f"http://127.0.0.1:{self.port}"
        settings = _settings(home)
        if code is None:  # this tree: the container's command, several workers if asked
            command, env, cwd = container_command(self.port, workers), server_env(settings), None
        else:  # an older tree (e.g. main before this change): its own benchmark's one-worker server
            command = [
                sys.executable,
                "-m",
                "benchmarks.decision_latency",
                "--serve",
                "--home",
                str(home),
                "--port",
                str(self.port),
                "--key",
                self.key,
            ]
            env, cwd = {**server_env(settings), "PYTHONPATH": str(code)}, str(code)
        self.process = subprocess.Popen(command, env=env, cwd=cwd, start_new_session=True)

    def wait_ready(self) -> None:
        """Wait until /ready answers 200."""
        import httpx

        deadline = time.monotonic() + 300  # several workers each load the tools: minutes on a busy machine
        while True:
            try:
                if httpx.get(f"{self.url}/ready", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline or self.process.poll() is not None:
                raise RuntimeError("the API server did not become ready")
            time.sleep(0.2)

    def cpu_seconds(self) -> float:
        """Return the CPU seconds (user + system) used so far by the server's process group."""
        total = 0.0
        for stat in Path("/proc").glob("[0-9]*/stat"):
            try:
                fields = stat.read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[2]) == self.process.pid:  # field 5 (pgrp): start_new_session made pid the group id
                total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
        return total

    def stop(self) -> None:
        """Stop the server's whole process group (SIGKILL if it has not stopped within 30 s)."""
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGTERM)
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=30)


def _post(client: Any, body: dict[str, Any]) -> bool:
    import httpx

    try:
        return client.post("/v1/decisions/application", json=body).status_code == 200
    except httpx.HTTPError:
        return False


def measure_http(
    server: Server, bodies: list[dict[str, Any]], seconds: float, rps: float
) -> tuple[list[float], int]:
    """Return per-request latency (from the scheduled send time) and the error count at a fixed rate."""
    import httpx

    total = int(seconds * rps)
    latencies: list[float] = []
    errors = [0]
    lock = threading.Lock()
    start = time.perf_counter() + 0.5

    def worker(offset: int) -> None:
        with httpx.Client(base_url=server.url, headers={"X-API-Key": server.key}, timeout=5) as client:
            for i in range(offset, total, WORKERS):
                scheduled = start + i / rps
                delay = scheduled - time.perf_counter()
                if delay > 0:
                    time.sleep(delay)
                ok = _post(client, bodies[i % len(bodies)])
                with lock:
                    latencies.append(time.perf_counter() - scheduled)
                    errors[0] += 0 if ok else 1

    threads = [threading.Thread(target=worker, args=(k,)) for k in range(WORKERS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return latencies, errors[0]


def measure_saturation(
    server: Server, bodies: list[dict[str, Any]], seconds: float, clients: int
) -> dict[str, float]:
    """Closed loop with `clients` concurrent callers for `seconds`; /health probed 10x a second meanwhile."""
    import httpx

    latencies: list[float] = []
    health: list[float] = []
    errors = [0]
    lock = threading.Lock()
    stop = threading.Event()

    def caller(offset: int) -> None:
        with httpx.Client(base_url=server.url, headers={"X-API-Key": server.key}, timeout=10) as client:
            i = offset
            while not stop.is_set():
                started = time.perf_counter()
                ok = _post(client, bodies[i % len(bodies)])
                with lock:
                    if ok:
                        latencies.append(time.perf_counter() - started)
                    else:
                        errors[0] += 1
                i += clients

    def prober() -> None:
        with httpx.Client(base_url=server.url, timeout=10) as client:
            while not stop.wait(0.1):
                started = time.perf_counter()
                client.get("/health")
                health.append(time.perf_counter() - started)

    threads = [threading.Thread(target=caller, args=(k,)) for k in range(clients)]
    threads.append(threading.Thread(target=prober))
    cpu_before, wall_before = server.cpu_seconds(), time.perf_counter()
    for thread in threads:
        thread.start()
    time.sleep(seconds)
    stop.set()
    for thread in threads:
        thread.join()
    wall, cpu = time.perf_counter() - wall_before, server.cpu_seconds() - cpu_before
    figures = _percentiles(latencies)
    health_figures = _percentiles(health)
    return {
        "decisions_per_s": len(latencies) / wall,
        "server_cores": cpu / wall,
        "decisions_per_core_s": len(latencies) / cpu if cpu > 0 else float("nan"),
        "p50": figures["p50"],
        "p99": figures["p99"],
        "health_p50": health_figures["p50"],
        "health_p99": health_figures["p99"],
        "health_max": health_figures["max"],
        "errors": errors[0],
    }


def measure_server(
    home: Path, code: Path | None, workers: int, bodies: list[dict[str, Any]], args: argparse.Namespace
) -> dict[str, float]:
    """Return the fixed-rate and saturation figures of one server (code tree, worker count)."""
    import httpx

    server = Server(home, code, workers)
    try:
        server.wait_ready()
        with httpx.Client(base_url=server.url, headers={"X-API-Key": server.key}, timeout=5) as warm:
            for body in bodies[:50]:
                _post(warm, body)
        fixed, errors = measure_http(server, bodies, args.seconds, args.rps)
        fixed_figures = _percentiles(fixed)
        saturated = measure_saturation(server, bodies, args.seconds, args.clients)
    finally:
        server.stop()
    return {
        "rate_p50": fixed_figures["p50"],
        "rate_p99": fixed_figures["p99"],
        "rate_errors": errors,
        **saturated,
    }


def main() -> None:
    """Run the measurements side by side (before/after code, worker counts) and print the figures."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--home", type=Path, help="a serving home to reuse (built if absent)")
    parser.add_argument("--seconds", type=float, default=30.0, help="duration of each HTTP run")
    parser.add_argument("--rps", type=float, default=100.0, help="request rate of the fixed-rate run")
    parser.add_argument("--clients", type=int, default=16, help="concurrent callers of the saturation run")
    parser.add_argument("--requests", type=int, default=3000, help="in-process and Feast iterations")
    parser.add_argument("--before", type=Path, help="a checkout of the code to compare with (e.g. main)")
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2], help="worker counts of this code")
    parser.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--key", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        _serve(args.home, args.port, args.key)
        return

    from orchard.testing.serving_home import build_serving_home, tool_env

    home = args.home or Path(tempfile.mkdtemp(prefix="orchard-bench-")) / "home"
    settings, _ = build_serving_home(home)  # the small lifecycle, run in its own process
    with tool_env(settings):
        bodies = _bodies(settings, 200)
        feast = _percentiles(measure_feast(settings, bodies, args.requests))
        in_process = _percentiles(measure_in_process(settings, bodies, args.requests))
        servers = [(f"after, {w} worker(s)", None, w) for w in args.workers]
        if args.before is not None:
            servers.insert(0, (f"before ({args.before.name}), 1 worker", args.before, 1))
        runs = []
        for name, code, workers in servers:
            runs.append((name, measure_server(home, code, workers, bodies, args)))
            print(
                name, {k: round(v, 2) for k, v in runs[-1][1].items()}, flush=True
            )  # kept if a later run fails
    print(
        f"decision latency (home {home}; {len(bodies)} real applicants; {os.cpu_count()} cores shared with the "
        "load generator)"
    )
    print(f"{'in process':<34}{'p50 ms':>9}{'p99 ms':>9}{'max ms':>9}")
    for name, figures in (
        ("Feast get_online_features", feast),
        ("decision (Feast+2 models+log)", in_process),
    ):
        print(f"{name:<34}{figures['p50']:>9.3f}{figures['p99']:>9.3f}{figures['max']:>9.3f}")
    print(
        f"\nover HTTP: {args.rps:.0f} req/s for {args.seconds:.0f} s, then saturation with {args.clients} callers "
        f"for {args.seconds:.0f} s and /health probed every 0.1 s"
    )
    header = [
        "server",
        "p99@rate",
        "err",
        "dec/s",
        "cores",
        "dec/s/core",
        "p50 sat",
        "p99 sat",
        "health p99",
        "health max",
        "err",
    ]
    print(f"{header[0]:<30}" + "".join(f"{h:>11}" for h in header[1:]))
    for name, r in runs:
        values = [
            r["rate_p99"],
            r["rate_errors"],
            r["decisions_per_s"],
            r["server_cores"],
            r["decisions_per_core_s"],
            r["p50"],
            r["p99"],
            r["health_p99"],
            r["health_max"],
            r["errors"],
        ]
        print(f"{name:<30}" + "".join(f"{v:>11.1f}" if isinstance(v, float) else f"{v:>11d}" for v in values))
    print(
        f"goals: HTTP p99 <= {GOAL_HTTP_P99_MS} ms at {args.rps:.0f} req/s; /health < 50 ms while saturated"
    )


if __name__ == "__main__":
    main()
