"""A small real lifecycle home for the serving tests and the decision-latency benchmark: lake, Feast online store, registered models.

Built once per folder (a marker file makes a second call free): simulate 2019-01..2019-07 for 2 000 users,
ingest + validate + features + materialize every month, train application_pd at 2019-06 and 2019-07 (two
versions, the first is champion) and application_fraud at 2019-07 (champion).
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
from model_registry.registry import champion_version
from orchard.contracts import validate_batch
from orchard.feature_store import apply_definitions, materialize_month, update_offline_tables
from orchard.lake import ingest_batch, read_silver
from orchard.lifecycle.tools import Tools
from orchard.lifecycle.training import train_and_register
from orchard.model_specs import model_spec
from orchard.months import month_range
from orchard.runtime import environment
from orchard.settings import ServingConfig, Settings, tool_environment
from orchard.simulate import simulate
from orchard.testing.demo import SHORT_LABELS, demo_model, demo_sources, demo_variant
from orchard.testing.services import free_port

APPLICATION_FRAUD = demo_model("application_fraud")
APPLICATION_PD = demo_model("application_pd")
SOURCES = demo_sources()

log = logging.getLogger(__name__)

SMALL = {
    "n_users": 2_000,
    "start_month": "2019-01",
    "end_month": "2019-07",
    "corrupt_batches": [],
}
"""The serving home's settings by their flat names (what a container of it gets as ORCHARD_* variables)."""
SMALL_POLICY = {"min_mature_vintages": 3, "oot_months": 1}
_MARKER = "serving_home.json"


# The serving tests act as one configured operator who holds the override role (the small home gates nothing).
OPERATOR = "serving-tests"


def serving_settings(home: Path) -> Settings:
    """Return the small settings of a serving home (explicit values, never the user's environment).

    Its portfolio is the demo's with short labels and a small policy, written beside the home.
    """
    portfolio = demo_variant(home.parent / f"{home.name}-portfolio", policy=SMALL_POLICY, labels=SHORT_LABELS)
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
    """Make a version champion through governance (recorded override: the small home has no gate results).

    Serving trusts the governance record, not the MLflow alias, so the tests move champions the way a person
    does; the first promotion takes effect in `month`, later ones in the model's last recorded month.
    """
    first = champion_version(settings, model) is None
    approval = request_promotion(
        settings,
        model,
        version,
        reason="serving test fixture",
        override_reason="small test home: no gate",
        effective_month=month if first else None,
    )
    if approval.outcome not in ("approved", "unchanged"):
        raise RuntimeError(f"the serving home's promotion of {model} v{version} was {approval.outcome}")


def build_serving_home(home: Path) -> tuple[Settings, dict[str, list[int]]]:
    """Build (or reuse) a serving home; return its settings and the registered versions per model."""
    settings = serving_settings(home)
    marker = home / _MARKER
    if marker.exists():
        return settings, json.loads(marker.read_text())
    simulate(settings)
    months = month_range(settings.start_month, settings.end_month)
    for month in months:
        for source in SOURCES:
            ingest_batch(settings, source, month)
            validate_batch(settings, source, month)
        update_offline_tables(settings)
        apply_definitions(settings)
        materialize_month(settings, month)
    application_pd = model_spec(settings.portfolio_def, APPLICATION_PD.name)
    with Tools() as tools:
        pd_first = train_and_register(settings, application_pd, "2019-06", tools)
        pd_second = train_and_register(settings, application_pd, "2019-07", tools)
        fraud_spec = model_spec(settings.portfolio_def, APPLICATION_FRAUD.name)
        fraud = train_and_register(settings, fraud_spec, "2019-07", tools)
    promote(settings, APPLICATION_PD.name, pd_first.version, "2019-06")
    promote(settings, APPLICATION_FRAUD.name, fraud.version, "2019-07")
    versions = {
        APPLICATION_PD.name: [pd_first.version, pd_second.version],
        APPLICATION_FRAUD.name: [fraud.version],
    }
    marker.write_text(json.dumps(versions))
    log.info("serving home built at %s: %s", home, versions)
    return settings, versions


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
    env.update(
        {f"ORCHARD_{k.upper()}": json.dumps(v) if isinstance(v, list) else str(v) for k, v in SMALL.items()}
    )
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
    import uvicorn

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
