"""Channel hardening: key files 0600 from creation, MAC before buffering, bounded concurrency, no junk recorded."""

from __future__ import annotations

import os
import secrets
import socket
import stat
import threading
from pathlib import Path

import pytest

from orchard.errors import OrchardError
from orchard.federated.channel import Message, PartyServer, PeerClient, load_key
from orchard.federated.data import VerticalSplit
from orchard.federated.job import prepare_parties
from orchard.settings import Settings

KEY = secrets.token_bytes(32)


def test_channel_key_files_are_never_readable_by_others(settings: Settings, tmp_path: Path) -> None:
    # given a process umask that would make new files world-readable
    old = os.umask(0o022)
    created: list[int] = []
    widened: list[str] = []
    real_open, real_chmod = os.open, os.chmod

    def spy(path, flags, mode=0o777, *args, **kwargs):  # record the mode each file is created with
        if flags & os.O_CREAT and "channel.key" in str(path):
            created.append(mode & ~0o022)
        return real_open(path, flags, mode, *args, **kwargs)

    def chmod_spy(path, mode, *args, **kwargs):  # any moment a key file is readable by others
        if "channel.key" in str(path) and mode & 0o077:
            widened.append(f"{Path(path).name} {oct(mode)}")
        return real_chmod(path, mode, *args, **kwargs)

    split = VerticalSplit(tmp_path / "g.parquet", tmp_path / "h.parquet", 0, 0, "", "")
    try:
        os.open, os.chmod = spy, chmod_spy
        # when the coordinator provisions both parties' keys
        homes = prepare_parties(settings, split)
    finally:
        os.open, os.chmod = real_open, real_chmod
        os.umask(old)
    # then each key file was created 0600 and never made readable by others, not even for a moment
    assert not widened, f"key files were made readable by others: {widened}"
    assert created and all(m == 0o600 for m in created), (
        f"key files created with modes {[oct(m) for m in created]}"
    )
    for path in (homes.key_file, homes.host_home / "federated" / "host" / "channel.key"):
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, f"{path} is {oct(path.stat().st_mode)}"


def test_a_world_readable_key_file_is_refused(tmp_path: Path) -> None:
    # given a key file readable by others, when loaded, then one error names the file and the fix
    path = tmp_path / "channel.key"
    path.write_text(secrets.token_hex(32))
    path.chmod(0o644)
    with pytest.raises(OrchardError, match="readable by other users"):
        load_key(path)


def _raw_request(port: int, headers: str) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port), timeout=20)
    sock.sendall(f"POST /v1/message HTTP/1.1\r\nHost: x\r\n{headers}\r\n".encode())
    return sock


def test_an_unauthenticated_large_body_is_refused_before_it_is_read() -> None:
    # given a server with a 64 MB limit and a recorder
    recorded: list[str] = []
    server = PartyServer(
        KEY, "host", lambda m: Message("ok"), max_bytes=64 << 20, recorder=lambda d, b: recorded.append(d)
    ).start()
    try:
        # when a sender without the key announces a 50 MB body and sends none of it
        sock = _raw_request(server.port, "Content-Length: 52428800\r\nX-Orchard-Mac: 00\r\n")
        # then the server answers at once, without waiting for (buffering) the body
        answer = sock.recv(200)
        sock.close()
    finally:
        server.shutdown()
    assert answer.startswith(b"HTTP/1.1 401"), f"refused before reading: {answer[:60]!r}"
    assert not recorded, "nothing unauthenticated is recorded"


def test_concurrent_requests_are_bounded() -> None:
    # given a server that serves two requests at a time, both slots held by requests that wait on an event
    release = threading.Event()
    entered = threading.Semaphore(0)

    def slow(message: Message) -> Message:
        entered.release()
        release.wait(30)
        return Message("ok")

    server = PartyServer(KEY, "host", slow, max_concurrent=2).start()
    results: list[int] = []
    try:
        clients = [PeerClient(KEY, "guest", "127.0.0.1", server.port, session=f"s{i}") for i in range(2)]
        threads = [
            threading.Thread(target=lambda c=c: results.append(len(c.call(Message("x")).kind)))
            for c in clients
        ]
        for t in threads:
            t.start()
        for _ in range(2):
            assert entered.acquire(timeout=30), "both slots taken"
        # when a third connection arrives, then it is turned away with 503 instead of a new thread
        sock = _raw_request(server.port, "Content-Length: 0\r\n")
        answer = sock.recv(200)
        sock.close()
        release.set()
        for t in threads:
            t.join(30)
    finally:
        release.set()
        server.shutdown()
    assert answer.startswith(b"HTTP/1.1 503"), f"third request refused: {answer[:60]!r}"
    assert results == [2, 2], "the two admitted requests were answered"
