"""A small real lifecycle home for the serving tests and the decision-latency benchmark: lake, Feast online store,
registered models and their governance record.

It is the small lifecycle's home (orchard.testing.small_lifecycle): the serving tests work on a copy of the
test run's one small lifecycle, the benchmark runs one of its own. application_pd and application_fraud have two
versions each there; the tests move application_pd's champion between its first two versions.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from pydantic import SecretStr

from model_registry.governance import request_promotion
from model_registry.registry import champion_version, trained_months
from orchard.lake import read_silver
from orchard.ports import free_port
from orchard.runtime import environment
from orchard.settings import ServingConfig, Settings, tool_environment
from orchard.testing.demo import demo_model
from orchard.testing.small_lifecycle import SMALL, copy_home, flat_environment, run_demo

APPLICATION_FRAUD = demo_model("application_fraud")
APPLICATION_PD = demo_model("application_pd")

log = logging.getLogger(__name__)

# The serving tests act as one configured operator who holds the override role (they move champions by hand).
OPERATOR = "serving-tests"


def serving_settings(home: Path) -> Settings:
    """Return the settings of a serving home (explicit values, never the user's environment).

    Its portfolio is the one the home's lifecycle ran on (the home's portfolio marker names its folder).
    """
    portfolio = json.loads((home / "portfolio.json").read_text())["folder"]
    return Settings.model_validate(
        {
            "home": home,
            "portfolio": portfolio,
            "identity": OPERATOR,
            "override_identities": [OPERATOR],
            **SMALL,
        }
    )


def promote(settings: Settings, model: str, version: int, month: str) -> None:
    """Make a version champion through governance (a recorded override: the tests move champions by hand).

    Serving trusts the governance record, not the MLflow alias, so the tests move champions the way a person
    does; the first promotion takes effect in `month`, later ones in the model's last recorded month.
    """
    first = champion_version(settings, model) is None
    approval = request_promotion(
        settings,
        model,
        version,
        reason="serving test fixture",
        override_reason="serving test: champion moved by hand",
        effective_month=month if first else None,
    )
    if approval.outcome not in ("approved", "unchanged"):
        raise RuntimeError(f"the serving home's promotion of {model} v{version} was {approval.outcome}")


def served_versions(settings: Settings) -> dict[str, list[int]]:
    """Return the versions the serving tests use: application_pd's first two, application_fraud's champion."""
    pd_versions = sorted(trained_months(settings, APPLICATION_PD.name))[:2]
    fraud = champion_version(settings, APPLICATION_FRAUD.name)
    if len(pd_versions) < 2 or fraud is None:
        raise RuntimeError(
            f"the serving home at {settings.home} needs two {APPLICATION_PD.name} versions and a "
            f"{APPLICATION_FRAUD.name} champion; it has {pd_versions} and champion {fraud}"
        )
    return {APPLICATION_PD.name: pd_versions, APPLICATION_FRAUD.name: [fraud]}


def copy_serving_home(lifecycle_home: Path, home: Path) -> tuple[Settings, dict[str, list[int]]]:
    """Copy a small lifecycle's home to home (once) and return its settings and the versions the tests use."""
    if not home.exists():
        copy_home(lifecycle_home, home)
    settings = serving_settings(home)
    return settings, served_versions(settings)


def build_serving_home(home: Path) -> tuple[Settings, dict[str, list[int]]]:
    """Run the small lifecycle at home (once; a second call reuses it); return its settings and versions."""
    if not (home / "state" / "months").is_dir():
        result = run_demo(home)
        if result.returncode != 0:
            raise RuntimeError(
                f"the small lifecycle failed:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
            )
    settings = serving_settings(home)
    return settings, served_versions(settings)


API_KEY = "test-key"
HEADERS = {"X-API-Key": API_KEY}


def serving_config(**overrides: object) -> ServingConfig:
    """Return the serving config of the tests: a known key, fast polling and flushing."""
    values: dict[str, Any] = {
        "api_key": SecretStr(API_KEY),
        "champion_poll_seconds": 0.05,
    }
    values.update(overrides)
    return ServingConfig(**values)


def applications(settings: Settings, month: str = "2019-07", n: int = 20) -> list[dict[str, Any]]:
    """Return n real application bodies of a month (customer id + request fields), deterministic."""
    apps = read_silver(settings, "applications", [month]).sort_values("application_id").head(n)
    bodies = []
    for values in apps.to_dict("records"):
        body: dict[str, Any] = {"customer_id": values["user_id"]}
        body.update({f: values[f] for f in APPLICATION_PD.request_features})
        body["requested_amount"] = float(body["requested_amount"])
        body["income_declared"] = float(body["income_declared"])
        body["term_months"] = int(body["term_months"])
        bodies.append(body)
    return bodies


def server_env(settings: Settings, **more: str) -> dict[str, str]:
    """Return the environment a container gets: ORCHARD_* settings of a serving home and the tools' variables."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ORCHARD_", "PREFECT_", "MLFLOW_"))}
    env.update(tool_environment(settings))
    env.update(flat_environment(SMALL))
    env["ORCHARD_PORTFOLIO"] = str(settings.portfolio)
    env.update({"ORCHARD_HOME": str(settings.home), "ORCHARD_API_KEY": API_KEY, "ORCHARD_IDENTITY": OPERATOR})
    env.update(more)
    return env


def container_command(port: int, workers: int = 1) -> list[str]:
    """Return the API container's command (infra/Dockerfile CMD) on loopback, run with this interpreter."""
    return [
        sys.executable,
        "-m",
        "uvicorn",
        "orchard.serving.asgi:app_from_environment",
        "--factory",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--workers",
        str(workers),
        "--no-access-log",
    ]


@contextmanager
def live_server(app: Any, timeout_s: float = 60.0) -> Iterator[str]:
    """Run an ASGI app under a real uvicorn on a free loopback port; yield its base URL."""
    import uvicorn  # deferred: only a live server needs it

    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", access_log=False, lifespan="on")
    )
    thread = threading.Thread(target=server.run, name="uvicorn", daemon=True)
    thread.start()
    deadline = time.monotonic() + timeout_s
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("uvicorn did not start")
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=30)


@contextmanager
def tool_env(settings: Settings) -> Iterator[None]:
    """Point the tools' environment at a home for the duration of a block (restored after)."""
    with environment({k: v for k, v in tool_environment(settings).items() if k != "PREFECT_HOME"}):
        yield
