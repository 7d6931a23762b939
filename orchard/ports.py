"""Free loopback ports for a server that this process picks and another process binds later.

A port the kernel hands out for bind(0) lies in its ephemeral range, the range it also draws the local port of
every outgoing connection from: between the pick and the server's own bind (seconds, while the server imports),
any client on the machine may take it, and the server fails with "address already in use" (seen in CI: an MLflow
UI started by a test lost its port to a connection of the other test worker). The ports given here lie outside
that range, where only a process that binds a port on purpose can take one.
"""

from __future__ import annotations

import random
import socket
from pathlib import Path

from orchard.errors import OrchardError

LOOPBACK = "127.0.0.1"
_RANGE_FILE = Path("/proc/sys/net/ipv4/ip_local_port_range")
_DEFAULT_RANGE = (32768, 60999)  # Linux's default, used where the kernel does not say
_LOWEST = 10_000  # below: the registered ports of well-known services
_TRIES = 200


def ephemeral_range(path: Path = _RANGE_FILE) -> tuple[int, int]:
    """Return the kernel's ephemeral port range (first, last), or Linux's default where it cannot be read."""
    try:
        first, last = (int(part) for part in path.read_text().split())
    except (OSError, ValueError):
        return _DEFAULT_RANGE
    return (first, last) if 0 < first <= last <= 65535 else _DEFAULT_RANGE


def _bindable(port: int, host: str) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def candidate_ports(count: int = 1, span: tuple[int, int] | None = None) -> list[int]:
    """Return the first ports p of every run p..p+count-1 outside the ephemeral range (above _LOWEST)."""
    first, last = span or ephemeral_range()
    below = range(_LOWEST, first - count + 1)
    above = range(max(_LOWEST, last + 1), 65536 - count + 1)
    return [*below, *above]


def free_port(count: int = 1, host: str = LOOPBACK) -> int:
    """Return a port p with p..p+count-1 free on host, outside the kernel's ephemeral range.

    Raises OrchardError if the machine's range leaves no such ports or none of the tries found `count` free in a
    row (the pick is random, so two processes picking at once rarely meet).
    """
    candidates = candidate_ports(count)
    if not candidates:
        first, last = ephemeral_range()
        raise OrchardError(
            f"no loopback port outside the ephemeral range {first}-{last} ({_RANGE_FILE}): narrow that range"
        )
    pick = random.SystemRandom()
    for _ in range(_TRIES):
        start = pick.choice(candidates)
        if all(_bindable(port, host) for port in range(start, start + count)):
            return start
    raise OrchardError(f"no {count} free loopback port(s) in a row found in {_TRIES} tries")
