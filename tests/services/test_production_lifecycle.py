"""Services tier: the lifecycle on the production profile survives PostgreSQL and gives the embedded run's models.

The test runs the small lifecycle (orchard/testing/small_lifecycle.SMALL_LIFECYCLE) through `orchard demo` in a
subprocess, on services `orchard.services.up` started (MLflow with basic-auth, Prefect server and worker on
PostgreSQL; Feast on the SQL registry and Redis; the governance history on PostgreSQL), stops PostgreSQL while the
first model trains, reruns, and compares what the run left with the embedded run of the same seed, over every
registered model. One production lifecycle checks both the outage and the parity: the converged state must equal
the uninterrupted embedded run's, so an interrupted-then-resumed production run is held to the same end state.
"""

from __future__ import annotations

import json
import secrets
import subprocess
import time
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr

from model_registry import history
from model_registry.governance import verify_history
from model_registry.registry import TRAIN_KEY_TAG
from model_registry.tracking import mlflow_client
from orchard.lifecycle.ledger import load_month
from orchard.months import month_range
from orchard.ports import free_port
from orchard.production import governance_db_url, mlflow_tracking_uri, prefect_api_url
from orchard.services import down, up
from orchard.settings import GROUPS, Settings, mlflow_credentials
from orchard.testing.small_lifecycle import SMALL, demo_cmd, orchard_env, small_portfolio
from tests.services.conftest import production_settings
from tests.services.throwaway_postgres import throwaway_postgres

pytestmark = [pytest.mark.services, pytest.mark.slow(seconds=200)]

PIPELINE_USER = "orchard-pipeline"
PROFILE_FIELDS = ("identity_source", "prev_hash", "row_hash")
# The clients' retry budgets, shortened so a lost database fails the run within seconds; with the defaults the
# same failure surfaces after MLflow's HTTP retries (about four minutes of back-off).
QUICK_GIVE_UP = {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "1", "PREFECT_CLIENT_MAX_RETRIES": "1"}


def small_lifecycle(home: Path) -> dict[str, Any]:
    """The small lifecycle's settings fields, with the small portfolio beside home."""
    return {**SMALL, "portfolio": small_portfolio(home)}


def orchard_variables(settings: Settings) -> dict[str, str]:
    """The ORCHARD_* environment that rebuilds these settings in a CLI process (only the fields set)."""
    env = {}
    values = {n: getattr(settings, n) for n in settings.model_fields_set if n not in GROUPS}
    for (
        group
    ) in GROUPS:  # a group's fields have their own flat names (ORCHARD_API_KEY, ORCHARD_REDIS_URL, ...)
        given = getattr(settings, group)
        values.update({n: getattr(given, n) for n in given.model_fields_set})
    for name, value in values.items():
        if isinstance(value, SecretStr):
            value = value.get_secret_value()
        elif isinstance(value, list):
            value = json.dumps(value)
        env[f"ORCHARD_{name.upper()}"] = str(value)
    return env


def lifecycle_production_settings(home: Path, prefix: str, redis_number: int, postgres_url: str) -> Settings:
    """Production settings of the small lifecycle: services on free loopback ports, the clients pointed at them."""
    fields: dict[str, Any] = {
        **small_lifecycle(home),
        "postgres_url": postgres_url,
        "mlflow_username": PIPELINE_USER,
        "mlflow_password": secrets.token_urlsafe(16),
        "prefect_server_port": free_port(),
        "mlflow_server_port": free_port(),
    }
    services = production_settings(home, prefix, redis_number, **fields)
    return production_settings(
        home,
        prefix,
        redis_number,
        **fields,
        mlflow_admin_password=services.production.mlflow_admin_password,
        mlflow_tracking_uri=mlflow_tracking_uri(services.production),
        prefect_api_url=prefect_api_url(services.production),
        governance_db_url=governance_db_url(services.production),
    )


def _without(record: dict[str, Any], *keys: str) -> dict[str, Any]:
    return {k: v for k, v in record.items() if k not in keys}


def lifecycle_state(settings: Settings) -> dict[str, Any]:
    """What two runs must agree on, over every registered model: versions by train key, aliases, governance
    records (alias events and approvals, without their database ids and clock times) and the month records."""
    client = mlflow_client(settings)
    models: dict[str, Any] = {}
    for name in sorted(m.name for m in client.search_registered_models()):
        versions = client.search_model_versions(f"name = '{name}'")
        models[name] = {
            "versions": sorted((int(v.version), v.tags.get(TRAIN_KEY_TAG)) for v in versions),
            # the REST client gives alias versions as strings, the SQL store as numbers
            "aliases": {a: int(v) for a, v in sorted(client.get_registered_model(name).aliases.items())},
            # a record's chain hashes cover its recording time, and the identity behind a policy decision is
            # the profile's own (OS user embedded, MLflow user in production): the rest must be identical
            "events": [
                _without(e.to_dict(), "id", "recorded_at", *PROFILE_FIELDS)
                for e in history.events(settings, name)
            ],
            "approvals": [
                {
                    **_without(a.to_dict(), "id", "recorded_at", "event_id", *PROFILE_FIELDS),
                    "moved_alias": a.event_id is not None,
                }
                for a in history.approvals_of(settings, name)
            ],
        }
    months = {}
    for month in month_range(settings.start_month, settings.end_month):
        record = load_month(settings, month)
        if record is not None:
            months[month] = _without(asdict(record), "stage_seconds")
    return {"models": models, "months": months}


def assert_no_duplicates(state: dict[str, Any]) -> None:
    """Every version carries a train key and no train key has two versions; each month is recorded once."""
    for name, model in state["models"].items():
        keys = [key for _, key in model["versions"]]
        assert None not in keys, f"{name}: a registered version without its train key: {model['versions']}"
        assert len(keys) == len(set(keys)), f"{name}: two versions for one train key: {model['versions']}"


def _describe_difference(got: dict[str, Any], want: dict[str, Any]) -> str:
    lines = []
    for name in sorted(set(got["models"]) | set(want["models"])):
        for part in ("versions", "aliases", "events", "approvals"):
            mine, theirs = got["models"].get(name, {}).get(part), want["models"].get(name, {}).get(part)
            if mine != theirs:
                lines.append(f"{name} {part}: production {mine!r:.400} vs embedded {theirs!r:.400}")
    for month in sorted(set(got["months"]) | set(want["months"])):
        mine, theirs = got["months"].get(month), want["months"].get(month)
        if mine != theirs:
            fields = sorted(
                k for k in {**(mine or {}), **(theirs or {})} if (mine or {}).get(k) != (theirs or {}).get(k)
            )
            lines.append(f"month {month} differs in {fields}")
    return "\n".join(lines)


def embedded_state(small_lifecycle_run: tuple[Path, subprocess.CompletedProcess[str]]) -> dict[str, Any]:
    """The small lifecycle on the embedded profile (SQLite MLflow and history, local Feast): the reference."""
    home, _ = small_lifecycle_run
    state = lifecycle_state(Settings(_env_file=None, home=home, **small_lifecycle(home)))  # type: ignore[call-arg]
    assert any("champion" in m["aliases"] for m in state["models"].values()), (
        f"no champion: {state['models']}"
    )
    return state


@pytest.fixture
def as_pipeline_user(monkeypatch: pytest.MonkeyPatch) -> Callable[[Settings], None]:
    """Let this process read MLflow as the settings' pipeline user (the MLflow client reads the environment)."""

    def use(settings: Settings) -> None:
        for key, value in mlflow_credentials(settings.production).items():
            monkeypatch.setenv(key, value)

    return use


def _wait_for_first_training_run(settings: Settings, process: subprocess.Popen[str], timeout: float) -> None:
    """Return once the MLflow server holds a training run (the lifecycle is writing its first model)."""
    client = mlflow_client(settings)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and process.poll() is None:
        experiments = [e.experiment_id for e in client.search_experiments()]
        if client.search_runs(experiments, max_results=1):
            return
        time.sleep(0.3)
    raise AssertionError(f"no training run within {timeout:.0f} s (demo exit code {process.poll()})")


def test_production_lifecycle_survives_an_outage_and_matches_the_embedded_run(
    request: pytest.FixtureRequest,
    tmp_path: Path,
    redis_db: int,
    as_pipeline_user: Callable[[Settings], None],
) -> None:
    with throwaway_postgres() as cluster:
        # Given every production service on a PostgreSQL cluster of this test's own
        settings = lifecycle_production_settings(tmp_path / "orchard", "", redis_db, cluster.url)
        as_pipeline_user(settings)
        env = orchard_env(settings.home, **orchard_variables(settings), **QUICK_GIVE_UP)
        try:
            up(settings)
            demo = subprocess.Popen(
                demo_cmd(settings.home), env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
            )
            try:
                # When PostgreSQL stops (no checkpoint, connections cut) while the first model is being trained
                _wait_for_first_training_run(settings, demo, timeout=400)
                cluster.stop("immediate")
                stdout, stderr = demo.communicate(timeout=300)
            finally:
                if demo.poll() is None:
                    demo.kill()
                    demo.wait()
            # Then the run fails with one line naming PostgreSQL as unreachable, not a traceback
            assert demo.returncode == 1, f"exit code {demo.returncode}\n{stdout[-2000:]}\n{stderr[-3000:]}"
            assert "Traceback" not in stderr, stderr[-3000:]
            error_lines = [line for line in stderr.splitlines() if line.startswith("error:")]
            assert len(error_lines) == 1, stderr[-3000:]
            assert f"PostgreSQL at 127.0.0.1:{cluster.port} is not reachable" in error_lines[0], error_lines

            # And nothing is half-written: only whole months are recorded, every registered version carries
            # its train key and none is registered twice (an interrupted training leaves at most an unfinished
            # MLflow run, which the rerun does not reuse)
            cluster.start()
            interrupted = lifecycle_state(settings)
            done = sorted(interrupted["months"])
            all_months = month_range(settings.start_month, settings.end_month)
            assert done == all_months[: len(done)] and len(done) < len(all_months), done
            assert_no_duplicates(interrupted)

            # When the same command runs again after PostgreSQL is back
            again = subprocess.run(
                demo_cmd(settings.home), env=env, capture_output=True, text=True, timeout=600
            )
            assert again.returncode == 0, f"rerun failed:\n{again.stdout[-2000:]}\n{again.stderr[-3000:]}"
            converged = lifecycle_state(settings)
            checks = {name: verify_history(settings, name) for name in converged["models"]}
        finally:
            down(settings)
    # Then it ran on the production services and converges to the uninterrupted embedded run's end state (every
    # month, version, alias, governance record), with no duplicate version, event or record
    assert settings.tracking_uri.startswith("http://") and settings.registry_db_url.startswith("postgresql")
    assert any("champion" in m["aliases"] for m in converged["models"].values()), "no champion on production"
    assert len(converged["months"]) == len(month_range(settings.start_month, settings.end_month))
    assert_no_duplicates(converged)
    assert all(check.ok for check in checks.values()), {n: c.problems for n, c in checks.items()}
    # (the embedded run is asked for only now, so this scenario runs beside the one that builds it)
    embedded = embedded_state(request.getfixturevalue("small_lifecycle_run"))
    assert converged == embedded, _describe_difference(converged, embedded)
