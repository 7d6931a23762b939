"""Benchmark: decision latency in process and over HTTP, next to Feast's own get_online_features.

Run: python -m benchmarks.decision_latency [--seconds 60] [--rps 100] [--home PATH]. Without --home it builds
the small serving home of the integration tests in a temporary folder (~1-2 minutes). Side by side, on the
same customers: (1) Feast `get_online_features` for the application_pd_v1 service (the baseline), (2) the
in-process decision (Feast read + both champions + policy + log append), (3) POST /v1/decisions/application
to a real uvicorn in a separate process on loopback at a fixed request rate (open loop; latency is measured
from each request's scheduled send time, so falling behind counts).
"""

from __future__ import annotations

import argparse
import secrets
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
    from tests.integration.serving_home import serving_settings

    return serving_settings(home)


def _bodies(settings: Any, n: int) -> list[dict[str, Any]]:
    from tests.integration.serving_home import applications

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
    from orchard.serving.config import ServingConfig
    from orchard.serving.schemas import application_request

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
    """Serve the API on loopback (the child process of the HTTP measurement)."""
    import uvicorn
    from pydantic import SecretStr

    from orchard.serving.app import create_app
    from orchard.serving.config import ServingConfig

    app = create_app(_settings(home), config=ServingConfig(api_key=SecretStr(key)))
    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning", access_log=False)


def measure_http(
    home: Path, bodies: list[dict[str, Any]], seconds: float, rps: float
) -> tuple[list[float], int]:
    """Return per-request latency (from the scheduled send time) and the error count at a fixed rate."""
    import httpx

    from tests.integration.serving_home import free_port

    port, key = free_port(), secrets.token_hex(16)
    server = subprocess.Popen(
        [sys.executable, "-m", "benchmarks.decision_latency", "--serve", "--home", str(home),
         "--port", str(port), "--key", key],
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                if httpx.get(f"{url}/ready", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline or server.poll() is not None:
                raise RuntimeError("the API server did not become ready")
            time.sleep(0.2)
        total = int(seconds * rps)
        latencies: list[float] = []
        errors = [0]
        lock = threading.Lock()
        with httpx.Client(base_url=url, headers={"X-API-Key": key}, timeout=5) as warm:
            for body in bodies[:50]:
                warm.post("/v1/decisions/application", json=body)
        start = time.perf_counter() + 0.5

        def worker(offset: int) -> None:
            with httpx.Client(base_url=url, headers={"X-API-Key": key}, timeout=5) as client:
                for i in range(offset, total, WORKERS):
                    scheduled = start + i / rps
                    delay = scheduled - time.perf_counter()
                    if delay > 0:
                        time.sleep(delay)
                    try:
                        ok = (
                            client.post("/v1/decisions/application", json=bodies[i % len(bodies)]).status_code
                            == 200
                        )
                    except httpx.HTTPError:
                        ok = False
                    elapsed = time.perf_counter() - scheduled
                    with lock:
                        latencies.append(elapsed)
                        errors[0] += 0 if ok else 1

        threads = [threading.Thread(target=worker, args=(k,)) for k in range(WORKERS)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        return latencies, errors[0]
    finally:
        server.terminate()
        server.wait(timeout=30)


def main() -> None:
    """Run the three measurements side by side and print the figures."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--home", type=Path, help="a serving home to reuse (built if absent)")
    parser.add_argument("--seconds", type=float, default=60.0, help="duration of the HTTP run")
    parser.add_argument("--rps", type=float, default=100.0, help="request rate of the HTTP run")
    parser.add_argument("--requests", type=int, default=3000, help="in-process and Feast iterations")
    parser.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--key", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        _serve(args.home, args.port, args.key)
        return

    from tests.integration.serving_home import build_serving_home, tool_env

    home = args.home or Path(tempfile.mkdtemp(prefix="orchard-bench-")) / "home"
    settings = _settings(home)
    with tool_env(settings):
        settings, _ = build_serving_home(home)
        bodies = _bodies(settings, 200)
        feast = _percentiles(measure_feast(settings, bodies, args.requests))
        in_process = _percentiles(measure_in_process(settings, bodies, args.requests))
        http_latencies, errors = measure_http(home, bodies, args.seconds, args.rps)
    http = _percentiles(http_latencies)
    print(f"decision latency (home {home}; {len(bodies)} real applicants)")
    print(f"{'path':<44}{'p50 ms':>9}{'p99 ms':>9}{'max ms':>9}")
    rows = [
        ("Feast get_online_features (baseline)", feast),
        ("in-process decision (Feast + 2 models + log)", in_process),
        (f"HTTP {args.rps:.0f} rps x {args.seconds:.0f} s ({len(http_latencies)} req)", http),
    ]
    for name, figures in rows:
        print(f"{name:<44}{figures['p50']:>9.3f}{figures['p99']:>9.3f}{figures['max']:>9.3f}")
    print(f"in-process p99 / Feast p99: {in_process['p99'] / feast['p99']:.2f}x; "
          f"HTTP p99 / in-process p99: {http['p99'] / in_process['p99']:.2f}x")  # fmt: skip
    print(f"goals: in-process p99 <= {GOAL_IN_PROCESS_P99_MS} ms: {in_process['p99'] <= GOAL_IN_PROCESS_P99_MS}; "
          f"HTTP p99 <= {GOAL_HTTP_P99_MS} ms: {http['p99'] <= GOAL_HTTP_P99_MS}; HTTP errors: {errors}")  # fmt: skip


if __name__ == "__main__":
    main()
