"""`orchard audit migrate`: chain and seal a home written before hash chains (governance history, decision log).

Records written before hash chains cannot be proven untouched, so nothing changes unless the operator says they
accept that (`--accept-unchained-history`); without it, or with `--dry-run`, the command only reports what it
found. With it, the governance history is migrated in one transaction, the Parquet decision log's old rows are
chained after its head into one new file (written like every group commit), the SQL decision table's (production)
are given the chain columns and chained after its head under its write lock, and a seal per part records who
sealed how many records, when, and their hash; `orchard audit verify` then checks the sealed records like any
other and shows the seals. A home tampered with in a way an upgrade cannot explain is refused, as verify names it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from model_registry import history
from model_registry.identity import Identity, current_identity
from model_registry.migration import (
    GovernanceFindings,
    find_governance,
    record_seal,
    schema_transaction,
    seal_governance,
)
from orchard.errors import OrchardError
from orchard.serving.decision_log import (
    LegacyLog,
    ParquetDecisionSink,
    decision_db_url,
    hold_chain_lock,
    seal_sql_legacy,
    sql_legacy,
)
from orchard.settings import Settings

ACCEPT_FLAG = "--accept-unchained-history"


@dataclass(frozen=True)
class HomeFindings:
    """What `orchard audit migrate` found: the governance history and the decision log (Parquet or SQL)."""

    governance: GovernanceFindings
    decisions: LegacyLog

    @property
    def problems(self) -> list[str]:
        """Return what a migration cannot explain (tampering), governance first."""
        tampered = list(self.governance.problems) if self.governance.shape == "tampered" else []
        return tampered + list(self.decisions.problems)

    @property
    def unchained(self) -> int:
        """Return how many records predate hash chains, in the history and the decision log."""
        return self.governance.unchained + len(self.decisions.rows)

    @property
    def pending(self) -> bool:
        """Return whether there is anything to migrate."""
        return self.governance.shape == "pre-chain" or self.unchained > 0

    def report(self) -> str:
        """Return the report of what was found, one line per table and one for the decision log; pure."""
        return "\n".join([*self.governance.lines(), self.decisions.summary()])


def find_unchained(settings: Settings) -> HomeFindings:
    """Return what the home holds from before hash chains, changing nothing."""
    with history.raw_engine(settings) as engine, engine.connect() as conn:
        governance = find_governance(conn)
    if settings.profile != "production":
        return HomeFindings(governance, ParquetDecisionSink(settings.decisions_dir).legacy())
    engine = sa.create_engine(decision_db_url(settings, settings.serving))
    try:
        with engine.connect() as conn:
            return HomeFindings(governance, sql_legacy(conn))
    finally:
        engine.dispose()


def _decision_seal(
    conn: Connection, identity: Identity, log: LegacyLog, rows: list[dict[str, Any]]
) -> dict[str, Any] | None:
    """Record the seal of the decision-log rows just chained (in the caller's transaction); None if none were.

    Rows an earlier, interrupted run already sealed (same first seq) are not sealed twice.
    """
    sealed = {s["detail"].get("first_seq") for s in history.seals_in(conn) if s["scope"] == "decision_log"}
    if not rows or rows[0]["seq"] in sealed:
        return None
    where = (
        {"files": [str(Path(f).relative_to(log.where)) for f in log.files]}
        if log.table is None
        else {"table": log.table, "columns_added": list(log.missing_columns)}
    )
    detail = {"first_seq": rows[0]["seq"], "last_seq": rows[-1]["seq"], **where}
    digest = history.sealed_digest([r["row_hash"] for r in rows])
    return record_seal(conn, identity, "decision_log", len(rows), digest, detail)


SealDecisions = Callable[[Connection], "dict[str, Any] | None"]


def _seal_all(settings: Settings, identity: Identity, seal_decisions: SealDecisions) -> list:
    """In one schema transaction: migrate the history if it still predates chains, then seal_decisions(conn)."""
    seals = []
    with schema_transaction(settings) as conn:
        found = find_governance(conn)  # again, under the lock: another migration may have run meanwhile
        if found.shape == "tampered":
            raise OrchardError(
                f"nothing migrated: the governance history is tampered with: {'; '.join(found.problems)}"
            )
        if found.shape == "pre-chain":
            seals.append(seal_governance(conn, identity, found))
        seals += [seal] if (seal := seal_decisions(conn)) else []
    return seals


@contextmanager
def _decision_transaction(settings: Settings) -> Iterator[Connection | None]:
    """Yield a begun transaction on the decision table's own database, or None when it is the governance one.

    On its own database the table's transaction commits only after the seal's: a failure in between leaves a
    seal that verify reports as not matching and the rows unchained, and a rerun chains them identically.
    """
    url = decision_db_url(settings, settings.serving)
    if url == settings.registry_db_url:
        yield None
        return
    engine = sa.create_engine(url)
    try:
        with engine.begin() as conn:
            yield conn
    finally:
        engine.dispose()


def _seal_sql(settings: Settings, identity: Identity) -> list:
    """Migrate the history and the SQL decision table, sealing both; one transaction when one database."""

    def seal_decisions(conn: Connection) -> dict[str, Any] | None:
        table_conn = own or conn
        hold_chain_lock(table_conn)
        found = sql_legacy(table_conn)  # again, under the table's lock: writers may have appended meanwhile
        if found.problems:
            raise OrchardError(f"nothing migrated: {'; '.join(found.problems)}")
        return _decision_seal(conn, identity, found, seal_sql_legacy(table_conn, found))

    with _decision_transaction(settings) as own:
        return _seal_all(settings, identity, seal_decisions)


def migrate_command(settings: Settings, found: HomeFindings, *, accept: bool, dry_run: bool) -> str:
    """Migrate what find_unchained found (`orchard audit migrate`); raise OrchardError when refusing."""
    if found.problems:
        raise OrchardError(
            f"nothing migrated: {'; '.join(found.problems)}. Only a home written before hash chains can be "
            "migrated; this is tampering: run `orchard audit verify` and restore from a trusted backup"
        )
    if not found.pending:
        return "nothing to migrate: every record is hash-chained (a second migration changes nothing)"
    if dry_run:
        return f"dry run: nothing was changed; {ACCEPT_FLAG} chains and seals the {found.unchained} record(s) above"
    if not accept:
        raise OrchardError(
            f"refused: {found.unchained} record(s) were written before hash chains and cannot be proven untouched; "
            f"nothing was changed. Review the report above, then rerun with {ACCEPT_FLAG} to chain and seal them "
            "under your identity"
        )
    identity = current_identity(settings)
    seals: list[dict[str, Any]] = []
    if found.decisions.table is not None:
        seals += _seal_sql(settings, identity)
    else:
        ParquetDecisionSink(settings.decisions_dir).seal_legacy(
            lambda log, rows: seals.extend(
                _seal_all(settings, identity, lambda conn: _decision_seal(conn, identity, log, rows))
            )
        )
    lines = [history.seal_line(seal) for seal in seals] or ["another migration had already sealed everything"]
    return (
        "migrated:\n"
        + "\n".join(lines)
        + "\n`orchard audit verify` now checks the sealed records like any other"
    )
