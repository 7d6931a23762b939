"""Start-up at the edge: build the settings, check the state folder, point the tools at it for the command."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from orchard.errors import OrchardError
from orchard.settings import GROUPS, Settings, tool_environment


def load_settings(**overrides: Any) -> Settings:
    """Build Settings from the environment (+ overrides); a malformed setting becomes one clear error."""
    try:
        return Settings(**overrides)
    except ValidationError as exc:
        problems = []
        for err in exc.errors():
            loc = [str(p) for p in err["loc"]]
            loc = loc[1:] if loc and loc[0] in GROUPS else loc  # a group's field has its own flat name
            problems.append(
                f"ORCHARD_{'.'.join(loc).upper()}: {err['msg']}" if loc else f"settings: {err['msg']}"
            )
        raise OrchardError("invalid setting " + "; ".join(problems)) from None


def ensure_writable(home: Path) -> Path:
    """Create the state folder if needed and prove it is writable, or raise a clear error."""
    try:
        home.mkdir(parents=True, exist_ok=True)
        probe = home / f".write-probe-{uuid.uuid4().hex}"
        probe.write_text("ok")
        probe.unlink()
    except OSError as exc:
        raise OrchardError(f"state folder {home} is not writable: {exc.strerror or exc}") from None
    return home


@contextmanager
def environment(values: Mapping[str, str]) -> Iterator[None]:
    """Set environment variables for the duration of a block, then restore each (or remove it if it was unset)."""
    before = {key: os.environ.get(key) for key in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for key, value in before.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


@contextmanager
def tool_scope(settings: Settings) -> Iterator[Settings]:
    """Make the state folder usable and point the tools at it for a block: a CLI command, a deployed flow run.

    Prefect's home and server, MLflow's login and every tool's telemetry switch are read by the tools from the
    environment only, so the edge sets them for the block and restores them after. Nothing below the edge
    reads the environment: Orchard's functions take the settings, and build the MLflow client, the Feast store
    and the GE project from them (orchard.lifecycle.tools).
    """
    ensure_writable(settings.home)
    with environment(tool_environment(settings)):
        yield settings
