"""Integration tests of governance: gated approvals, overrides, rollback, history and concurrent promotions.

Real MLflow (sqlite in tmp_path) and the real history database; a tiny picklable model.
"""

from __future__ import annotations

import contextlib
import json
import sqlite3
import threading
import uuid
from datetime import timedelta
from pathlib import Path

import numpy as np
import pytest
import sqlalchemy as sa
from mlflow import MlflowClient

from model_registry import governance, history, registry
from model_registry.gates import GateInputs, GatePolicy, challenger_gate, log_gate_result
from model_registry.lineage import Lineage
from model_registry.tracking import mlflow_client
from orchard.errors import OrchardError
from orchard.settings import Settings
from orchard.testing.services import create_database
from tests.conftest import make_settings
from tests.integration.tiny_model import TinyPd, training_frame
from tests.services.conftest import postgres  # noqa: F401 (fixture)

WINDOW = "2019-11..2019-12"


def register(settings: Settings, name: str, seed: int) -> int:
    """Register a TinyPd under name and return its version number."""
    lineage = Lineage(
        ["applications:2019-01"], "a" * 64, ["gx:passed"], "svc_v1", "0.1.0", "2019-01..2019-06"
    )
    ref = registry.register_model(
        settings,
        name,
        TinyPd(name, seed, rows=40),
        train_key=f"seed-{seed}",
        metrics={"auc": 0.7},
        params={},
        lineage=lineage,
        input_example=training_frame(seed, 40),
    )
    return ref.version


def window_sample(n: int = 1500) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Return labels, a well-calibrated strong PD and a weaker PD on one synthetic window."""
    rng = np.random.default_rng(11)
    x = rng.normal(size=n)
    strong = 1 / (1 + np.exp(-(-2.0 + 1.2 * x)))
    y = (rng.random(n) < strong).astype(int)
    weak = 1 / (1 + np.exp(-(-2.0 + 0.7 * x + rng.normal(0, 0.6, n))))
    return y, strong, weak


def gate_for(champion: int | None, challenger: int, *, passing: bool = True) -> object:
    """Build a real gate result of challenger against champion on the synthetic window."""
    y, strong, weak = window_sample()
    inputs = GateInputs(
        window=WINDOW,
        y=y,
        challenger_pd=strong,
        champion_pd=None if champion is None else weak,
        champion_version=champion,
        challenger_version=challenger,
        score_psi=0.04 if passing else 0.6,
    )
    return challenger_gate(inputs, GatePolicy())


def log_gate(
    settings: Settings, name: str, champion: int | None, challenger: int, passing: bool = True
) -> None:
    """Compute and log a gate result on the challenger version."""
    log_gate_result(settings, name, challenger, gate_for(champion, challenger, passing=passing), WINDOW)


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Settings:
    """One MLflow store for the module: a fresh MLflow sqlite db costs ~5 s of migrations."""
    settings = make_settings(tmp_path_factory.mktemp("governance") / "orchard")
    mlflow_client(settings).search_experiments()
    return settings


@pytest.fixture
def name(request: pytest.FixtureRequest) -> str:
    """A registered-model name of this test alone, so tests sharing the store stay independent."""
    return "g_" + request.node.originalname.removeprefix("test_")[:60]


def as_user(settings: Settings, identity: str) -> Settings:
    """Return the settings acted on by a configured identity; carol holds the override role."""
    governance = settings.governance.model_copy(
        update={"identity": identity, "override_identities": ["carol"]}
    )
    return settings.model_copy(update={"governance": governance})


def versions(settings: Settings, name: str, k: int) -> list[int]:
    """Register k versions of name."""
    return [register(settings, name, seed) for seed in range(1, k + 1)]


def test_promotion_needs_a_passing_gate_or_a_recorded_override(store: Settings, name: str) -> None:
    v1, v2 = versions(store, name, 2)
    # given v1 with no gate result at all
    # when a person tries to promote it, then it is refused and the attempt recorded
    with pytest.raises(OrchardError, match=r"no recorded gate result .*recorded as refused"):
        governance.promote_command(as_user(store, "alice"), name, v1, "alice", "first model")
    assert registry.champion_version(store, name) is None, "a refused promotion must not move the alias"
    # given a passing gate against no champion, when promoted, then v1 is champion with an approval record
    log_gate(store, name, None, v1)
    text = governance.promote_command(as_user(store, "alice"), name, v1, "alice", "first model")
    assert "no champion -> v1" in text and "approved by alice" in text, text
    # given v2 whose gate failed (score PSI 0.6), when promoted without override, then refused naming the gate
    log_gate(store, name, v1, v2, passing=False)
    with pytest.raises(OrchardError, match=r"its gate failed: not eligible .* failed stability"):
        governance.promote_command(as_user(store, "bob"), name, v2, "bob", "looks fine")
    assert registry.champion_version(store, name) == v1, "the champion must stay after a refusal"
    # when promoted with an override reason, then it moves and the override is recorded everywhere
    text = governance.promote_command(
        as_user(store, "carol"), name, v2, "carol", "regulator deadline", "PSI from a known campaign"
    )
    assert "OVERRIDE recorded: PSI from a known campaign" in text, text
    assert registry.champion_version(store, name) == v2
    requests = history.approvals_of(store, name)
    summary = [(a.version, a.outcome, a.approver, a.override_reason) for a in requests]
    assert summary == [
        (v1, "refused", "alice", None),
        (v1, "approved", "alice", None),
        (v2, "refused", "bob", None),
        (v2, "approved", "carol", "PSI from a known campaign"),
    ], summary
    assert requests[0].gate is None and requests[2].gate["passed"] is False, "the gate considered is recorded"
    events = history.events(store, name, "champion")
    assert [(e.version, e.previous_version) for e in events] == [(v1, None), (v2, v1)], events
    assert "[override: PSI from a known campaign;" in events[1].reason, events[1].reason
    assert requests[3].event_id == events[1].id, "the approval links the alias event it produced"
    assert "OVERRIDE by carol" in governance.history_command(store, name), "history must show the override"


def test_override_needs_a_reason_and_policy_cannot_override(store: Settings, name: str) -> None:
    (v1,) = versions(store, name, 1)
    # when an override is blank or requested by a policy, then it is refused before anything is recorded
    with pytest.raises(OrchardError, match="override reason is required"):
        governance.promote_command(as_user(store, "alice"), name, v1, "alice", "first", "  ")
    with pytest.raises(OrchardError, match="policy cannot override"):
        governance.request_promotion(
            store, name, v1, approver="p", reason="r", mode="policy", override_reason="x"
        )
    with pytest.raises(OrchardError, match="approver is required"):
        governance.promote_command(store, name, v1, "", "first")
    assert history.approvals_of(store, name) == [], "input errors are not requests"


def test_stale_gate_is_refused_and_policy_needs_the_improvement(store: Settings, name: str) -> None:
    v1, v2, v3 = versions(store, name, 3)
    log_gate(store, name, None, v1)
    governance.promote_command(as_user(store, "alice"), name, v1, "alice", "first")
    # given v3 gated against "no champion" (stale: v1 is champion now)
    log_gate(store, name, None, v3)
    with pytest.raises(OrchardError, match="compared it with no champion but the champion is now v1"):
        governance.promote_command(as_user(store, "bob"), name, v3, "bob", "newer")
    # given v2 eligible against v1 but not beating it by the margin (challenger = the weaker PD)
    y, strong, weak = window_sample()
    gate = challenger_gate(
        GateInputs(WINDOW, y, challenger_pd=weak, champion_pd=strong, champion_version=v1, score_psi=0.01),
        GatePolicy(max_auc_drop=0.5, max_ks_drop=0.5, calibration_tolerance=0.5),
    )
    assert gate.passed and not gate.figures["auto_promotable"], gate.reasons
    log_gate_result(store, name, v2, gate, WINDOW)
    # when the policy asks, then it is refused (a person must approve); a rerun returns the same record
    first = governance.request_promotion(
        store, name, v2, approver="orchard-policy", reason="auto", mode="policy", effective_month="2019-12"
    )
    again = governance.request_promotion(
        store, name, v2, approver="orchard-policy", reason="auto", mode="policy", effective_month="2019-12"
    )
    assert first.outcome == "refused" and "a person must approve" in (first.refusal or ""), first
    assert again == first, "a replayed policy decision must not be recorded twice"
    # when a person approves the same eligible version, then it is promoted without override
    governance.promote_command(
        as_user(store, "carol"), name, v2, "carol", "simpler model, AUC within tolerance"
    )
    assert registry.champion_version(store, name) == v2
    assert history.approvals_of(store, name)[-1].override_reason is None


def test_rollback_walks_back_through_previous_champions(store: Settings, name: str) -> None:
    v1, v2, v3 = versions(store, name, 3)
    # given v1 -> v2 -> v3 promoted in turn
    for champion, challenger in ((None, v1), (v1, v2), (v2, v3)):
        log_gate(store, name, champion, challenger)
        governance.promote_command(
            as_user(store, "alice"), name, challenger, "alice", f"promote v{challenger}"
        )
    # when rolled back twice, then v2 then v1 are restored (not back to v3), each with a record
    first = governance.rollback_command(as_user(store, "bob"), name, "bob", "v3 misprices thin files")
    assert "v3 -> v2" in first and registry.champion_version(store, name) == v2, first
    second = governance.rollback_command(as_user(store, "bob"), name, "bob", "v2 too")
    assert "v2 -> v1" in second and registry.champion_version(store, name) == v1, second
    # and a third has nothing left to restore
    with pytest.raises(OrchardError, match="no earlier champion"):
        governance.rollback_command(as_user(store, "bob"), name, "bob", "again")
    events = history.events(store, name, "champion")
    assert [(e.action, e.version, e.previous_version) for e in events][-2:] == [
        ("rollback", v2, v3),
        ("rollback", v1, v2),
    ], events
    rollbacks = [a for a in history.approvals_of(store, name) if a.action == "rollback"]
    assert [(a.outcome, a.approver, a.reason) for a in rollbacks] == [
        ("approved", "bob", "v3 misprices thin files"),
        ("approved", "bob", "v2 too"),
    ], rollbacks
    assert governance.verify_history(store, name).ok, governance.verify_history(store, name)


def test_history_answers_between_changes_by_time_and_business_month(store: Settings, name: str) -> None:
    v1, v2 = versions(store, name, 2)
    # given v1 promoted in business month 2019-07, v2 in 2020-02, then a rollback in 2020-04
    log_gate(store, name, None, v1)
    governance.promote_command(as_user(store, "alice"), name, v1, "alice", "first", effective_month="2019-07")
    log_gate(store, name, v1, v2)
    governance.promote_command(
        as_user(store, "alice"), name, v2, "alice", "retrained after shock", effective_month="2020-02"
    )
    governance.request_rollback(
        as_user(store, "bob"), name, approver="bob", reason="v2 unstable", effective_month="2020-04"
    )
    e1, e2, e3 = history.events(store, name, "champion")
    # (each change is recorded at its own instant, to the microsecond: no wait is needed to tell them apart)
    assert e1.recorded_at < e2.recorded_at < e3.recorded_at, (e1, e2, e3)
    # when asked at instants between the recorded changes
    before = (e1.recorded_at - timedelta(seconds=1)).isoformat()
    between_12 = (e1.recorded_at + (e2.recorded_at - e1.recorded_at) / 2).isoformat()
    between_23 = (e2.recorded_at + (e3.recorded_at - e2.recorded_at) / 2).isoformat()
    answers = {at: governance.history(store, name, at).champion for at in (before, between_12, between_23)}
    # then each answer is the champion in force at that instant
    assert answers == {before: None, between_12: v1, between_23: v2}, answers
    assert governance.history(store, name, None).champion == v1, "now: rolled back to v1"
    assert governance.history(store, name, e1.recorded_at.date().isoformat()).champion == v1, (
        "end of that day"
    )
    # and by business month on the simulated timeline
    months = {
        m: governance.history(store, name, m).champion for m in ("2019-06", "2019-12", "2020-03", "2020-05")
    }
    assert months == {"2019-06": None, "2019-12": v1, "2020-03": v2, "2020-05": v1}, months
    # and the answer says why it changed, with the approval record
    answer = governance.history(store, name, "2020-03")
    assert answer.decided_by is not None and answer.decided_by.reason == "retrained after shock", answer
    assert answer.approval is not None and answer.approval.approver == "alice", answer.approval
    text = governance.history_command(store, name, "2020-03")
    assert "Champion at the end of business month 2020-03: v2" in text and "Consistent" in text, text
    assert json.loads(json.dumps(answer.to_dict()))["champion"] == v2
    # a back-dated decision is refused
    with pytest.raises(OrchardError, match="cannot be back-dated"):
        governance.promote_command(as_user(store, "eve"), name, v2, "eve", "sneak", effective_month="2019-01")
    with pytest.raises(OrchardError, match="invalid moment"):
        governance.history(store, name, "last tuesday")


def test_two_concurrent_promotions_end_with_one_champion_and_both_recorded(
    store: Settings, name: str
) -> None:
    v1, v2, v3 = versions(store, name, 3)
    log_gate(store, name, None, v1)
    governance.promote_command(as_user(store, "alice"), name, v1, "alice", "first")
    # given v2 and v3 both gated against champion v1
    log_gate(store, name, v1, v2)
    log_gate(store, name, v1, v3)
    barrier = threading.Barrier(2)
    outcomes: dict[int, str] = {}

    def promote(version: int) -> None:
        barrier.wait()
        try:
            outcomes[version] = governance.promote_command(
                as_user(store, f"user{version}"), name, version, f"user{version}", "race"
            )
        except OrchardError as exc:
            outcomes[version] = f"refused: {exc}"

    # when two people promote them at the same moment
    threads = [threading.Thread(target=promote, args=(v,)) for v in (v2, v3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    # then exactly one promotion won; the other saw the new champion and was refused as stale
    requests = [a for a in history.approvals_of(store, name) if a.version in (v2, v3)]
    assert sorted(a.version for a in requests) == [v2, v3], f"both attempts must be recorded: {requests}"
    winners = [a for a in requests if a.outcome == "approved"]
    losers = [a for a in requests if a.outcome == "refused"]
    assert len(winners) == 1 and len(losers) == 1, outcomes
    assert "re-run the gate" in (losers[0].refusal or ""), losers[0]
    assert registry.champion_version(store, name) == winners[0].version, "the alias is the winner's"
    events = history.events(store, name, "champion")
    assert [(e.version, e.previous_version) for e in events] == [(v1, None), (winners[0].version, v1)], events
    assert governance.verify_history(store, name).ok, governance.verify_history(store, name)


def test_history_is_append_only_and_divergence_is_detected(store: Settings, name: str) -> None:
    v1, v2 = versions(store, name, 2)
    log_gate(store, name, None, v1)
    governance.promote_command(as_user(store, "alice"), name, v1, "alice", "first")
    log_gate(store, name, v1, v2)
    governance.promote_command(as_user(store, "alice"), name, v2, "alice", "second")
    db = Path(store.registry_db_url.removeprefix("sqlite:///"))
    # when someone edits or deletes history rows behind Orchard's back, then the database refuses
    conn = sqlite3.connect(db)
    try:
        for statement in (
            "UPDATE alias_events SET approver = 'mallory'",
            "DELETE FROM alias_events",
            "UPDATE approvals SET reason = 'x'",
            "DELETE FROM approvals",
        ):
            with pytest.raises(sqlite3.IntegrityError, match="append-only"):
                conn.execute(statement)
    finally:
        conn.close()
    assert len(history.events(store, name)) == 2, "no row may have been changed or removed"
    # when the alias is moved outside Orchard (e.g. in the MLflow UI), then verify_history says so
    MlflowClient(tracking_uri=store.tracking_uri).set_registered_model_alias(name, "champion", str(v1))
    check = governance.verify_history(store, name)
    assert not check.ok and check.alias_version == v1 and check.history_version == v2, check
    assert "INCONSISTENT" in governance.history_command(store, name)
    # and serving keeps the recorded champion (the record is the truth, not the alias)
    assert registry.champion_version(store, name) == v2
    # and the next governance action first repairs the alias from the record, then acts on the record:
    # the rollback goes from the recorded v2 to v1 (behaviour changed: it used to refuse on a diverged alias)
    text = governance.rollback_command(as_user(store, "bob"), name, "bob", "undo")
    assert "v2 -> v1" in text, text
    assert governance.verify_history(store, name).ok


def test_lead_set_alias_path_and_log_gate_result_record_every_check(store: Settings, name: str) -> None:
    v1, v2 = versions(store, name, 2)
    # given the lifecycle's own alias path (set_alias) making v1 champion
    registry.set_alias(
        store,
        name,
        "champion",
        v1,
        action="promote",
        reason="first model",
        approver="orchard-policy",
        gate=None,
        effective_month="2019-07",
    )
    # when v2's full gate is logged
    log_gate(store, name, v1, v2)
    tags = registry.version_tags(store, name, v2)
    gate = governance.recorded_gate(store, name, v2)
    # then every check is a tag, and the JSON carries the checks with their figures
    assert {tags[f"orchard.gate.check.{c}"] for c in ("discrimination", "stability", "calibration")} == {
        "passed"
    }
    assert tags["orchard.gate.champion_version"] == str(v1) and tags["orchard.gate.auto_promotable"] == "true"
    assert gate is not None and [c["name"] for c in gate["checks"]] == [
        "discrimination",
        "stability",
        "calibration",
        "fairness",
        "improvement",
    ], gate
    # and a policy promotion over the set_alias history works and is consistent
    approval = governance.request_promotion(
        store,
        name,
        v2,
        approver="orchard-policy",
        reason="gate passed",
        mode="policy",
        effective_month="2019-12",
    )
    assert approval.outcome == "approved" and registry.champion_version(store, name) == v2, approval
    assert governance.verify_history(store, name).ok


@pytest.mark.services
def test_postgresql_history_serialises_promotions_and_refuses_edits(tmp_path: Path, postgres: str) -> None:  # noqa: F811
    # given a PostgreSQL history database (the production profile) on the real server, made for this test
    url = create_database(f"{postgres}governance")

    class PgSettings(Settings):
        """Settings whose governance records live in PostgreSQL."""

        @property
        def registry_db_url(self) -> str:
            return url

    settings = PgSettings(_env_file=None, home=tmp_path / "orchard", n_users=2_000, end_month="2019-12")
    name = f"pg_{uuid.uuid4().hex[:8]}"
    v1, v2, v3 = versions(settings, name, 3)
    log_gate(settings, name, None, v1)
    governance.promote_command(as_user(settings, "alice"), name, v1, "alice", "first")
    log_gate(settings, name, v1, v2)
    log_gate(settings, name, v1, v3)
    barrier = threading.Barrier(2)

    def promote(version: int) -> None:
        barrier.wait()
        with contextlib.suppress(OrchardError):
            governance.promote_command(
                as_user(settings, f"user{version}"), name, version, f"user{version}", "race"
            )

    # when two promotions race
    threads = [threading.Thread(target=promote, args=(v,)) for v in (v2, v3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    # then one wins, both are recorded, and the history agrees with the alias
    outcomes = sorted(a.outcome for a in history.approvals_of(settings, name) if a.version in (v2, v3))
    assert outcomes == ["approved", "refused"], outcomes
    assert governance.verify_history(settings, name).ok, governance.verify_history(settings, name)
    # and the database refuses to edit, delete or truncate the history
    engine = sa.create_engine(url)
    try:
        for statement in (
            "UPDATE alias_events SET approver = 'x'",
            "DELETE FROM approvals",
            "TRUNCATE alias_events CASCADE",
        ):
            with pytest.raises(sa.exc.DBAPIError, match="append-only"), engine.begin() as conn:
                conn.exec_driver_sql(statement)
    finally:
        engine.dispose()
