"""Attacks on governance: forged aliases and gate tags, self-approval, typed identities, future months, tampering.

Each test is an attack that worked on the earlier code; real MLflow (sqlite in tmp_path), the real history
database, and `orchard audit verify` run as a user runs it (the CLI's parsing, exit code and output, in this
process: tests/cli.py).
"""

from __future__ import annotations

import sqlite3
import subprocess
from pathlib import Path

import pytest
from mlflow import MlflowClient

from model_registry import governance, history, registry
from model_registry.alerts import read_alerts
from model_registry.gates import GateResult, log_gate_result
from model_registry.tracking import mlflow_client
from orchard.errors import OrchardError
from orchard.settings import Settings
from tests.cli import run_cli
from tests.conftest import make_settings
from tests.integration.test_governance import WINDOW, log_gate, register

OPERATOR = "olivia"


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Settings:
    """One MLflow store for the module, acted on by a configured operator."""
    settings = make_settings(tmp_path_factory.mktemp("attacks") / "orchard", identity=OPERATOR)
    mlflow_client(settings).search_experiments()
    return settings


@pytest.fixture
def name(request: pytest.FixtureRequest) -> str:
    """A registered-model name of this test alone."""
    return "a_" + request.node.originalname.removeprefix("test_")[:60]


def as_user(settings: Settings, identity: str, **more: object) -> Settings:
    """Return the same settings acted on by another configured identity."""
    governance = settings.governance.model_copy(update={"identity": identity, **more})
    return settings.model_copy(update={"governance": governance})


def raw_alias(settings: Settings, name: str, version: int) -> None:
    """Move the champion alias the way anyone with edit rights on the model can: straight in MLflow."""
    MlflowClient(tracking_uri=settings.tracking_uri).set_registered_model_alias(
        name, "champion", str(version)
    )


def _orchard(settings: Settings, *args: str) -> subprocess.CompletedProcess[str]:
    return run_cli({"ORCHARD_HOME": str(settings.home), "ORCHARD_END_MONTH": settings.end_month}, *args)


def test_forged_alias_is_not_served_and_raises_an_alert(store: Settings, name: str) -> None:
    v1, v2 = register(store, name, 1), register(store, name, 2)
    log_gate(store, name, None, v1)
    governance.promote_command(store, name, v1, OPERATOR, "first")
    # when someone with edit rights moves the alias with no approval
    raw_alias(store, name, v2)
    # then the version served (API and batch scoring both resolve it here) is still the approved v1
    assert registry.champion_version(store, name) == v1, "a forged alias must not be served"
    alerts = [a for a in read_alerts(store) if a.get("model") == name]
    assert alerts and alerts[-1]["kind"] == "orchard.governance.unrecorded_alias", alerts
    assert (alerts[-1]["alias_version"], alerts[-1]["recorded_version"]) == (v2, v1), alerts[-1]
    # and the next governance action repairs the alias from the record before acting
    log_gate(store, name, v1, v2)
    governance.promote_command(store, name, v2, OPERATOR, "second, properly")
    assert registry.alias_version(store, name, "champion") == v2 == registry.champion_version(store, name)


def test_forged_gate_tag_does_not_promote(store: Settings, name: str) -> None:
    (v1,) = [register(store, name, 1)]
    # given a version whose gate tag was written by hand (no gate_result.json behind it)
    client = MlflowClient(tracking_uri=store.tracking_uri)
    client.set_model_version_tag(name, str(v1), "orchard.gate.passed", "true")
    # when a person promotes it, then it is refused as ungated and nothing moves
    with pytest.raises(OrchardError, match="no recorded gate result"):
        governance.promote_command(store, name, v1, OPERATOR, "the tag says passed")
    assert registry.alias_version(store, name, "champion") is None


def test_a_gate_with_no_checks_is_not_passed(store: Settings, name: str) -> None:
    (v1,) = [register(store, name, 1)]
    # given a logged gate result that passed without running any check
    log_gate_result(store, name, v1, GateResult(passed=True, reasons=["trust me"], figures={}), WINDOW)
    # when promoted, then it is refused naming the empty gate
    with pytest.raises(OrchardError, match="ran no checks"):
        governance.promote_command(store, name, v1, OPERATOR, "empty gate")
    assert registry.alias_version(store, name, "champion") is None


def test_future_business_month_is_refused(store: Settings, name: str) -> None:
    (v1,) = [register(store, name, 1)]
    log_gate(store, name, None, v1)
    # when a promotion is dated in 2099, then it is refused before anything is recorded
    with pytest.raises(OrchardError, match="2099-12 is in the future"):
        governance.promote_command(store, name, v1, OPERATOR, "far ahead", effective_month="2099-12")
    assert history.approvals_of(store, name) == [] and registry.alias_version(store, name, "champion") is None


def test_approver_is_the_authenticated_identity_not_a_typed_name(store: Settings, name: str) -> None:
    (v1,) = [register(store, name, 1)]
    log_gate(store, name, None, v1)
    # when the operator types someone else's name as approver, then it is refused
    with pytest.raises(OrchardError, match="not the authenticated identity 'olivia'"):
        governance.promote_command(store, name, v1, "the-cfo", "looks fine")
    # and an approval records who acted and how that was established
    governance.promote_command(store, name, v1, None, "looks fine")
    (approval,) = history.approvals_of(store, name)
    assert (approval.approver, approval.identity_source) == (OPERATOR, "configured"), approval


def test_self_approval_is_refused_when_four_eyes_is_on(store: Settings, name: str) -> None:
    # given a version trained by alice, with the four-eyes rule on
    alice = as_user(store, "alice", four_eyes=True)
    v1 = register(alice, name, 1)
    log_gate(store, name, None, v1)
    # when alice approves her own version, then it is refused and recorded as refused
    with pytest.raises(OrchardError, match="four-eyes rule: alice trained"):
        governance.promote_command(alice, name, v1, "alice", "my model")
    assert history.approvals_of(store, name)[-1].outcome == "refused"
    # and bob, who did not train it, may approve it
    governance.promote_command(as_user(store, "bob", four_eyes=True), name, v1, "bob", "reviewed")
    assert registry.champion_version(store, name) == v1


def test_an_override_needs_the_override_role(store: Settings, name: str) -> None:
    (v1,) = [register(store, name, 1)]
    # given no gate result: only an override can promote it
    with pytest.raises(OrchardError, match="does not hold"):
        governance.promote_command(store, name, v1, OPERATOR, "urgent", "deadline")
    assert registry.alias_version(store, name, "champion") is None
    risk_officer = as_user(store, "rita", override_identities=["rita"])
    text = governance.promote_command(risk_officer, name, v1, "rita", "urgent", "deadline")
    assert "OVERRIDE recorded: deadline" in text, text


def _tampered_home(tmp_path: Path, name: str) -> tuple[Settings, Path]:
    settings = make_settings(tmp_path / "orchard", identity=OPERATOR)
    v1, v2 = register(settings, name, 1), register(settings, name, 2)
    log_gate(settings, name, None, v1)
    governance.promote_command(settings, name, v1, OPERATOR, "first")
    log_gate(settings, name, v1, v2)
    governance.promote_command(settings, name, v2, OPERATOR, "second")
    assert _orchard(settings, "audit", "verify").returncode == 0
    return settings, Path(settings.registry_db_url.removeprefix("sqlite:///"))


def test_dropped_trigger_and_edited_record_are_reported_not_repaired(tmp_path: Path) -> None:
    settings, db = _tampered_home(tmp_path, "a_tamper")
    # when an attacker drops a trigger and rewrites who approved the first promotion
    with sqlite3.connect(db) as conn:
        conn.execute("DROP TRIGGER approvals_append_only_UPDATE")
        conn.execute("UPDATE approvals SET approver = 'the-cfo' WHERE id = (SELECT min(id) FROM approvals)")
    # then the audit names the missing trigger and the first edited record
    result = _orchard(settings, "audit", "verify")
    assert result.returncode != 0, result.stdout
    assert "append-only trigger approvals_append_only_UPDATE is missing" in result.stderr, result.stderr
    assert "hash chain broken at approvals #1 (a_tamper): its content does not match" in result.stderr
    # and Orchard refuses to use (and so to silently recreate) the tampered history
    with pytest.raises(OrchardError, match="tampered with"):
        governance.request_rollback(settings, "a_tamper", reason="undo")
    with sqlite3.connect(db) as conn:
        found = conn.execute("SELECT name FROM sqlite_master WHERE type = 'trigger'").fetchall()
    assert ("approvals_append_only_UPDATE",) not in found, "a dropped trigger must not be recreated silently"


def test_forged_alias_is_reported_by_audit(tmp_path: Path) -> None:
    settings, _ = _tampered_home(tmp_path, "a_alias")
    raw_alias(settings, "a_alias", 1)
    result = _orchard(settings, "audit", "verify")
    assert (
        result.returncode != 0
        and "a_alias: MLflow alias champion is v1 but the governance record says v2" in (result.stderr)
    ), result.stderr
