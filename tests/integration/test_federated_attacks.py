"""Attacks on the federated protocol, run against the real party code over the real channel (in-process).

Each test plays one curious or malicious party with the real code of the other and asserts the attack fails.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from pathlib import Path

import numpy as np
import pandas as pd

from orchard.errors import OrchardError
from orchard.federated import host as host_module
from orchard.federated.channel import Message, PartyServer, PeerClient
from orchard.federated.data import HOST_FEATURES, KEY, LABEL
from orchard.federated.guest import GuestJob, partial_scores, train_guest
from orchard.federated.host import HostParty
from orchard.federated.host_sessions import HostPolicy
from orchard.federated.paillier_lr import RESIDUAL_BITS, LRConfig, signed
from tests.federated_tables import customer_keys, synthetic_tables

CHANNEL_KEY = secrets.token_bytes(32)


class Harvester(PeerClient):
    """A guest client that keeps every per-row score vector ("u") the host ever sends back."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.harvest: list[tuple[np.ndarray | None, np.ndarray]] = []

    def call(self, message: Message, step: str = "") -> Message:
        reply = super().call(message, step)
        if "u" in reply.arrays:
            positions = reply.arrays.get("positions", message.arrays.get("positions"))
            self.harvest.append((None if positions is None else np.asarray(positions), reply.arrays["u"]))
        return reply


def _serve(party: HostParty) -> PartyServer:
    return PartyServer(CHANNEL_KEY, "host", party.handle).start()


def _client(server: PartyServer, session: str, cls: type[PeerClient] = PeerClient) -> PeerClient:
    return cls(CHANNEL_KEY, "guest", "127.0.0.1", server.port, session=session)


def _old_style_hashed_ids(keys: list[str]) -> np.ndarray:
    """Scoring ids as the pre-fix protocol hashed them (HMAC under a key derived from the channel key)."""
    score_key = hmac.new(CHANNEL_KEY, b"orchard-score-ids-v1", hashlib.sha256).digest()
    raw = b"".join(hmac.new(score_key, k.encode(), hashlib.sha256).digest() for k in keys)
    return np.frombuffer(raw, dtype=np.uint8).reshape(-1, 32)


def _job(job_id: str, **config) -> GuestJob:
    base = {"epochs": 1, "batch_size": 256, "key_bits": 512}
    return GuestJob(
        job_id=job_id, model_name="joint", config=LRConfig(**{**base, **config}), holdout_vintages=3
    )


def _try(call) -> Message | None:
    try:
        return call()
    except OrchardError:
        return None


def test_least_squares_cannot_rebuild_host_features_from_repeated_jobs_and_scores(tmp_path: Path) -> None:
    # given a host, and a curious guest that knows the host features of 20 matched rows
    guest, host = synthetic_tables(n_matched=1500, seed=1)
    party = HostParty(host, tmp_path / "host", CHANNEL_KEY)
    server = _serve(party)
    matched = sorted(set(guest[KEY]) & set(host[KEY]))
    parts: list[str] = []
    equations: list[tuple[list[str], np.ndarray]] = []
    try:
        # when it runs 14 honest-looking jobs with varied settings and keeps every score vector it receives
        for j in range(14):
            client = _client(server, f"job-{j}", Harvester)
            job = _job(f"j{j}", seed=j, epochs=2 + j % 4, learning_rate=0.03 + 0.03 * j)
            outcome = _try(lambda c=client, g=job: train_guest(c, guest, g))
            if outcome is not None:
                parts.append(outcome.model.host_part_id)
            for positions, u in client.harvest:
                if positions is None and len(u) == len(matched):
                    equations.append((matched, u))
                elif positions is not None and len(u) == len(positions) and len(u) >= len(matched) // 2:
                    equations.append(([matched[p] for p in positions.tolist()], u))
            client.close()
        # and asks the host to score every matched id under every stored part (outside any session)
        for j, part in enumerate(parts):
            client = _client(server, f"score-{j}")
            ask = Message("score", fields={"part_id": part}, arrays={"ids": _old_style_hashed_ids(matched)})
            reply = _try(lambda c=client, m=ask: c.call(m))
            if reply is not None and len(reply.arrays.get("u", [])) == len(matched):
                equations.append((matched, np.asarray(reply.arrays["u"])))
            client.close()
    finally:
        server.shutdown()
    # then least squares over all it gathered cannot rebuild the host's features
    truth = host.set_index(KEY).loc[matched, HOST_FEATURES]
    known, unknown = matched[:20], matched[20:]
    scale = truth.std().to_numpy()
    table = pd.DataFrame(np.nan, index=matched, columns=range(len(equations)))
    for s, (keys, u) in enumerate(equations):
        table.loc[keys, s] = np.asarray(u, dtype=float)
    usable = [s for s in table.columns if table.loc[known, s].notna().all()]
    errors = []
    if usable:
        design = np.column_stack([truth.loc[known].to_numpy(), np.ones(len(known))])
        coef = np.linalg.lstsq(design, table.loc[known, usable].to_numpy(), rcond=None)[0]  # (13, S)
        for k in unknown:
            seen = [i for i, s in enumerate(usable) if np.isfinite(table.at[k, s])]
            if len(seen) == 0:
                continue
            a = coef[:-1, seen].T
            b = table.loc[k, [usable[i] for i in seen]].to_numpy(dtype=float) - coef[-1, seen]
            estimate = np.linalg.lstsq(a, b, rcond=None)[0]
            errors.append(np.abs(estimate - truth.loc[k].to_numpy()) / scale)
    median_error = float(np.median(np.concatenate(errors))) if errors else float("inf")
    per_row = max((table.loc[k].notna().sum() for k in unknown), default=0)
    assert median_error > 0.25, (
        f"host features rebuilt to {median_error:.4f} sd from {len(usable)} score vectors "
        f"(up to {per_row} equations per row)"
    )


def test_scoring_does_not_reveal_membership_of_enumerated_ids(tmp_path: Path) -> None:
    # given a host with a stored model part, and a guest that enumerates the id space
    guest, host = synthetic_tables(n_matched=700, n_host_only=300, seed=2)
    party = HostParty(host, tmp_path / "host", CHANNEL_KEY)
    server = _serve(party)
    try:
        client = _client(server, "job")
        part = train_guest(client, guest, _job("j")).model.host_part_id
        client.close()
        candidates = customer_keys(1200)
        # when it asks for scores of all enumerated ids with no scoring session
        client = _client(server, "enumerate")
        ask = Message("score", fields={"part_id": part}, arrays={"ids": _old_style_hashed_ids(candidates)})
        reply = _try(lambda: client.call(ask))
        client.close()
    finally:
        server.shutdown()
    # then the answer tells it nothing about which ids the host holds outside the intersection
    host_only = set(host[KEY]) - set(guest[KEY])
    learned = set()
    if reply is not None:
        u = np.asarray(reply.arrays.get("u", []), dtype=float)
        learned = {k for k, v in zip(candidates, u.tolist(), strict=False) if np.isfinite(v)} & host_only
    assert not learned, f"membership of {len(learned)} host-only ids revealed through scoring"


def test_enumeration_through_scoring_sessions_is_capped_by_the_hosts_budget(tmp_path: Path) -> None:
    # given a host whose policy allows 2 scoring sessions an hour of at most 100 ids each
    guest, host = synthetic_tables(n_matched=700, n_host_only=300, seed=5)
    party = HostParty(
        host, tmp_path / "host", CHANNEL_KEY, policy=HostPolicy(max_score_ids=100, score_sessions_per_hour=2)
    )
    server = _serve(party)
    candidates = customer_keys(1200)
    learned: set[str] = set()
    refusals: list[str] = []
    try:
        client = _client(server, "job")
        part = train_guest(client, guest, _job("j")).model.host_part_id
        client.close()
        # when the guest opens scoring sessions over the enumerated ids, 100 (then 1000) at a time
        for i, size in enumerate([100, 100, 100, 1000]):
            chunk = candidates[i * 100 : i * 100 + size]
            client = _client(server, f"score-{i}")
            try:
                u = partial_scores(client, part, chunk, purpose="enumeration")
                learned |= {k for k, v in zip(chunk, u.tolist(), strict=True) if np.isfinite(v)}
            except OrchardError as exc:
                refusals.append(str(exc))
            client.close()
    finally:
        server.shutdown()
    # then only the first two sessions were served, and every session was logged at the host with its purpose
    host_only = set(host[KEY]) - set(guest[KEY])
    assert len(learned & host_only) <= 200, f"{len(learned & host_only)} host-only memberships learned"
    assert any("rate limit" in r for r in refusals), f"the third session is rate-limited: {refusals}"
    logs = [p.read_text() for p in (tmp_path / "host" / "sessions").glob("score-*.json")]
    assert len(logs) == 2 and all('"purpose": "enumeration"' in t for t in logs), logs


class CuriousHost(HostParty):
    """Follows the protocol, but solves each batch's gradient for the residuals and reads labels from signs."""

    guesses: dict[int, int]

    def _on_gradient(self, message: Message) -> Message:
        session = self.sessions[message.session]
        # the batch's intersection positions: sent by the guest (old protocol) or the host's own schedule
        batch = message.arrays.get("positions", session.batch)
        reply = super()._on_gradient(message)
        self._batch = np.asarray(batch, dtype=np.int64)
        self._xq = session.quantised[self._batch]
        self._masks = list(session.masks)
        return reply

    def _on_update(self, message: Message) -> Message:
        session = self.sessions[message.session]
        n = int(session.public.n)
        totals = [int.from_bytes(bytes(row), "big") for row in np.asarray(message.arrays["plain"])]
        grad = np.array(
            [signed(t - int(r), n) for t, r in zip(totals, self._masks, strict=True)], dtype=float
        )
        if len(self._batch) <= self._xq.shape[1]:  # as many equations as unknowns: solve exactly
            d = np.linalg.lstsq(self._xq.T.astype(float), grad, rcond=None)[0] / float(1 << RESIDUAL_BITS)
            for position, value in zip(self._batch.tolist(), d.tolist(), strict=True):
                self.guesses[position] = int(value < 0)
        return super()._on_update(message)


def test_a_curious_host_cannot_read_labels_from_a_short_last_batch(tmp_path: Path) -> None:
    # given a training set whose size leaves a 3-row tail batch
    guest, host = synthetic_tables(n_matched=1100, n_guest_only=0, seed=3)
    party = CuriousHost(host, tmp_path / "host", CHANNEL_KEY)
    party.guesses = {}
    server = _serve(party)
    matched = sorted(set(guest[KEY]) & set(host[KEY]))
    n_train = sum(k.split(":")[1] <= "2019-09" for k in matched)
    try:
        client = _client(server, "job")
        # when the guest trains with a batch size that is n_train - 3
        train_guest(client, guest, _job("tail", batch_size=n_train - 3, epochs=3))
        client.close()
    finally:
        server.shutdown()
    # then the host reads no label exactly
    y = guest.set_index(KEY).loc[matched, LABEL].to_numpy()
    right = sum(party.guesses[p] == y[p] for p in party.guesses)
    assert not party.guesses, f"the host solved {len(party.guesses)} residuals; {right} labels right"


class VectorHost(HostParty):
    """Malicious: returns the guest's per-row ciphertexts as if they were its gradient, reads the plaintexts."""

    stolen: list[np.ndarray]

    def _on_gradient(self, message: Message) -> Message:
        honest = super()._on_gradient(message)
        arrays = {"masked": np.asarray(message.arrays["ciphertexts"])}
        if "guest_plain" in honest.arrays:  # the rest of the reply stays honest
            arrays["guest_plain"] = honest.arrays["guest_plain"]
        return Message("gradient", arrays=arrays)

    def _on_update(self, message: Message) -> Message:
        session = self.sessions[message.session]
        n = int(session.public.n)
        values = [
            signed(int.from_bytes(bytes(r), "big"), n) / float(1 << RESIDUAL_BITS)
            for r in message.arrays["plain"]
        ]
        self.stolen.append(np.array(values))
        session.masks = []
        return Message("update", fields={})


def test_a_host_returning_per_row_vectors_learns_no_labels(tmp_path: Path) -> None:
    # given a malicious host that sends the guest's own per-row ciphertexts back for decryption
    guest, host = synthetic_tables(n_matched=600, seed=4)
    party = VectorHost(host, tmp_path / "host", CHANNEL_KEY)
    party.stolen = []
    server = _serve(party)
    refused = ""
    try:
        client = _client(server, "job")
        # when the guest trains against it
        try:
            train_guest(client, guest, _job("vector"))
        except OrchardError as exc:
            refused = str(exc)
        client.close()
    finally:
        server.shutdown()
    # then the guest refuses to decrypt anything but one value per host feature, and no label leaks
    decrypted = sum(len(v) for v in party.stolen if len(v) > len(HOST_FEATURES))
    assert decrypted == 0, f"the guest decrypted {decrypted} per-row values for the host"
    assert "the host's padded sums" in refused and "expected" in refused, (
        f"the guest names the reply: {refused!r}"
    )


def test_module_exposes_no_unauthenticated_score_helper() -> None:
    # the pre-fix scoring helper hashed ids under a key both parties hold (enumerable): it must be gone
    assert not hasattr(host_module, "hashed_ids"), "scoring ids are no longer HMACs under a shared key"
