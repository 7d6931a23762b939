"""Unit test of the lifecycle's warm-up: the month steps' libraries imported, the MLflow store made."""

from __future__ import annotations

import sqlite3
import sys

import pytest

from orchard.lifecycle import warmup
from orchard.lifecycle.warmup import MONTH_LIBRARIES, warm_up
from orchard.settings import Settings


def test_warm_up_imports_the_month_libraries_and_makes_the_mlflow_store(settings: Settings) -> None:
    # Given a home with no MLflow store yet
    database = settings.mlflow_dir / "mlflow.db"
    assert not database.exists(), database
    # When the run warms up
    warm_up(settings)
    # Then every library a month's steps import is loaded, and the store's tables exist
    assert [name for name in MONTH_LIBRARIES if name not in sys.modules] == []
    with sqlite3.connect(database) as db:
        tables = {row[0] for row in db.execute("select name from sqlite_master where type = 'table'")}
    assert {"experiments", "registered_models", "model_versions"} <= tables, sorted(tables)


def test_a_library_that_does_not_import_is_left_to_its_step(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a month library that cannot be imported (GitPython without git, say)
    monkeypatch.setattr(warmup, "MONTH_LIBRARIES", ("orchard_no_such_library", "json"))
    # When the run warms up, then it goes on: the MLflow store is made all the same
    warmup.warm_up(settings)
    assert (settings.mlflow_dir / "mlflow.db").is_file()
