"""`orchard audit migrate`: a home written before hash chains is upgraded only on an explicit acknowledgement.

Each home is built as an older Orchard left it: the history tables without identity_source, prev_hash and
row_hash (plain SQL, with the append-only triggers that Orchard already created), and a decision-log Parquet file
without seq, prev_hash and row_hash. The CLI runs as a user runs it (in this process: its own parsing and
one-line errors), on SQLite and on the real PostgreSQL (a database of its own, dropped afterwards). The production
profile's migrations, which prove the operator's identity at a real MLflow server, are in
tests/services/test_audit_migrate_production.py.
"""

from __future__ import annotations

import sqlite3
import stat
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psycopg
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from model_registry import history
from orchard.errors import OrchardError
from orchard.serving.decision_log import SCHEMA, ParquetDecisionSink
from orchard.settings import Settings
from orchard.testing.services import PG_HOST, PG_PORT, create_database
from tests.cli import run_cli
from tests.conftest import make_settings
from tests.integration.test_decision_log_tamper import record
from tests.services.conftest import postgres  # noqa: F401 (fixture)

OPERATOR = "olivia"
ACCEPT = "--accept-unchained-history"
LEGACY_DDL = [
    """CREATE TABLE alias_events (id {pk}, model VARCHAR(200) NOT NULL, alias VARCHAR(100) NOT NULL,
    version INTEGER NOT NULL, previous_version INTEGER, action VARCHAR(32) NOT NULL, reason TEXT NOT NULL,
    approver VARCHAR(200) NOT NULL, gate_json TEXT, effective_month VARCHAR(7) NOT NULL,
    recorded_at {ts} NOT NULL)""",
    """CREATE TABLE approvals (id {pk}, model VARCHAR(200) NOT NULL, alias VARCHAR(100) NOT NULL,
    action VARCHAR(32) NOT NULL, version INTEGER NOT NULL, champion_before INTEGER, outcome VARCHAR(16) NOT NULL,
    mode VARCHAR(16) NOT NULL, approver VARCHAR(200) NOT NULL, reason TEXT NOT NULL, override_reason TEXT,
    refusal TEXT, gate_json TEXT, event_id INTEGER REFERENCES alias_events (id), effective_month VARCHAR(7) NOT NULL,
    recorded_at {ts} NOT NULL)""",
]
LEGACY_TRIGGERS = {
    "sqlite": [
        f"CREATE TRIGGER {t}_append_only_{v} BEFORE {v} ON {t} BEGIN SELECT RAISE(ABORT, 'append-only'); END"
        for t in history.APPEND_ONLY_TABLES
        for v in ("UPDATE", "DELETE")
    ],
    "postgresql": [
        "CREATE FUNCTION orchard_append_only() RETURNS trigger LANGUAGE plpgsql AS "
        "$$ BEGIN RAISE EXCEPTION 'append-only'; END $$",
        *(
            f"CREATE TRIGGER {t}_append_only BEFORE UPDATE OR DELETE ON {t} "
            "FOR EACH ROW EXECUTE FUNCTION orchard_append_only()"
            for t in history.APPEND_ONLY_TABLES
        ),
        *(
            f"CREATE TRIGGER {t}_no_truncate BEFORE TRUNCATE ON {t} "
            "FOR EACH STATEMENT EXECUTE FUNCTION orchard_append_only()"
            for t in history.APPEND_ONLY_TABLES
        ),
    ],
}
LEGACY_ROWS = [
    "INSERT INTO alias_events (model, alias, version, previous_version, action, reason, approver, gate_json, "
    "effective_month, recorded_at) VALUES ('legacy_pd', 'challenger', 1, NULL, 'set_challenger', 'first', 'ann', "
    "NULL, '2019-06', '2019-06-30 10:00:00.000000')",
    "INSERT INTO alias_events (model, alias, version, previous_version, action, reason, approver, gate_json, "
    "effective_month, recorded_at) VALUES ('legacy_pd', 'challenger', 2, 1, 'set_challenger', 'retrained', 'ann', "
    """'{"passed": true}', '2019-09', '2019-09-30 10:00:00.000000')""",
    "INSERT INTO alias_events (model, alias, version, previous_version, action, reason, approver, gate_json, "
    "effective_month, recorded_at) VALUES ('legacy_fraud', 'challenger', 1, NULL, 'set_challenger', 'first', 'bob', "
    "NULL, '2019-07', '2019-07-31 10:00:00.000000')",
    "INSERT INTO approvals (model, alias, action, version, champion_before, outcome, mode, approver, reason, "
    "override_reason, refusal, gate_json, event_id, effective_month, recorded_at) VALUES ('legacy_pd', "
    "'champion', 'promote', 1, NULL, 'refused', 'person', 'ann', 'try', NULL, 'gate failed', NULL, NULL, "
    "'2019-06', '2019-06-30 11:00:00.000000')",
    "INSERT INTO approvals (model, alias, action, version, champion_before, outcome, mode, approver, reason, "
    "override_reason, refusal, gate_json, event_id, effective_month, recorded_at) VALUES ('legacy_pd', "
    "'champion', 'promote', 2, NULL, 'refused', 'policy', 'orchard-policy', 'auto', NULL, 'no gain', NULL, "
    "NULL, '2019-09', '2019-09-30 11:00:00.000000')",
]


def orchard(
    settings: Settings, *args: str, db_url: str | None = None, extra: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """Run the CLI on a home as a user does (the configured operator; the history in db_url; extra environment),
    in this process (tests/cli.py)."""
    env = {"ORCHARD_HOME": str(settings.home), "ORCHARD_IDENTITY": OPERATOR, **(extra or {})}
    if db_url:
        env["ORCHARD_GOVERNANCE_DB_URL"] = db_url
    return run_cli(env, *args)


def legacy_decision_log(settings: Settings) -> Path:
    """Write the decision log an older Orchard wrote: one time-named file of rows without the chain columns."""
    legacy_schema = pa.schema([f for f in SCHEMA if f.name not in ("seq", "prev_hash", "row_hash")])
    path = settings.decisions_dir / "date=2026-01-02" / "part-20260102T030405000000-0a1b2c3d.parquet"
    path.parent.mkdir(parents=True)
    pq.write_table(pa.Table.from_pylist([record(i).row() for i in (1, 2, 3)], schema=legacy_schema), path)
    return path


def legacy_history(execute: Callable[[str], Any], dialect: str) -> None:
    """Create the history an older Orchard wrote (no identity or hash columns) through execute(sql)."""
    pk, ts = (
        ("INTEGER PRIMARY KEY", "DATETIME") if dialect == "sqlite" else ("SERIAL PRIMARY KEY", "TIMESTAMPTZ")
    )
    for statement in [*(d.format(pk=pk, ts=ts) for d in LEGACY_DDL), *LEGACY_TRIGGERS[dialect], *LEGACY_ROWS]:
        execute(statement)


def sqlite_home(tmp_path: Path) -> tuple[Settings, Path]:
    """Return the settings of an older home with its history in SQLite, and the database's path."""
    settings = make_settings(tmp_path / "orchard", identity=OPERATOR)
    db = Path(settings.registry_db_url.removeprefix("sqlite:///"))
    db.parent.mkdir(parents=True)
    run_sqlite(db, lambda execute: legacy_history(execute, "sqlite"))
    return settings, db


def run_sqlite(db: Path, work: Callable[[Callable[[str], Any]], Any]) -> Any:
    """Run work(execute) on one committed SQLite connection, as someone with the file would; return its result."""
    conn = sqlite3.connect(db)
    try:
        with conn:
            return work(lambda sql: conn.execute(sql).fetchall())
    finally:
        conn.close()


def legacy_content(db: Path) -> list[Any]:
    """Return the old columns of every history row, in id order."""
    return run_sqlite(
        db,
        lambda execute: [
            *execute(
                "SELECT id, model, alias, version, approver, reason, recorded_at FROM alias_events ORDER BY id"
            ),
            *execute(
                "SELECT id, model, action, outcome, approver, reason, recorded_at FROM approvals ORDER BY id"
            ),
        ],
    )


def snapshot(folder: Path) -> dict[str, bytes]:
    """Return every file under a folder with its bytes."""
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def decision_content(settings: Settings) -> dict[str, dict[str, Any]]:
    """Return each logged decision's stored content without the chain columns, by request id."""
    rows = ParquetDecisionSink(settings.decisions_dir).rows()
    return {
        r["request_id"]: {k: v for k, v in r.items() if k not in ("seq", "prev_hash", "row_hash")}
        for r in rows
    }


def test_an_old_sqlite_home_is_refused_reported_then_migrated_and_verifies(tmp_path: Path) -> None:
    settings, db = sqlite_home(tmp_path)
    legacy_file = legacy_decision_log(settings)
    # an upgraded API kept answering after the upgrade: one chained group commit follows the old file
    ParquetDecisionSink(settings.decisions_dir).write([record(4)])
    before = legacy_content(db)
    decisions_before = decision_content(settings)
    # then the history is refused, pointing at the migration (not at a backup) and verify says the same
    with pytest.raises(OrchardError, match=r"predates hash chains.*orchard audit migrate"):
        history.events(settings, "legacy_pd")
    verified = orchard(settings, "audit", "verify")
    assert verified.returncode == 1 and "predates hash chains" in verified.stderr, verified.stderr
    assert "orchard audit migrate" in verified.stderr and "restore" not in verified.stderr, verified.stderr
    untouched = snapshot(settings.home / "registry") | snapshot(settings.decisions_dir)

    # when the operator looks first, then the report names each table, its rows and what it lacks, and nothing changes
    dry = orchard(settings, "audit", "migrate", "--dry-run")
    assert dry.returncode == 0, dry.stderr
    assert (
        "table alias_events: 3 unchained row(s); lacks columns identity_source, prev_hash, row_hash"
        in dry.stdout
    )
    assert (
        "table approvals: 2 unchained row(s); lacks columns identity_source, prev_hash, row_hash"
        in dry.stdout
    )
    assert (
        "3 unchained record(s) in 1 file(s) written before hash chains (to be chained after seq 1)"
        in dry.stdout
    )
    assert "dry run: nothing was changed" in dry.stdout, dry.stdout
    # and without the acknowledgement the migration is refused in one line, nothing changed
    refused = orchard(settings, "audit", "migrate")
    assert refused.returncode == 1 and "Traceback" not in refused.stderr, refused.stderr
    assert refused.stderr.strip().startswith("error: refused: 8 record(s) were written before hash chains")
    assert snapshot(settings.home / "registry") | snapshot(settings.decisions_dir) == untouched

    # when the operator accepts, then every part is sealed under the operator's identity
    migrated = orchard(settings, "audit", "migrate", ACCEPT)
    assert migrated.returncode == 0, migrated.stderr
    assert (
        f"seal #1: 5 governance record(s) written before hash chains, sealed by {OPERATOR} (configured)"
        in (migrated.stdout)
    ), migrated.stdout
    assert (
        f"seal #2: 3 decision_log record(s) written before hash chains, sealed by {OPERATOR}"
        in migrated.stdout
    )
    # and verify passes and shows the seals
    verified = orchard(settings, "audit", "verify")
    assert verified.returncode == 0, verified.stderr
    assert "audit passed" in verified.stdout and "seal #2: 3 decision_log record(s)" in verified.stdout
    # and the sealed records kept their content, chained in their stored order after the chained head
    after = legacy_content(db)
    assert after == before
    assert decision_content(settings) == decisions_before
    rows = ParquetDecisionSink(settings.decisions_dir).rows()
    assert [(r["seq"], r["request_id"]) for r in rows] == [(1, "req4"), (2, "req1"), (3, "req2"), (4, "req3")]
    assert not legacy_file.exists()
    (sealed_file,) = settings.decisions_dir.rglob("part-000000000002.parquet")
    assert stat.S_IMODE(sealed_file.stat().st_mode) == 0o600
    assert [e.identity_source for e in history.events(settings, "legacy_pd")] == ["unknown", "unknown"]
    # and new writes chain on after the sealed records
    with history.locked(settings, "legacy_pd") as conn:
        history.append_event(
            conn, model="legacy_pd", alias="challenger", version=3, previous_version=2, action="set_challenger",
            reason="after the upgrade", approver=OPERATOR, gate=None, effective_month="2019-12",
            identity_source="configured",
        )  # fmt: skip
    ParquetDecisionSink(settings.decisions_dir).write([record(5)])
    assert orchard(settings, "audit", "verify").returncode == 0

    # when migrate runs again, then it finds nothing to do and changes nothing
    migrated = snapshot(settings.home / "registry") | snapshot(settings.decisions_dir)
    again = orchard(settings, "audit", "migrate", ACCEPT)
    assert again.returncode == 0 and "nothing to migrate" in again.stdout, again.stdout + again.stderr
    assert snapshot(settings.home / "registry") | snapshot(settings.decisions_dir) == migrated


def test_a_migration_killed_before_its_seal_committed_is_completed_by_a_rerun_without_duplicates(
    tmp_path: Path,
) -> None:
    settings, _ = sqlite_home(tmp_path)
    legacy_file = legacy_decision_log(settings)
    folder = settings.decisions_dir
    # given a migration killed after its chained copy was renamed into place, before the seal committed
    left: dict[str, bytes] = {}

    def killed(*_: Any) -> None:
        left.update(snapshot(folder))
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        ParquetDecisionSink(folder).seal_legacy(killed)
    for name, content in left.items():
        (folder / name).write_bytes(content)
    assert legacy_file.exists() and len(list(folder.rglob("part-*.parquet"))) == 2
    # and the API appended after the copy meanwhile
    ParquetDecisionSink(folder).write([record(4)])
    # when the operator looks, then the interrupted migration is named
    dry = orchard(settings, "audit", "migrate", "--dry-run")
    assert "an interrupted migration left 1 unchained file(s) and their chained copy" in dry.stdout, (
        dry.stdout + dry.stderr
    )
    # when the operator reruns the migration, then the copy is kept and sealed and the old file goes
    migrated = orchard(settings, "audit", "migrate", ACCEPT)
    assert migrated.returncode == 0, migrated.stderr
    assert "seal #2: 3 decision_log record(s)" in migrated.stdout, migrated.stdout
    rows = ParquetDecisionSink(folder).rows()
    assert [(r["seq"], r["request_id"]) for r in rows] == [(1, "req1"), (2, "req2"), (3, "req3"), (4, "req4")]
    assert not legacy_file.exists()
    verified = orchard(settings, "audit", "verify")
    assert verified.returncode == 0 and "seal #2: 3 decision_log record(s)" in verified.stdout, (
        verified.stderr
    )
    again = orchard(settings, "audit", "migrate", ACCEPT)
    assert again.returncode == 0 and "nothing to migrate" in again.stdout, again.stdout + again.stderr


def migrated_sqlite_home(tmp_path: Path) -> tuple[Settings, Path]:
    """Return an older SQLite home after `orchard audit migrate --accept-unchained-history`."""
    settings, db = sqlite_home(tmp_path)
    legacy_decision_log(settings)
    assert orchard(settings, "audit", "migrate", ACCEPT).returncode == 0
    return settings, db


def test_an_edit_of_a_sealed_record_is_named_by_verify_and_refused_by_migrate(tmp_path: Path) -> None:
    settings, db = migrated_sqlite_home(tmp_path)
    # when someone drops a trigger, rewrites who asked for a sealed approval and puts the trigger back
    (trigger,) = [t for t in LEGACY_TRIGGERS["sqlite"] if "approvals_append_only_UPDATE" in t]
    run_sqlite(
        db,
        lambda execute: [
            execute(sql)
            for sql in (
                "DROP TRIGGER approvals_append_only_UPDATE",
                "UPDATE approvals SET approver = 'x' WHERE id = 2",
                trigger,
            )
        ],
    )
    # and rewrites a sealed decision
    (sealed,) = settings.decisions_dir.rglob("part-*.parquet")
    rows = pq.read_table(sealed).to_pylist()
    rows[1]["decision"] = "approve"
    pq.write_table(pa.Table.from_pylist(rows, schema=SCHEMA), sealed)
    # then verify names both records like any other edit
    verified = orchard(settings, "audit", "verify")
    assert verified.returncode == 1, verified.stdout
    assert (
        "hash chain broken at approvals #2 (legacy_pd): its content does not match its hash"
        in verified.stderr
    )
    assert "decision log record seq 2 (request req2): its content does not match its hash" in verified.stderr
    # and a migration refuses this chained, tampered home, naming the problems and pointing at a backup
    untouched = snapshot(settings.home / "registry") | snapshot(settings.decisions_dir)
    refused = orchard(settings, "audit", "migrate", ACCEPT)
    assert refused.returncode == 1 and "Traceback" not in refused.stderr, refused.stderr
    assert "error: nothing migrated: hash chain broken at approvals #2 (legacy_pd)" in refused.stderr
    assert "decision log hash chain broken at decision log record seq 2" in refused.stderr
    assert "restore from a trusted backup" in refused.stderr, refused.stderr
    assert snapshot(settings.home / "registry") | snapshot(settings.decisions_dir) == untouched


def test_a_removed_sealed_record_breaks_the_seal_and_dropped_triggers_are_not_migrated(
    tmp_path: Path,
) -> None:
    settings, db = migrated_sqlite_home(tmp_path)
    # when the last sealed alias event of a model goes (no later record links to it, so no chain shows it)
    run_sqlite(
        db,
        lambda execute: [
            execute(sql)
            for sql in (
                "DROP TRIGGER alias_events_append_only_DELETE",
                "DELETE FROM alias_events WHERE id = 3",
            )
        ],
    )
    # then verify reports the missing trigger and the seal that no longer matches
    verified = orchard(settings, "audit", "verify")
    assert verified.returncode == 1, verified.stdout
    assert "append-only trigger alias_events_append_only_DELETE is missing" in verified.stderr
    assert (
        "seal #1: 5 governance record(s)" in verified.stderr and "no longer match the seal" in verified.stderr
    )
    # and migrate refuses: a chained schema without its trigger is not the shape of an older Orchard
    refused = orchard(settings, "audit", "migrate", ACCEPT)
    assert refused.returncode == 1 and "Traceback" not in refused.stderr, refused.stderr
    assert (
        "nothing migrated: append-only trigger alias_events_append_only_DELETE is missing" in refused.stderr
    )
    with pytest.raises(
        OrchardError, match=r"has been tampered with.*restore the database from a trusted backup"
    ):
        history.events(settings, "legacy_pd")


@pytest.mark.services
def test_an_old_postgresql_history_is_migrated_once_and_edits_after_it_are_named(
    tmp_path: Path,
    postgres: str,  # noqa: F811
) -> None:
    # given an older history on the real PostgreSQL, in a database of this test, and an older decision log
    database = f"{postgres}migrate"
    url = create_database(database)
    settings = make_settings(tmp_path / "orchard", identity=OPERATOR, governance_db_url=url)
    with psycopg.connect(
        host=PG_HOST, port=PG_PORT, user="postgres", dbname=database, autocommit=True
    ) as conn:
        legacy_history(conn.execute, "postgresql")
    legacy_decision_log(settings)

    def dump() -> list[tuple[Any, ...]]:
        with psycopg.connect(host=PG_HOST, port=PG_PORT, user="postgres", dbname=database) as conn:
            return [
                *conn.execute("SELECT * FROM alias_events ORDER BY id").fetchall(),
                *conn.execute("SELECT * FROM approvals ORDER BY id").fetchall(),
                *conn.execute(
                    "SELECT tgname FROM pg_trigger WHERE NOT tgisinternal ORDER BY tgname"
                ).fetchall(),
            ]

    before, legacy_files = dump(), snapshot(settings.decisions_dir)
    verified = orchard(settings, "audit", "verify", db_url=url)
    assert verified.returncode == 1 and "predates hash chains" in verified.stderr, verified.stderr
    # when the operator looks first, or forgets the acknowledgement, then nothing changes
    dry = orchard(settings, "audit", "migrate", "--dry-run", db_url=url)
    assert dry.returncode == 0 and "table alias_events: 3 unchained row(s)" in dry.stdout, (
        dry.stdout + dry.stderr
    )
    assert orchard(settings, "audit", "migrate", db_url=url).returncode == 1
    assert dump() == before and snapshot(settings.decisions_dir) == legacy_files
    # when the operator accepts, then the history and the log are sealed and verify passes
    migrated = orchard(settings, "audit", "migrate", ACCEPT, db_url=url)
    assert migrated.returncode == 0 and "seal #1: 5 governance record(s)" in migrated.stdout, migrated.stderr
    verified = orchard(settings, "audit", "verify", db_url=url)
    assert verified.returncode == 0 and "seal #1" in verified.stdout, verified.stderr
    assert [e.reason for e in history.events(settings, "legacy_pd")] == ["first", "retrained"]
    # and a second migration finds nothing to do
    again = orchard(settings, "audit", "migrate", ACCEPT, db_url=url)
    assert again.returncode == 0 and "nothing to migrate" in again.stdout, again.stdout + again.stderr
    # when someone disables a trigger and edits a sealed event
    with psycopg.connect(
        host=PG_HOST, port=PG_PORT, user="postgres", dbname=database, autocommit=True
    ) as conn:
        conn.execute("ALTER TABLE alias_events DISABLE TRIGGER alias_events_append_only")
        conn.execute("UPDATE alias_events SET version = 7 WHERE id = 2")
    # then verify names it and a migration refuses the tampered home
    verified = orchard(settings, "audit", "verify", db_url=url)
    assert "hash chain broken at alias_events #2 (legacy_pd): its content does not match" in verified.stderr
    refused = orchard(settings, "audit", "migrate", ACCEPT, db_url=url)
    assert refused.returncode == 1 and "nothing migrated: append-only trigger" in refused.stderr, (
        refused.stderr
    )
