"""The host serves a run month after month: it reads its replaced table file between sessions, never during one."""

from __future__ import annotations

import secrets
from pathlib import Path

import pytest

from orchard.atomic import write_parquet
from orchard.errors import OrchardError
from orchard.federated.channel import Message
from orchard.federated.data import HOST_FEATURES
from orchard.federated.host import HostParty
from tests.federated_tables import synthetic_tables

KEY = secrets.token_bytes(32)


def _hello(party: HostParty, session: str) -> int:
    return int(party.handle(Message("hello", session=session)).fields["rows"])


def test_a_replaced_table_is_read_before_the_next_session_and_never_under_an_open_one(tmp_path: Path) -> None:
    # Given a host started on the first 200 rows of its table file
    _, host = synthetic_tables(n_matched=300, seed=3)
    path = write_parquet(host.iloc[:200], tmp_path / "host.parquet")
    party = HostParty.from_file(path, tmp_path / "host", KEY)
    assert _hello(party, "s1") == 200
    # When the platform replaces the file (its next month) while a session is open
    write_parquet(host, path)
    # Then a session opening beside it still sees the table the open one started with (row positions agree)
    assert _hello(party, "s2") == 200
    # And once no session is open the next one sees the new table
    for session in ("s1", "s2"):
        party.handle(Message("abort", session=session))
    assert _hello(party, "s3") == len(host)
    party.handle(Message("abort", session="s3"))
    # When the replacement breaks the host's own spec (a feature dropped)
    write_parquet(host.drop(columns=[HOST_FEATURES[0]]), path)
    # Then no session opens on it, the error names the column, and the host keeps the table it had
    with pytest.raises(OrchardError, match=HOST_FEATURES[0]):
        _hello(party, "s4")
    assert len(party.keys) == len(host)


def test_a_host_without_a_source_file_keeps_its_table(tmp_path: Path) -> None:
    # Given a host given its table in memory (no file to read again)
    _, host = synthetic_tables(n_matched=120, seed=4)
    party = HostParty(host, tmp_path / "host", KEY)
    # Then every session sees that table
    assert _hello(party, "a") == len(host)
    party.handle(Message("abort", session="a"))
    assert _hello(party, "b") == len(host)
