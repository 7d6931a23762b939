"""The orchard CLI run in the test's own process, as a user's shell would run it: its parsing, exit code and output.

A new interpreter would spend seconds importing the stack for each call; the commands run so (`orchard audit`:
verify, migrate) only point the tools at a home through the environment, which is restored afterwards.
"""

from __future__ import annotations

import os
import subprocess

from typer.testing import CliRunner

from orchard.cli import app


def run_cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    """Run `orchard *args` with env as its only ORCHARD_, PREFECT_ and MLFLOW_ variables; return its result."""
    saved = dict(os.environ)
    try:
        for key in [k for k in os.environ if k.startswith(("ORCHARD_", "PREFECT_", "MLFLOW_"))]:
            del os.environ[key]
        os.environ.update(env)
        result = CliRunner().invoke(app, list(args), catch_exceptions=False)
    finally:
        os.environ.clear()
        os.environ.update(saved)
    return subprocess.CompletedProcess(["orchard", *args], result.exit_code, result.stdout, result.stderr)
