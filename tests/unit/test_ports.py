"""Ports for servers started later: outside the pool the kernel draws outgoing connections' ports from."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from orchard.errors import OrchardError
from orchard.ports import LOOPBACK, candidate_ports, ephemeral_range, free_port


def _client_port() -> int:
    """Connect a client to a loopback listener; return the local port the kernel gave the client."""
    with socket.socket() as listener:
        listener.bind((LOOPBACK, 0))
        listener.listen()
        with socket.create_connection(listener.getsockname()) as client:
            return int(client.getsockname()[1])


def test_a_client_connection_draws_its_port_from_the_range_bind_zero_picks_from() -> None:
    # Given the kernel's ephemeral range
    first, last = ephemeral_range()
    # When a listener takes bind(0)'s port and a client connects to it
    with socket.socket() as sock:
        sock.bind((LOOPBACK, 0))
        picked = int(sock.getsockname()[1])
    client = _client_port()
    # Then both lie in the same range: a port picked by bind(0) and bound seconds later can be taken by any client
    assert first <= picked <= last
    assert first <= client <= last


def test_free_ports_lie_outside_the_ephemeral_range_and_can_be_bound() -> None:
    first, last = ephemeral_range()
    for count in (1, 3):
        start = free_port(count)
        ports = range(start, start + count)
        assert all(not first <= port <= last for port in ports)
        with socket.socket() as a, socket.socket() as b, socket.socket() as c:
            for sock, port in zip((a, b, c), ports, strict=False):
                sock.bind((LOOPBACK, port))


def test_a_taken_port_is_never_given(monkeypatch: pytest.MonkeyPatch) -> None:
    # Given every candidate but one taken by a listener
    with socket.socket() as taken:
        taken.bind((LOOPBACK, 0))
        port = int(taken.getsockname()[1])
        monkeypatch.setattr("orchard.ports.candidate_ports", lambda count=1: [port])
        # Then no port is found, and the error says so
        with pytest.raises(OrchardError, match="no 1 free loopback port"):
            free_port()


def test_the_range_is_read_from_the_kernel_file_or_defaults(tmp_path: Path) -> None:
    good, bad, missing = tmp_path / "good", tmp_path / "bad", tmp_path / "missing"
    good.write_text("20000\t50000\n")
    bad.write_text("not a range\n")
    assert ephemeral_range(good) == (20000, 50000)
    assert ephemeral_range(bad) == ephemeral_range(missing) == (32768, 60999)


def test_a_range_that_covers_every_port_leaves_no_candidate(monkeypatch: pytest.MonkeyPatch) -> None:
    assert candidate_ports(1, (1024, 65535)) == []
    monkeypatch.setattr("orchard.ports.ephemeral_range", lambda: (1024, 65535))
    with pytest.raises(OrchardError, match="outside the ephemeral range 1024-65535"):
        free_port()
    below = candidate_ports(2, (32768, 60999))
    assert below[0] == 10_000 and 32766 in below and 32767 not in below and 61000 in below
    assert max(below) == 65534
