"""End to end: a BYOD file written as a portfolio runs through `orchard run` to a served champion."""

from __future__ import annotations

import json
import sqlite3
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from orchard.portfolio.from_byod import partial_last_month, write_byod_portfolio
from orchard.testing.small_lifecycle import run_orchard
from tests.byod_data import byod_file
from tests.ui_helpers import running_uis

pytestmark = pytest.mark.slow(seconds=35)


def test_a_byod_file_runs_month_by_month_to_a_champion(
    tmp_path: Path, prefect_server_env: dict[str, str]
) -> None:
    # Given a BYOD file of six months (2020-01..06, June cut short) written as a portfolio
    spec = byod_file(tmp_path, ".csv", n=950)
    _, rows = write_byod_portfolio(spec, tmp_path / "book")
    periods = list(rows)
    assert partial_last_month(rows) is not None, rows  # the extract ends on 2020-06-07
    home = tmp_path / "state"
    # When `orchard run` processes every landed month
    result = run_orchard(
        home, "run", "--portfolio", str(tmp_path / "book"), timeout=900, **prefect_server_env
    )
    # Then every month is recorded, the first champion is fitted once enough months are labelled, and served
    assert result.returncode == 0, f"{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    months = sorted(p.stem for p in (home / "state" / "months").glob("*.json"))
    assert months == periods and len(periods) == 6, months
    db = sqlite3.connect(home / "mlflow" / "mlflow.db")
    aliases = db.execute("select name, alias, version from registered_model_aliases").fetchall()
    db.close()
    assert ("toy_book_pd", "champion") in [(n, a) for n, a, _ in aliases], aliases
    records = [json.loads((home / "state" / "months" / f"{m}.json").read_text()) for m in months]
    # And the month the extract cut short is quarantined by the row-count contract, as warned
    quarantined = {m: r["quarantined"] for m, r in zip(months, records, strict=True) if r.get("quarantined")}
    assert list(quarantined) == ["2020-06"], quarantined
    assert "row_count" in str(quarantined["2020-06"]), quarantined
    # And the governance commands work on this portfolio as on the demo: a person overrides a failed gate to
    # promote the other version, rolls back, and the append-only history tells the story and agrees with MLflow
    book = {"ORCHARD_PORTFOLIO": str(tmp_path / "book"), "ORCHARD_IDENTITY": "risk-owner"}
    champion = dict(((n, a), v) for n, a, v in aliases)[("toy_book_pd", "champion")]
    other = next(v for n, a, v in aliases if a != "champion") if len(aliases) > 1 else None
    if other is not None:
        promoted = run_orchard(
            home,
            "promote",
            "toy_book_pd",
            str(other),
            "--approver",
            "risk-owner",
            "--reason",
            "review",
            "--override",
            "gate figures reviewed",
            ORCHARD_OVERRIDE_IDENTITIES='["risk-owner"]',
            **book,
        )
        assert promoted.returncode == 0 and f"v{champion} -> v{other}" in promoted.stdout, promoted.stderr
        back = run_orchard(
            home, "rollback", "toy_book_pd", "--approver", "risk-owner", "--reason", "back", **book
        )
        assert back.returncode == 0 and f"v{other} -> v{champion}" in back.stdout, back.stderr
    history = run_orchard(home, "history", "toy_book_pd", **book)
    assert history.returncode == 0 and f"Champion now: v{champion}" in history.stdout, history.stderr
    assert "Consistent: MLflow alias champion" in history.stdout
    # And `orchard ui`'s servers show this portfolio's model: its MLflow champion and its Evidently project
    with running_uis(home, tmp_path / "logs") as (_, mlflow, evidently):
        model = _get_json(f"{mlflow}/api/2.0/mlflow/registered-models/get?name=toy_book_pd")[
            "registered_model"
        ]
        assert {"alias": "champion", "version": str(champion)} in model["aliases"], model
        assert "toy_book_pd" in json.dumps(_get_json(f"{evidently}/api/projects")), "no Evidently project"


def _get_json(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=30) as response:
        return json.loads(response.read())
