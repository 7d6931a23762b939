"""A throwaway PostgreSQL cluster a test may stop and start (the shared server on 5432 is never touched).

initdb and pg_ctl refuse to run as root: they run as the `postgres` OS user (runuser) on a data directory in a
temporary folder that user owns, with trust auth on loopback and the unix socket in the same folder.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from orchard.ports import free_port
from orchard.testing.services import PG_HOST


def _bin_dir() -> Path | None:
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/pg_ctl"))
    return found[-1].parent if found else None


@dataclass(frozen=True)
class ThrowawayPostgres:
    """A PostgreSQL cluster on a free loopback port, owned by this test."""

    bin_dir: Path
    root: Path
    port: int

    @property
    def url(self) -> str:
        return f"postgresql://postgres@{PG_HOST}:{self.port}"

    @property
    def data_dir(self) -> Path:
        return self.root / "data"

    def _as_postgres(self, *args: str) -> subprocess.CompletedProcess[str]:
        command = ["runuser", "-u", "postgres", "--", *args]
        result = subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)
        if result.returncode != 0:
            raise RuntimeError(f"{' '.join(args[:2])} failed: {result.stdout[-1000:]}{result.stderr[-1000:]}")
        return result

    def init(self) -> None:
        """Create the cluster (trust auth, superuser postgres)."""
        self._as_postgres(
            str(self.bin_dir / "initdb"),
            "-D",
            str(self.data_dir),
            "-U",
            "postgres",
            "-A",
            "trust",
            "--no-sync",
        )

    def start(self) -> None:
        """Start the server and wait until it accepts connections."""
        options = f"-p {self.port} -k {self.root} -c listen_addresses={PG_HOST} -c fsync=off"
        self._as_postgres(
            str(self.bin_dir / "pg_ctl"),
            "-D",
            str(self.data_dir),
            "-o",
            options,
            "-l",
            str(self.root / "server.log"),
            "-w",
            "-t",
            "60",
            "start",
        )

    def stop(self, mode: str = "fast") -> None:
        """Stop the server (`immediate`: no checkpoint, clients cut off, as a crash would)."""
        self._as_postgres(str(self.bin_dir / "pg_ctl"), "-D", str(self.data_dir), "-m", mode, "-w", "stop")

    def running(self) -> bool:
        return (self.data_dir / "postmaster.pid").exists()


@contextlib.contextmanager
def throwaway_postgres() -> Iterator[ThrowawayPostgres]:
    """Yield a started throwaway cluster; stop it and delete its folder afterwards, whatever happened."""
    bin_dir = _bin_dir()
    if bin_dir is None or shutil.which("runuser") is None:
        message = "PostgreSQL server binaries (/usr/lib/postgresql/*/bin) or runuser are missing"
        if os.environ.get("ORCHARD_REQUIRE_SERVICES") == "1":
            pytest.fail(message + " and ORCHARD_REQUIRE_SERVICES=1")
        pytest.skip(message)
    # not under pytest's tmp_path: its parents are private to root and the postgres user must reach the folder
    root = Path(tempfile.mkdtemp(prefix="orchard-throwaway-pg-"))
    shutil.chown(root, "postgres", "postgres")
    cluster = ThrowawayPostgres(bin_dir, root, free_port())
    try:
        cluster.init()
        cluster.start()
        yield cluster
    finally:
        if cluster.running():
            with contextlib.suppress(RuntimeError):
                cluster.stop("immediate")
        shutil.rmtree(root, ignore_errors=True)
