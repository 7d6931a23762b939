"""Services tier: the database roles of infra/postgres-init.sql on the real PostgreSQL do what docs/roles.md says.

The init file is loaded with psql exactly as the postgres container loads it, with its `orchard_` names given
this test's own prefix (roles are server-wide); Orchard's own code then creates the tables as the owner role and
works as the pipeline and API roles, and every forbidden statement is tried for real.
"""

from __future__ import annotations

import re
import secrets
import subprocess
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from model_registry import history
from orchard.serving.decision_log import SqlDecisionSink
from orchard.settings import Settings
from orchard.testing.services import PG_HOST, PG_PORT, drop_databases
from tests.decision_records import decision_record
from tests.services.conftest import require

pytestmark = pytest.mark.services

REPO = Path(__file__).resolve().parents[2]
ROLES = ("owner", "mlflow", "prefect", "feast", "pipeline", "api")


@pytest.fixture(scope="module")
def prefix(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """Load infra/postgres-init.sql under a fresh prefix; drop its databases and roles afterwards."""
    require(PG_PORT, "PostgreSQL")
    prefix = f"rt_{secrets.token_hex(3)}_"
    script = tmp_path_factory.mktemp("roles") / "init.sql"
    script.write_text((REPO / "infra" / "postgres-init.sql").read_text().replace("orchard_", prefix))
    try:
        subprocess.run(
            [
                "psql",
                "-h",
                PG_HOST,
                "-p",
                str(PG_PORT),
                "-U",
                "postgres",
                "-d",
                "postgres",
                "-v",
                "ON_ERROR_STOP=1",
                "-q",
                "-f",
                str(script),
            ],
            check=True,
            capture_output=True,
            text=True,
            timeout=120,
        )
        yield prefix
    finally:
        drop_databases(prefix)
        with psycopg.connect(
            host=PG_HOST, port=PG_PORT, user="postgres", dbname="postgres", autocommit=True
        ) as c:
            for role in ROLES:
                c.execute(f'DROP ROLE IF EXISTS "{prefix}{role}"')


def url(prefix: str, role: str, database: str) -> str:
    """Return the SQLAlchemy URL of a role on one of the prefixed databases (trust auth: no password)."""
    return f"postgresql+psycopg://{prefix}{role}@{PG_HOST}:{PG_PORT}/{prefix}{database}"


def as_role(prefix: str, role: str, tmp_path: Path) -> Settings:
    """Return settings whose governance records and decision log are reached as one role."""
    return Settings(
        _env_file=None,
        home=tmp_path / role,
        governance_db_url=url(prefix, role, "governance"),
        decision_db_url=url(prefix, role, "decisions"),
    )  # type: ignore[call-arg]


def refused(prefix: str, role: str, database: str, statement: str) -> str:
    """Run a statement as a role and return PostgreSQL's refusal (fail if it was allowed)."""
    with psycopg.connect(
        host=PG_HOST, port=PG_PORT, user=f"{prefix}{role}", dbname=f"{prefix}{database}"
    ) as conn:
        try:
            conn.execute(statement)
        except psycopg.Error as exc:
            return str(exc)
    raise AssertionError(f"{role} was allowed to run: {statement}")


EVENT = {
    "model": "m",
    "alias": "champion",
    "version": 1,
    "previous_version": None,
    "action": "promote",
    "reason": "first",
    "approver": "alice",
    "gate": None,
    "effective_month": "2019-07",
    "identity_source": "configured",
}


def append_event(settings: Settings, **values: object) -> history.AliasEvent:
    """Append one alias event the way Orchard's governance does (under the model's lock)."""
    with history.locked(settings, str(values["model"])) as conn:
        return history.append_event(conn, **values)  # type: ignore[arg-type]


def test_each_role_can_do_its_job_and_nothing_more(prefix: str, tmp_path: Path) -> None:
    # Given the tables created by Orchard running as the owner role
    owner = as_role(prefix, "owner", tmp_path)
    assert history.events(owner, "m") == []
    SqlDecisionSink(url(prefix, "owner", "decisions")).dispose()
    # Then the pipeline appends governance records through Orchard
    pipeline = as_role(prefix, "pipeline", tmp_path)
    append_event(pipeline, **EVENT)
    assert [e.version for e in history.events(pipeline, "m")] == [1]
    # but cannot edit, delete, truncate them, nor touch the triggers or the schema (privileges, not only triggers)
    for statement in (
        "UPDATE alias_events SET approver = 'x'",
        "DELETE FROM approvals",
        "TRUNCATE alias_events",
    ):
        assert "permission denied" in refused(prefix, "pipeline", "governance", statement)
    for statement in (
        "ALTER TABLE alias_events DISABLE TRIGGER ALL",
        "DROP TRIGGER alias_events_append_only ON alias_events",
    ):
        assert "must be owner" in refused(prefix, "pipeline", "governance", statement)
    assert "permission denied for schema public" in refused(
        prefix, "pipeline", "governance", "CREATE TABLE t (i int)"
    )
    assert "permission denied" in refused(
        prefix, "pipeline", "decisions", "INSERT INTO decision_log (request_id) VALUES ('x')"
    )
    # And the API reads the governance record and appends decisions through Orchard
    api = as_role(prefix, "api", tmp_path)
    assert [e.version for e in history.events(api, "m")] == [1]
    sink = SqlDecisionSink(url(prefix, "api", "decisions"))
    try:
        sink.write([decision_record("r1"), decision_record("r2")])
        assert [r["request_id"] for r in sink.rows()] == ["r1", "r2"]
    finally:
        sink.dispose()
    # but cannot write governance records, nor change logged decisions
    with pytest.raises(Exception, match="permission denied"):
        append_event(api, **{**EVENT, "version": 2})
    for statement in ("UPDATE decision_log SET pd = 0", "DELETE FROM decision_log", "TRUNCATE decision_log"):
        assert "permission denied" in refused(prefix, "api", "decisions", statement)
    # And the other services cannot even connect to the governance or decision databases
    for role in ("mlflow", "prefect", "feast"):
        for database in ("governance", "decisions"):
            with pytest.raises(psycopg.OperationalError, match="permission denied for database"):
                psycopg.connect(
                    host=PG_HOST, port=PG_PORT, user=f"{prefix}{role}", dbname=f"{prefix}{database}"
                )


def test_docs_name_every_role_of_the_init_file() -> None:
    created = set(
        re.findall(r"CREATE ROLE (orchard_\w+)", (REPO / "infra" / "postgres-init.sql").read_text())
    )
    assert created == {f"orchard_{r}" for r in ROLES}, created
    doc = (REPO / "docs" / "roles.md").read_text()
    missing = [role for role in sorted(created) if f"`{role}`" not in doc]
    assert not missing, f"docs/roles.md does not describe {missing}"
