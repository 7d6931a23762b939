"""`orchard audit migrate` in the production profile: the operator is the MLflow user a real MLflow server vouches for.

One MLflow tracking server with basic auth serves the module, started as `orchard up` starts it (mlflow_service,
on databases of its own, dropped afterwards); the operator's MLflow user is created with a password through the
server's admin account, as `up` creates the pipeline's user. Each test keeps its decision data in throwaway
PostgreSQL databases of its own and runs the CLI as a user runs it (a subprocess).
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
import pytest
from pydantic import SecretStr

from orchard.production import database_name, mlflow_tracking_uri
from orchard.services import ensure_pipeline_user, mlflow_service, start_service, stop_service
from orchard.serving.decision_log import SCHEMA, SqlDecisionSink
from orchard.settings import Settings
from orchard.testing.services import PG_HOST, PG_PORT, create_database, drop_databases
from tests.conftest import make_settings
from tests.integration.test_audit_migrate import ACCEPT, OPERATOR, orchard
from tests.integration.test_decision_log_tamper import record
from tests.services.conftest import (  # noqa: F401 (fixture)
    postgres,
    production_settings,
    require,
)

pytestmark = pytest.mark.services

LEGACY_DECISION_TABLE = """CREATE TABLE decision_log (request_id VARCHAR(64) PRIMARY KEY, kind VARCHAR(16) NOT NULL,
    logged_at TIMESTAMPTZ NOT NULL, customer_id VARCHAR(64) NOT NULL, model VARCHAR(64) NOT NULL,
    decision VARCHAR(16), pd DOUBLE PRECISION, score DOUBLE PRECISION, band VARCHAR(8), model_versions TEXT,
    inputs TEXT, request TEXT, feature_freshness TEXT, policy TEXT, result TEXT{chain})"""
NULL_CHAIN_COLUMNS = ", seq BIGINT UNIQUE, prev_hash VARCHAR(64), row_hash VARCHAR(64)"


@dataclass(frozen=True)
class MlflowUser:
    """A user of the module's real MLflow server: its tracking URI and the user's password."""

    tracking_uri: str
    password: str


@pytest.fixture(scope="module")
def mlflow_operator(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MlflowUser]:
    """Start the production MLflow server (basic auth, own databases) with OPERATOR as a user; stop and drop after."""
    require(PG_PORT, "PostgreSQL")
    prefix = f"orchard_test_{secrets.token_hex(4)}_"
    password = secrets.token_urlsafe(16)
    settings = production_settings(
        tmp_path_factory.mktemp("mlflow") / "orchard",
        prefix,
        mlflow_username=OPERATOR,
        mlflow_password=SecretStr(password),
    )
    try:
        for service in ("mlflow", "mlflow_auth"):  # the MLflow server's databases only: no Prefect, no worker
            create_database(database_name(settings.production, service))
        settings.run_dir.mkdir(parents=True, exist_ok=True)
        start_service(settings, mlflow_service(settings))
        assert ensure_pipeline_user(settings), f"the admin account created MLflow user {OPERATOR}"
        yield MlflowUser(mlflow_tracking_uri(settings.production), password)
    finally:
        stop_service(settings, "mlflow")
        drop_databases(prefix)


@pytest.fixture
def operator(
    tmp_path: Path,
    postgres: str,  # noqa: F811
    mlflow_operator: MlflowUser,
) -> tuple[Settings, str, MlflowUser]:
    """Return a home, this test's PostgreSQL database prefix and OPERATOR at the module's MLflow server."""
    return make_settings(tmp_path / "orchard"), postgres, mlflow_operator


def production_env(
    url: str, mlflow: MlflowUser, decision_url: str | None = None, password: str | None = None
) -> dict[str, str]:
    """Return the environment of OPERATOR in the production profile (password: another than the real one)."""
    env = {
        "ORCHARD_PROFILE": "production",
        "ORCHARD_GOVERNANCE_DB_URL": url,
        "ORCHARD_MLFLOW_TRACKING_URI": mlflow.tracking_uri,
        "ORCHARD_MLFLOW_USERNAME": OPERATOR,
        "ORCHARD_MLFLOW_PASSWORD": password or mlflow.password,
    }
    return env | ({"ORCHARD_DECISION_DB_URL": decision_url} if decision_url else {})


def run_sql(database: str, *statements: str, params: list[dict[str, Any]] | None = None) -> list[Any]:
    """Run statements on a database of the real PostgreSQL (each once per params row); return the last's rows."""
    with psycopg.connect(
        host=PG_HOST, port=PG_PORT, user="postgres", dbname=database, autocommit=True
    ) as conn:
        result: list[Any] = []
        for statement in statements:
            cursor = conn.cursor()
            if params:
                cursor.executemany(statement, params)
            else:
                cursor.execute(statement)
            result = cursor.fetchall() if cursor.description else []
        return result


def legacy_decision_table(database: str, chain: str, ids: tuple[int, ...]) -> None:
    """Create the decision table an older Orchard wrote (chain: its chain columns, if any) with records ids."""
    run_sql(database, LEGACY_DECISION_TABLE.format(chain=chain))
    columns = [f.name for f in SCHEMA if f.name not in ("seq", "prev_hash", "row_hash")]
    insert = (
        f"INSERT INTO decision_log ({', '.join(columns)}) VALUES ({', '.join(f'%({c})s' for c in columns)})"  # noqa: S608 (SCHEMA names)
    )
    run_sql(database, insert, params=[record(i).row() for i in ids])


def table_content(url: str) -> list[tuple[Any, ...]]:
    """Return (seq, request id, decision) of every stored decision, in sequence order."""
    sink = SqlDecisionSink(url)
    try:
        return [(r["seq"], r["request_id"], r["decision"]) for r in sink.rows()]
    finally:
        sink.dispose()


@pytest.mark.slow(seconds=25)  # the module's MLflow server start (about 18 s) + eight CLI runs in process
def test_an_old_production_decision_table_is_chained_and_sealed_in_the_governance_transaction(
    operator: tuple[Settings, str, str],
) -> None:
    settings, database, mlflow = operator[0], f"{operator[1]}decisions", operator[2]
    # given the production decision table an older Orchard wrote (no chain columns) in the governance database
    url = create_database(database)
    legacy_decision_table(database, "", (1, 2, 3))
    env = production_env(url, mlflow)
    columns = (
        "SELECT column_name FROM information_schema.columns WHERE table_name = 'decision_log' ORDER BY 1"
    )
    before = run_sql(database, columns, "SELECT * FROM decision_log ORDER BY request_id")
    verified = orchard(settings, "audit", "verify", extra=env)
    assert verified.returncode == 1 and "Traceback" not in verified.stderr, verified.stderr
    assert "predates hash chains (lacks columns seq, prev_hash, row_hash)" in verified.stderr, verified.stderr
    assert "orchard audit migrate" in verified.stderr
    # when the operator looks first, then the table and what it lacks are named and nothing changes
    dry = orchard(settings, "audit", "migrate", "--dry-run", extra=env)
    assert dry.returncode == 0, dry.stderr
    assert (
        "3 unchained record(s) in table decision_log (lacks columns seq, prev_hash, row_hash) written before "
        "hash chains (to be chained after seq 0)" in dry.stdout
    ), dry.stdout
    assert run_sql(database, columns, "SELECT * FROM decision_log ORDER BY request_id") == before
    assert len(run_sql(database, columns)) == 15
    # when someone accepts with a password that is not OPERATOR's, then the real server refuses it: no identity,
    # one line naming the refused credentials, nothing changed
    stranger = production_env(url, mlflow, password=secrets.token_urlsafe(16))
    wrong = orchard(settings, "audit", "migrate", ACCEPT, extra=stranger)
    assert wrong.returncode == 1 and len(wrong.stderr.strip().splitlines()) == 1, wrong.stderr
    assert wrong.stderr.startswith(f"error: MLflow refused the credentials of '{OPERATOR}' (HTTP 401)"), (
        wrong.stderr
    )
    assert run_sql(database, columns, "SELECT * FROM decision_log ORDER BY request_id") == before
    assert run_sql(database, "SELECT to_regclass('chain_seals')") == [(None,)]

    # when the operator accepts, then the records are chained in logged order and sealed under the MLflow user
    migrated = orchard(settings, "audit", "migrate", ACCEPT, extra=env)
    assert migrated.returncode == 0, migrated.stderr
    assert (
        f"seal #1: 3 decision_log record(s) written before hash chains, sealed by {OPERATOR} (mlflow-basic-auth)"
        in migrated.stdout
    ), migrated.stdout
    assert table_content(url) == [(1, "req1", "decline"), (2, "req2", "decline"), (3, "req3", "decline")]
    # and verify passes showing the seal, also once the API has appended after the sealed records
    sink = SqlDecisionSink(url)
    sink.write([record(4)])
    sink.dispose()
    verified = orchard(settings, "audit", "verify", extra=env)
    assert verified.returncode == 0 and "seal #1: 3 decision_log record(s)" in verified.stdout, (
        verified.stderr
    )
    # and a second migration finds nothing to do
    again = orchard(settings, "audit", "migrate", ACCEPT, extra=env)
    assert again.returncode == 0 and "nothing to migrate" in again.stdout, again.stdout + again.stderr

    # when someone edits a sealed decision
    run_sql(database, "UPDATE decision_log SET decision = 'approve' WHERE request_id = 'req2'")
    # then verify names it, and a migration refuses the tampered table
    verified = orchard(settings, "audit", "verify", extra=env)
    assert verified.returncode == 1, verified.stdout
    assert "decision log record seq 2 (request req2): its content does not match its hash" in verified.stderr
    refused = orchard(settings, "audit", "migrate", ACCEPT, extra=env)
    assert refused.returncode == 1 and "Traceback" not in refused.stderr, refused.stderr
    assert "nothing migrated: decision log hash chain broken at decision log record seq 2" in refused.stderr


@pytest.mark.slow(seconds=5)  # five CLI runs in process
def test_null_chain_columns_in_a_decision_database_of_its_own_are_chained_after_the_head_unless_tampered(
    operator: tuple[Settings, str, str],
) -> None:
    # given old rows with empty chain columns in the decision database, then one group commit of the upgraded API
    settings, prefix, mlflow = operator
    decisions, governance = f"{prefix}decisions", f"{prefix}governance"
    url, governance_url = create_database(decisions), create_database(governance)
    legacy_decision_table(decisions, NULL_CHAIN_COLUMNS, (1, 2))
    sink = SqlDecisionSink(url)
    sink.write([record(3)])
    sink.dispose()
    env = production_env(governance_url, mlflow, url)
    # when a chained record was edited, then the migration refuses and changes nothing
    run_sql(decisions, "UPDATE decision_log SET decision = 'approve' WHERE request_id = 'req3'")
    before = run_sql(decisions, "SELECT * FROM decision_log ORDER BY request_id")
    refused = orchard(settings, "audit", "migrate", ACCEPT, extra=env)
    assert refused.returncode == 1 and "Traceback" not in refused.stderr, refused.stderr
    assert "decision log record seq 1 (request req3): its content does not match its hash" in refused.stderr
    assert run_sql(decisions, "SELECT * FROM decision_log ORDER BY request_id") == before
    assert run_sql(governance, "SELECT to_regclass('chain_seals')") == [(None,)]

    # when the record is as written, then the old rows are chained after the API's record and sealed
    run_sql(decisions, "UPDATE decision_log SET decision = 'decline' WHERE request_id = 'req3'")
    dry = orchard(settings, "audit", "migrate", "--dry-run", extra=env)
    assert (
        "2 unchained record(s) in table decision_log written before hash chains (to be chained after seq 1)"
        in (dry.stdout)
    ), dry.stdout + dry.stderr
    migrated = orchard(settings, "audit", "migrate", ACCEPT, extra=env)
    assert migrated.returncode == 0 and "seal #1: 2 decision_log record(s)" in migrated.stdout, (
        migrated.stderr
    )
    assert table_content(url) == [(1, "req3", "decline"), (2, "req1", "decline"), (3, "req2", "decline")]
    verified = orchard(settings, "audit", "verify", extra=env)
    assert verified.returncode == 0 and "seal #1: 2 decision_log record(s)" in verified.stdout, (
        verified.stderr
    )
    again = orchard(settings, "audit", "migrate", ACCEPT, extra=env)
    assert again.returncode == 0 and "nothing to migrate" in again.stdout, again.stdout + again.stderr
