"""Hetero SecureBoost between the two parties: registered and scored like the LR, with the same protections.

The two-process test runs the real party processes (run_joint_job) and compares the registered model with the
plaintext reference of the same rows and config (train_reference); the oracle tests drive the real HostParty
over the real channel in this process, with an honest guest wrapped to try what a curious one would.
"""

from __future__ import annotations

import hashlib
import json
import secrets
from pathlib import Path
from typing import ClassVar

import numpy as np
import pandas as pd
import pytest

from model_registry.registry import load_model
from model_registry.tracking import mlflow_client
from orchard.atomic import frame_sha256, write_parquet
from orchard.credit.metrics import auc
from orchard.errors import OrchardError
from orchard.federated.channel import Message, PartyServer, PeerClient, decode
from orchard.federated.data import GUEST_FEATURES, HOST_FEATURES, KEY, LABEL, VINTAGE, VerticalSplit
from orchard.federated.guest import (
    GuestJob,
    JointTreeModel,
    _psi,
    partial_scores,
    train_guest,
    tree_scoring_session,
)
from orchard.federated.host import HostParty
from orchard.federated.host_sessions import HostPolicy
from orchard.federated.job import host_process, joint_score, prepare_parties, run_joint_job
from orchard.federated.paillier_lr import LRConfig, sigmoid
from orchard.federated.secureboost import NO_ANSWER, depth_of, fill_values, filled
from orchard.federated.secureboost_tree import SBConfig, train_reference
from orchard.ports import free_port
from orchard.settings import Settings
from tests.federated_tables import synthetic_tables
from tests.integration.test_federated_job import _forbidden_patterns

CHANNEL_KEY = secrets.token_bytes(32)
MODEL = "precredit_response_joint_trees"
CONFIG = SBConfig(trees=3, max_depth=3, key_bits=1024)
SMALL = SBConfig(trees=2, max_depth=3, key_bits=512)  # the oracle tests: the smallest key the core allows
HOLDOUT = 3


def _reference(guest: pd.DataFrame, host: pd.DataFrame, config: SBConfig) -> tuple[pd.DataFrame, np.ndarray]:
    """Return the joined out-of-time rows (guest table rows) and their PD under the centrally trained trees."""
    joined = (
        guest[guest[LABEL].notna()]
        .merge(host.drop(columns=VINTAGE), on=KEY)
        .sort_values(KEY)
        .reset_index(drop=True)
    )
    test = joined[VINTAGE].isin(sorted(joined[VINTAGE].unique())[-HOLDOUT:]).to_numpy()
    xg = joined[GUEST_FEATURES].to_numpy(dtype=float)
    xh = joined[HOST_FEATURES].to_numpy(dtype=float)
    fill_g, fill_h = fill_values(xg[~test]), fill_values(xh[~test])
    y = joined[LABEL].to_numpy(dtype=float)
    model = train_reference(filled(xg[~test], fill_g), filled(xh[~test], fill_h), y[~test], config)
    score = model.predict_score(filled(xg[test], fill_g), filled(xh[test], fill_h))
    return joined[test].reset_index(drop=True), sigmoid(score)


def _split(guest: pd.DataFrame, host: pd.DataFrame, folder: Path) -> VerticalSplit:
    return VerticalSplit(
        guest_path=write_parquet(guest, folder / "guest.parquet"),
        host_path=write_parquet(host, folder / "host.parquet"),
        guest_rows=len(guest),
        host_rows=len(host),
        guest_sha256=frame_sha256(guest),
        host_sha256=frame_sha256(host),
    )


@pytest.mark.slow
def test_secureboost_job_registers_the_reference_model_and_no_raw_data_crosses_the_wire(
    settings: Settings, tmp_path: Path
) -> None:
    # given the two parties' tables (3,000 matched customers, half of them out of time) and wire recorders
    guest, host = synthetic_tables(n_matched=3000, seed=5)
    split = _split(guest, host, tmp_path / "split")
    record_dir = tmp_path / "wire"
    # when a SecureBoost job runs between two party processes
    record = run_joint_job(
        settings,
        split,
        "job-trees",
        LRConfig(),
        model_name=MODEL,
        record_dir=record_dir,
        algorithm="secureboost",
        sb_config=CONFIG,
    )
    # then it is registered, and its out-of-time AUC is the plaintext reference's on the same rows and config
    assert record["status"] == "registered" and record["version"] >= 1, record
    test_rows, reference_pd = _reference(guest, host, CONFIG)
    assert record["test_rows"] == len(test_rows) == record["metrics"]["n_test"], record
    reference_auc = auc(test_rows[LABEL].to_numpy(dtype=float), reference_pd)
    assert record["metrics"]["auc_test"] == pytest.approx(reference_auc, abs=1e-12), (
        f"federated {record['metrics']['auc_test']} vs reference {reference_auc}"
    )
    assert len(record["tree_stats"]) == CONFIG.trees, record["tree_stats"]
    # and the registry holds a loadable tree model with its parts, the intersection and the reference profile
    artifacts = {a.path for a in mlflow_client(settings).list_artifacts(record["run_id"])}
    wanted = {"guest_part.json", "host_part.json", "intersection.json", "training.json", "lineage.json"}
    assert wanted | {"reference_profile.json"} <= artifacts, artifacts
    model = load_model(settings, MODEL, record["version"])
    assert isinstance(model, JointTreeModel) and model.kind == "secureboost", type(model)
    assert model.host_part_id == record["host_part_id"] and model.host_nodes, model.host_part_id
    # and the host keeps its split table (features and thresholds), named and hashed as the guest recorded
    part_file = (
        settings.federated_dir / "host_home" / "federated" / "host" / "models" / f"{model.host_part_id}.json"
    )
    part = json.loads(part_file.read_text())
    assert part["kind"] == "secureboost" and part["features"] == HOST_FEATURES, part.keys()
    assert sum(len(t) for t in part["trees"]) == len(model.host_nodes) and part["reference"], part["trees"]
    digest = hashlib.sha256(json.dumps(part, sort_keys=True).encode()).hexdigest()
    assert digest == model.host_part_sha256, "the registered receipt names the stored part"

    # and no raw id, feature value or label crosses the wire, nor a plaintext float of any kind
    messages = [decode(p.read_bytes()) for p in sorted(record_dir.glob("*.bin"))]
    blob = b"\x00".join(p.read_bytes() for p in sorted(record_dir.glob("*.bin")))
    binary, texts = _forbidden_patterns(tmp_path / "split")
    assert not [t for t in texts if t.encode() in blob], "raw ids on the wire"
    assert not [b for b in binary if b in blob], "raw feature/label byte patterns on the wire"
    assert b'"bad"' not in blob and b'"label"' not in blob, "no label field on the wire"
    kinds = {m.kind for m in messages}
    assert {"sb_setup", "sb_tree", "sb_histograms", "sb_split", "sb_end_tree", "evaluate", "finish"} <= kinds
    floats = {m.kind for m in messages if any(a.dtype.kind == "f" for a in m.arrays.values())}
    assert not floats, f"plaintext float arrays in {floats}"
    # and per-row host directions cross only as answers of the evaluation about out-of-time rows, once each
    directions = [m for m in messages if "left" in m.arrays]
    assert {m.kind for m in directions} == {"evaluate"}, {m.kind for m in directions}
    received = [decode(p.read_bytes()) for p in sorted(record_dir.glob("host-in-*.bin"))]
    asked = [m for m in received if m.kind == "evaluate" and "rows" in m.arrays]
    train_count = record["train_rows"]
    joined_keys = sorted(set(guest[guest[LABEL].notna()][KEY]) & set(host[KEY]))
    months = [k.split(":")[1] for k in joined_keys]
    out_of_time = {i for i, m in enumerate(months) if m in sorted(set(months))[-HOLDOUT:]}
    assert len(joined_keys) - len(out_of_time) == train_count, "the test's intersection is the job's"
    for m in asked:
        assert set(m.arrays["rows"].tolist()) <= out_of_time, "only out-of-time rows are routed"
    assert asked and len(asked) <= CONFIG.max_depth, f"one request per level: {len(asked)}"
    per_level = [set(zip(m.arrays["rows"].tolist(), m.arrays["trees"].tolist(), strict=True)) for m in asked]
    assert all(len(s) == len(m.arrays["rows"]) for s, m in zip(per_level, asked, strict=True)), (
        "a row once per tree"
    )

    # when out-of-time customers are scored through a scoring session of the registered model
    homes = prepare_parties(settings, split)
    port = free_port()
    applicants = test_rows.head(40)
    with host_process(settings, homes, port):
        scored = joint_score(
            settings, MODEL, record["version"], applicants, port, homes.key_file, purpose="20 applicants"
        )
    # then each gets the reference's PD (and score points and a tier)
    assert list(scored[KEY]) == list(applicants[KEY])
    assert np.allclose(scored["pd"].to_numpy(dtype=float), reference_pd[:40], rtol=0, atol=1e-12), (
        scored["pd"].to_numpy()[:5],
        reference_pd[:5],
    )
    assert set(scored["tier"]) <= {"A", "B", "C", "D"}


# --- oracles: in-process host over the real channel -------------------------------------------------------


@pytest.fixture
def served(tmp_path: Path):
    """A host over a synthetic table, served on loopback, with a reveal budget of 2 per row."""
    guest, host = synthetic_tables(n_matched=2400, seed=9)
    policy = HostPolicy(max_reveals_per_row=2, score_sessions_per_hour=100, min_csi_rows=100)
    party = HostParty(host, tmp_path / "host", CHANNEL_KEY, policy=policy)
    server = PartyServer(CHANNEL_KEY, "host", party.handle).start()
    yield guest, host, party, server
    server.shutdown()


def _client(server: PartyServer, session: str) -> PeerClient:
    return PeerClient(CHANNEL_KEY, "guest", "127.0.0.1", server.port, session=session)


def _tree_job(job_id: str, config: SBConfig = SMALL) -> GuestJob:
    return GuestJob(
        job_id=job_id, model_name="trees", config=LRConfig(), algorithm="secureboost", sb_config=config
    )


def _train(server: PartyServer, guest: pd.DataFrame, job_id: str, client: PeerClient | None = None):
    client = client or _client(server, job_id)
    try:
        return train_guest(client, guest, _tree_job(job_id))
    finally:
        client.close()


def _refused(client: PeerClient, message: Message, match: str) -> None:
    with pytest.raises(OrchardError, match=match):
        client.call(message)


def test_sb_messages_are_refused_outside_a_secureboost_session(served) -> None:
    guest, _, _, server = served
    tree = Message("sb_tree", fields={"tree": 0}, arrays={"gh": np.zeros(8, dtype=np.uint8)})
    # given no session, then every sb_* kind is refused
    client = _client(server, "nobody")
    for kind in ("sb_setup", "sb_tree", "sb_histograms", "sb_split", "sb_end_tree"):
        _refused(client, Message(kind, fields={"tree": 0}), "unknown or was aborted")
    # given a training session before its PSI, then set-up and trees are refused
    client.call(Message("hello"))
    _refused(client, Message("sb_setup", fields={"config": SMALL.as_dict()}), "before the intersection")
    _refused(client, tree, "outside a SecureBoost training session")
    client.close()
    # given an LR training session, then sb_setup is refused, and an LR step in a SecureBoost session too
    lr = LRConfig(epochs=1, batch_size=256, key_bits=512)
    job = GuestJob(job_id="lr", model_name="joint", config=lr)

    class Intruder(PeerClient):
        """Tries SecureBoost kinds inside an LR session, and the LR's kinds inside a SecureBoost session."""

        tried: ClassVar[list[str]] = []

        def call(self, message: Message, step: str = "") -> Message:
            reply = super().call(message, step)
            probes = {
                "train_setup": [Message("sb_setup", fields={"config": SMALL.as_dict(), "n": "ff"}), tree],
                "sb_setup": [
                    Message("train_setup", fields={"config": lr.as_dict(), "n": "ff", "guest_columns": 3}),
                    Message("partial", fields={"step": 0}),
                    Message("sb_histograms", fields={"tree": 0, "nodes": [0]}),  # before its tree
                    Message("sb_setup", fields={"config": SMALL.as_dict()}),  # twice
                ],
                "finish": [],
            }.get(message.kind, [])
            for probe in probes:
                try:
                    super().call(probe, step)
                    self.tried.append(f"{probe.kind} answered")
                except OrchardError as exc:
                    self.tried.append(f"{probe.kind}: {exc}")
            return reply

    intruder = Intruder(CHANNEL_KEY, "guest", "127.0.0.1", server.port, session="lr-session")
    train_guest(intruder, guest, job)
    intruder.close()
    assert len(Intruder.tried) == 2 and all("answered" not in t for t in Intruder.tried), Intruder.tried
    assert "hetero-LR session" in Intruder.tried[0] and "outside a SecureBoost" in Intruder.tried[1]
    Intruder.tried = []
    intruder = Intruder(CHANNEL_KEY, "guest", "127.0.0.1", server.port, session="sb-session")
    outcome = train_guest(intruder, guest, _tree_job("sb"))
    assert len(Intruder.tried) == 4 and all("answered" not in t for t in Intruder.tried), Intruder.tried
    assert "SecureBoost session" in Intruder.tried[0] and "out of order" in Intruder.tried[1], Intruder.tried
    assert "no such open tree" in Intruder.tried[2] and "twice" in Intruder.tried[3], Intruder.tried
    # and the honest SecureBoost job still finished; its session is gone: no more trees for it
    assert outcome.model.kind == "secureboost"
    _refused(intruder, tree, "unknown or was aborted")
    intruder.close()
    # and a scoring session of the tree part refuses every sb_* kind
    client = _client(server, "scoring")
    client.call(
        Message("score_open", fields={"part_id": outcome.model.host_part_id, "ids": 5, "purpose": "x"})
    )
    _refused(client, tree, "not part of a train session")
    client.close()


def test_routing_is_answered_only_for_the_sessions_rows_along_the_path(served) -> None:
    guest, _, _, server = served

    class Curious(PeerClient):
        """Before the honest first evaluate, asks about a training row, the same level twice, a wrong level."""

        tried: ClassVar[list[str]] = []

        def call(self, message: Message, step: str = "") -> Message:
            if message.kind == "evaluate" and "rows" in message.arrays and not self.tried:
                rows, trees, nodes = (message.arrays[k] for k in ("rows", "trees", "nodes"))
                level = int(message.fields["level"])
                probes = [
                    {"rows": np.array([0], dtype="<i4")},  # a training row (position 0 is a 2019-07 row)
                    {"nodes": nodes[:1] * 2 + 1},  # a node below: not at this level
                    {"rows": rows[:1].repeat(2), "trees": trees[:1].repeat(2), "nodes": nodes[:1].repeat(2)},
                ]
                for change in probes:
                    arrays = {"rows": rows[:1], "trees": trees[:1], "nodes": nodes[:1], **change}
                    try:
                        super().call(
                            Message("evaluate", fields={"level": level, "final": False}, arrays=arrays)
                        )
                        self.tried.append("answered")
                    except OrchardError as exc:
                        self.tried.append(str(exc))
            reply = super().call(message, step)
            if message.kind == "evaluate" and message.fields.get("final"):
                again = {k: np.zeros(1, dtype="<i4") for k in ("rows", "trees", "nodes")}
                try:
                    super().call(Message("evaluate", fields={"level": 0, "final": True}, arrays=again))
                    self.tried.append("answered")
                except OrchardError as exc:
                    self.tried.append(str(exc))
            return reply

    curious = Curious(CHANNEL_KEY, "guest", "127.0.0.1", server.port, session="curious")
    first = train_guest(curious, guest, _tree_job("curious")).model
    curious.close()
    assert isinstance(first, JointTreeModel)
    # then none of the curious requests is answered, each for its own reason
    tried = Curious.tried
    assert len(tried) == 4 and "answered" not in tried, tried
    assert "not one of the session's rows" in tried[0], tried
    assert "not a host node at level" in tried[1] and "asked twice" in tried[2], tried
    assert "out of order" in tried[3], "the evaluation runs once"
    # given a scoring session of the part with 3 matched customers, when it asks about position 3, then refused
    keys = guest[KEY].head(3).tolist()
    client = _client(server, "score-outside")
    client.call(Message("score_open", fields={"part_id": first.host_part_id, "ids": 3, "purpose": "x"}))
    rows, _, _ = _psi(client, keys)
    assert len(rows) == 3, rows
    t, node = first.host_nodes[0]
    ask = {
        "rows": np.array([3], dtype="<i4"),
        "trees": np.array([t], dtype="<i4"),
        "nodes": np.array([node], dtype="<i4"),
    }
    _refused(
        client,
        Message("score", fields={"level": depth_of(node)}, arrays=ask),
        "not one of the session's rows",
    )
    client.close()
    # and the LR's scoring call on a tree part gets no partial scores, only the reason
    client = _client(server, "partial-of-trees")
    with pytest.raises(OrchardError, match="is a SecureBoost part"):
        partial_scores(client, first.host_part_id, keys, purpose="lr call")
    client.close()
    # when a second job's part becomes active, then the first part is retired and cannot be scored
    second = _train(server, guest, "second")
    client = _client(server, "score-retired")
    with pytest.raises(OrchardError, match="retired"):
        tree_scoring_session(client, first, guest.head(10), purpose="retired part")
    client.close()
    assert second.model.host_part_id != first.host_part_id


def test_the_reveal_budget_caps_how_often_a_rows_routing_is_answered(served, tmp_path: Path) -> None:
    guest, _, party, server = served
    # given a SecureBoost part (its evaluation counted each out-of-time row it routed once)
    outcome = _train(server, guest, "budget")
    model = outcome.model
    assert isinstance(model, JointTreeModel)
    window_keys = outcome.window[KEY].tolist()
    assert window_keys and all(party.ledger.counts.get(k, 0) <= 1 for k in window_keys)
    frame = guest.set_index(KEY).loc[window_keys[:300]].reset_index()
    # when the same rows are scored with monitoring (second reveal), then they get PDs and a noised CSI
    client = _client(server, "score-1")
    pds, reply = tree_scoring_session(client, model, frame, purpose="monthly monitoring", monitor=True)
    client.close()
    np.testing.assert_allclose(pds, outcome.window["pd"].to_numpy()[:300], rtol=0, atol=1e-12)
    assert set(reply.fields["csi"]) == {f"host_feature_{i + 1}" for i in range(len(HOST_FEATURES))}, (
        reply.fields
    )
    first_log = [json.loads(p.read_text()) for p in (tmp_path / "host" / "sessions").glob("score-*.json")]
    assert len(first_log) == 1 and first_log[0]["status"] == "scored", first_log
    assert reply.fields["csi_rows"] == first_log[0]["revealed"] == first_log[0]["asked"] > 0, first_log
    # when they are scored a third time, then every row that needs a host direction gets none: NaN
    client = _client(server, "score-2")
    pds_again, _ = tree_scoring_session(client, model, frame, purpose="over budget")
    client.close()
    logs = {p.name: json.loads(p.read_text()) for p in (tmp_path / "host" / "sessions").glob("score-*.json")}
    third = next(v for v in logs.values() if v["purpose"] == "over budget")
    assert third["revealed"] == 0 and third["asked"] == first_log[0]["asked"], third
    assert int(np.isnan(pds_again).sum()) == third["asked"], (np.isnan(pds_again).sum(), third)
    # and no row was ever answered more often than the budget allows
    assert max(party.ledger.counts.values()) <= 2, max(party.ledger.counts.values())
    # and a direct request shows the refusal: over-budget triples get NO_ANSWER, not a direction
    client = _client(server, "score-3")
    client.call(Message("score_open", fields={"part_id": model.host_part_id, "ids": 1, "purpose": "x"}))
    key = next(k for k, c in party.ledger.counts.items() if c == 2)
    rows, _, _ = _psi(client, [key])
    t, node = model.host_nodes[0]
    ask = {k: np.array([v], dtype="<i4") for k, v in (("rows", 0), ("trees", t), ("nodes", node))}
    reply = client.call(Message("score", fields={"level": depth_of(node), "final": True}, arrays=ask))
    client.close()
    assert len(rows) == 1 and reply.arrays["left"].tolist() == [NO_ANSWER], reply.arrays["left"]
