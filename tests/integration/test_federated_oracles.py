"""The host answers only what its own schedule and budget allow: no partial-score or scoring oracle."""

from __future__ import annotations

import secrets
from pathlib import Path

import numpy as np
import pytest

from orchard.errors import OrchardError
from orchard.federated.channel import Message, PartyServer, PeerClient
from orchard.federated.guest import GuestJob, partial_scores, train_guest
from orchard.federated.host import HostParty
from orchard.federated.host_sessions import HostPolicy
from orchard.federated.paillier_lr import LRConfig
from tests.federated_tables import synthetic_tables

KEY = secrets.token_bytes(32)


def _job(job_id: str, **config) -> GuestJob:
    return GuestJob(
        job_id=job_id,
        model_name="joint",
        config=LRConfig(**{"epochs": 1, "batch_size": 256, "key_bits": 512, **config}),
    )


@pytest.fixture
def served(tmp_path: Path):
    """A host over a synthetic table, served on loopback, with a reveal budget of 2 per row."""
    guest, host = synthetic_tables(n_matched=700, seed=11)
    party = HostParty(host, tmp_path / "host", KEY, policy=HostPolicy(max_reveals_per_row=2))
    server = PartyServer(KEY, "host", party.handle).start()
    yield guest, host, server
    server.shutdown()


def _client(server: PartyServer, session: str) -> PeerClient:
    return PeerClient(KEY, "guest", "127.0.0.1", server.port, session=session)


def test_partial_scores_only_follow_the_hosts_own_schedule(served) -> None:
    guest, _, server = served
    # given a finished job, when its session asks for partial scores again, then it is unknown
    client = _client(server, "job-1")
    train_guest(client, guest, _job("j1"))
    with pytest.raises(OrchardError, match="unknown or was aborted"):
        client.call(Message("partial", fields={"step": 0}))
    client.close()
    # when a session that never trained asks, then the host refuses (no schedule, no set-up)
    client = _client(server, "stranger")
    with pytest.raises(OrchardError, match="unknown"):
        client.call(Message("partial", fields={"step": 0}))
    client.call(Message("hello"))
    with pytest.raises(OrchardError, match="out of order"):
        client.call(Message("partial", fields={"step": 0}))
    client.close()


def test_a_row_is_served_once_per_scheduled_batch_and_never_out_of_order(served) -> None:
    guest, _, server = served

    class Greedy(PeerClient):
        """Asks for the same batch twice and for a batch ahead of the schedule."""

        def __init__(self, *args, **kwargs) -> None:
            super().__init__(*args, **kwargs)
            self.tried: list[str] = []

        def call(self, message: Message, step: str = "") -> Message:
            reply = super().call(message, step)
            if message.kind == "partial":
                for ask in ({"step": message.fields["step"]}, {"step": message.fields["step"] + 5}):
                    try:
                        super().call(Message("partial", fields=ask), step)
                        self.tried.append("answered")
                    except OrchardError as exc:
                        self.tried.append(str(exc))
            return reply

    client = Greedy(KEY, "guest", "127.0.0.1", server.port, session="greedy")
    train_guest(client, guest, _job("greedy"))
    client.close()
    assert client.tried and all("out of order" in t for t in client.tried), client.tried[:4]


def test_reveals_are_budgeted_per_row_and_old_parts_are_retired(served, tmp_path: Path) -> None:
    guest, host, server = served
    # given two jobs (each reveals the out-of-time rows once: the budget of 2 is then used up)
    parts = []
    for j in range(2):
        client = _client(server, f"job-{j}")
        parts.append(train_guest(client, guest, _job(f"j{j}", seed=j)).model.host_part_id)
        client.close()
    # then the first job's part is retired and cannot be scored
    client = _client(server, "score-old")
    with pytest.raises(OrchardError, match="retired"):
        partial_scores(client, parts[0], guest["customer_key"].head(10).tolist(), purpose="test")
    client.close()
    assert (tmp_path / "host" / "models" / "retired" / f"{parts[0]}.json").exists(), "old part moved away"
    # when the active part scores out-of-time rows (already revealed twice) and a training row (never)
    test_key = sorted(
        k for k in guest["customer_key"] if k.split(":")[1] >= "2019-10" and k in set(host["customer_key"])
    )[0]
    train_key = sorted(
        k for k in guest["customer_key"] if k.split(":")[1] <= "2019-09" and k in set(host["customer_key"])
    )[0]
    client = _client(server, "score-new")
    u = partial_scores(client, parts[1], [test_key, train_key], purpose="test")
    client.close()
    # then the exhausted row gets no score and the fresh one does
    assert np.isnan(u[0]) and np.isfinite(u[1]), f"budgeted reveals: {u}"
    # and a third job cannot evaluate on rows whose budget is spent
    client = _client(server, "job-3")
    with pytest.raises(OrchardError, match="reveal budget"):
        train_guest(client, guest, _job("j3"))
    client.close()


def test_a_score_request_needs_an_open_scoring_session(served) -> None:
    guest, _, server = served
    client = _client(server, "job")
    part = train_guest(client, guest, _job("j")).model.host_part_id
    client.close()
    # when the guest asks for scores in a training session or with no session, then the host refuses
    for session in ("training", "none"):
        client = _client(server, session)
        if session == "training":
            client.call(Message("hello"))
        with pytest.raises(OrchardError, match=r"unknown|not part of a score session"):
            client.call(Message("score", fields={"part_id": part}))
        client.close()
    # when it opens a session without a purpose or for more ids than allowed, then it is refused
    client = _client(server, "no-purpose")
    with pytest.raises(OrchardError, match="purpose"):
        client.call(Message("score_open", fields={"part_id": part, "ids": 5, "purpose": ""}))
    with pytest.raises(OrchardError, match="may present"):
        client.call(Message("score_open", fields={"part_id": part, "ids": 10**6, "purpose": "x"}))
    client.close()
