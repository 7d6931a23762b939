"""The host's side of monthly monitoring: period-scoped scoring, the noised CSI, gated parts, champion scores.

Every test drives the real HostParty over the real channel (in-process). The host's table declares a vintage
column; its part is trained once per module (train_guest against it) and each test starts from a copy of that
host state with the policy it needs.
"""

from __future__ import annotations

import json
import secrets
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from orchard.credit.psi import ReferenceProfile, psi
from orchard.errors import OrchardError
from orchard.federated import host_scoring as host_module
from orchard.federated.channel import Message, PartyServer, PeerClient
from orchard.federated.data import HOST_FEATURES, KEY, VINTAGE
from orchard.federated.guest import GuestJob, train_guest
from orchard.federated.host import HostParty
from orchard.federated.host_sessions import HostPolicy
from orchard.federated.paillier_lr import LRConfig
from orchard.federated.party_spec import FeatureColumn, PartyTable
from orchard.federated.psi_ecdh import Blinder, match
from tests.federated_tables import synthetic_tables

CHANNEL_KEY = secrets.token_bytes(32)
SHIFTED_MONTH = "2019-11"  # the host's feature SHIFTED moves by 2 sd in this month
QUIET_MONTH = "2019-12"
SHIFTED = HOST_FEATURES[2]
TRAIN_MONTHS = ("2019-07", "2019-08", "2019-09")  # train_guest holds out the last 3 of the 6 months
OPEN = HostPolicy(max_reveals_per_row=10, score_sessions_per_hour=100)


def _features() -> list[FeatureColumn]:
    return [FeatureColumn(name=name, type="float") for name in HOST_FEATURES]


HOST_SPEC = PartyTable(role="host", id_column=KEY, vintage_column=VINTAGE, features=_features())
HOST_SPEC_NO_VINTAGE = PartyTable(role="host", id_column=KEY, features=_features())


def _tables() -> tuple[pd.DataFrame, pd.DataFrame]:
    """Return (guest, host): 400 matched customer-months a month; the host has a vintage column."""
    guest, host = synthetic_tables(n_matched=2400, n_guest_only=60, n_host_only=300, seed=21)
    host[VINTAGE] = host[KEY].str.split(":").str[1]
    shifted = host[VINTAGE] == SHIFTED_MONTH
    host.loc[shifted, SHIFTED] += 2.0 * host[SHIFTED].std()
    return guest, host


def _job(job_id: str, seed: int = 0) -> GuestJob:
    config = LRConfig(epochs=1, batch_size=256, key_bits=512, seed=seed)
    return GuestJob(job_id=job_id, model_name="joint", config=config, holdout_vintages=3)


class FieldClient(PeerClient):
    """A guest client that adds fields to chosen message kinds and keeps the host's last reply of each kind."""

    def __init__(self, *args, extra: dict[str, dict] | None = None, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.extra = extra or {}
        self.replies: dict[str, Message] = {}

    def call(self, message: Message, step: str = "") -> Message:
        message.fields.update(self.extra.get(message.kind, {}))
        reply = super().call(message, step)
        self.replies[message.kind] = reply
        return reply


class RecordingHost(HostParty):
    """The real host, remembering each session's host rows at evaluation (to name the evaluated rows)."""

    aligned_at_evaluate: dict[str, np.ndarray]

    def _on_evaluate(self, message: Message) -> Message:
        self.aligned_at_evaluate[message.session] = np.array(self.sessions[message.session].aligned)
        return super()._on_evaluate(message)


@dataclass
class Served:
    """A host party over a copy of the trained state, served on loopback."""

    party: HostParty
    server: PartyServer
    state: Path
    part_id: str

    def client(self, session: str, **extra: dict) -> FieldClient:
        return FieldClient(CHANNEL_KEY, "guest", "127.0.0.1", self.server.port, session=session, extra=extra)

    def train(self, job_id: str, seed: int, **extra: dict) -> tuple[str, FieldClient]:
        client = self.client(f"job-{job_id}", **extra)
        try:
            part = train_guest(client, GUEST, _job(job_id, seed)).model.host_part_id
        finally:
            client.close()
        return part, client


GUEST, HOST = _tables()


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """Train the first part once (its evaluate asks for the champion's scores: there is none yet)."""
    state = tmp_path_factory.mktemp("monitoring") / "host"
    party = HostParty(HOST, state, CHANNEL_KEY, policy=OPEN, spec=HOST_SPEC)
    server = PartyServer(CHANNEL_KEY, "host", party.handle).start()
    try:
        served = Served(party, server, state, "")
        part, client = served.train("base", 0, evaluate={"compare": True})
    finally:
        server.shutdown()
    return {"state": state, "part_id": part, "first_evaluate": client.replies["evaluate"]}


def _serve(
    trained: dict,
    tmp_path: Path,
    policy: HostPolicy = OPEN,
    spec: PartyTable = HOST_SPEC,
    table: pd.DataFrame = HOST,
    cls: type[HostParty] = HostParty,
) -> Iterator[Served]:
    state = tmp_path / "host"
    if not state.exists():
        shutil.copytree(trained["state"], state)
    party = cls(table, state, CHANNEL_KEY, policy=policy, spec=spec)
    server = PartyServer(CHANNEL_KEY, "host", party.handle).start()
    try:
        yield Served(party, server, state, trained["part_id"])
    finally:
        server.shutdown()


@pytest.fixture
def served(trained: dict, tmp_path: Path) -> Iterator[Served]:
    yield from _serve(trained, tmp_path)


def scoring_session(
    served: Served, session: str, keys: list[str], purpose: str = "monthly monitoring", **scope
) -> tuple[np.ndarray, Message]:
    """Play the guest of one scoring session (own ECDH PSI); return u per key (NaN: unmatched) and the reply."""
    client = served.client(session)
    try:
        fields = {"part_id": served.part_id, "ids": len(keys), "purpose": purpose, **scope}
        client.call(Message("score_open", fields=fields))
        blinder = Blinder()
        reply = client.call(Message("psi_blind", arrays={"blinded": blinder.blind_ids(keys)}))
        host_double = blinder.blind_points(np.asarray(reply.arrays["host_blinded"]))
        guest_pos, host_pos = match(np.asarray(reply.arrays["double"]), host_double)
        client.call(Message("psi_result", arrays={"host_positions": host_pos.astype("<i8")}))
        reply = client.call(Message("score"))
    finally:
        client.close()
    u = np.full(len(keys), np.nan)
    u[guest_pos] = np.asarray(reply.arrays["u"], dtype=float)
    return u, reply


def _matched(month: str) -> list[str]:
    keys = set(GUEST[KEY]) & set(HOST[KEY])
    return sorted(k for k in keys if k.endswith(f":{month}"))


def _host_rows(keys: list[str]) -> pd.DataFrame:
    return HOST.set_index(KEY).loc[keys].reset_index()


def _reference() -> ReferenceProfile:
    """The reference the host should freeze: its features over the part's training rows, fitted here."""
    train = [k for month in TRAIN_MONTHS for k in _matched(month)]
    return ReferenceProfile.fit(_host_rows(train), numeric=HOST_FEATURES, categorical=[])


def _monitoring_record(served: Served, session: str) -> dict:
    return json.loads(
        (served.state / "monitoring" / f"{host_module._session_hash(session)}.json").read_text()
    )


# --- period-scoped scoring ---
def test_a_period_session_matches_only_the_host_rows_of_that_period(served: Served) -> None:
    # given ids of December and one id of November that the host holds
    december, other = _matched(QUIET_MONTH)[:30], _matched(SHIFTED_MONTH)[0]
    # when the guest scores them in a session scoped to December
    u, _ = scoring_session(served, "score-dec", [*december, other], period=QUIET_MONTH)
    # then December's ids are matched and November's is not, though the host holds it
    assert np.isfinite(u[:30]).all() and np.isnan(u[30]), f"period-scoped matches: {u}"
    unscoped, _ = scoring_session(served, "score-all", [*december, other])
    assert np.isfinite(unscoped).all(), "without a period the November id is matched (the host holds it)"
    # and the host's session log names the period
    logs = [json.loads(p.read_text()) for p in (served.state / "sessions").glob("score-*.json")]
    assert sorted(str(r.get("period")) for r in logs) == ["2019-12", "None"], logs


def test_a_period_session_needs_a_vintage_column_at_the_host(trained: dict, tmp_path: Path) -> None:
    # given a host whose table spec declares no vintage column
    for served in _serve(trained, tmp_path, spec=HOST_SPEC_NO_VINTAGE, table=HOST.drop(columns=[VINTAGE])):
        client = served.client("score-period")
        # when the guest opens a session scoped to a period, then the host refuses it, naming why
        with pytest.raises(OrchardError, match="vintage column"):
            client.call(
                Message(
                    "score_open",
                    fields={
                        "part_id": served.part_id,
                        "ids": 10,
                        "purpose": "monitoring",
                        "period": "2019-12",
                    },
                )
            )
        client.close()
        # and the refused session used none of the hourly sessions
        assert not list((served.state / "sessions").glob("score-*.json"))
        # while an unscoped session is still served
        u, _ = scoring_session(served, "score-plain", _matched(QUIET_MONTH)[:5])
        assert np.isfinite(u).all()


# --- the CSI of a monitoring session ---
def test_csi_flags_the_shifted_feature_and_stays_close_to_the_exact_value(
    trained: dict, tmp_path: Path
) -> None:
    # given a host with the default policy (noise 2.0, at least 200 rows, opaque names)
    for served in _serve(trained, tmp_path, policy=HostPolicy()):
        keys = [k for k in GUEST[KEY] if k.endswith(f":{SHIFTED_MONTH}")]
        # when the guest monitors the month whose host feature SHIFTED moved by 2 sd
        u, reply = scoring_session(served, "monitor-nov", keys, period=SHIFTED_MONTH, monitor=True)
        record = _monitoring_record(served, "monitor-nov")
    csi = reply.fields["csi"]
    # then the answer covers the revealed rows, under opaque labels only
    assert reply.fields["csi_rows"] == int(np.isfinite(u).sum()) == len(_matched(SHIFTED_MONTH)) == 400
    assert list(csi) == [f"host_feature_{i + 1}" for i in range(len(HOST_FEATURES))], list(csi)
    assert not set(csi) & set(HOST_FEATURES) and "csi_refused" not in reply.fields
    # and the host's own record holds the exact CSI, named, equal to the PSI against the training rows' bins
    exact = psi(_reference(), _host_rows(_matched(SHIFTED_MONTH)))
    assert record["csi"] == pytest.approx(exact, abs=1e-12), (record["csi"], exact)
    # and the noised answer is large for the shifted feature, small for the others, close to the exact value.
    # Bounds from 50,000 draws of the host's noise on these rows: shifted min 2.15 (exact 3.01), the others'
    # max 0.71, their mean |noised - exact| at most 0.074 (mean 0.019)
    answered = dict(zip(HOST_FEATURES, csi.values(), strict=True))
    others = {f: v for f, v in answered.items() if f != SHIFTED}
    assert answered[SHIFTED] > 1.5 > 1.0 > max(others.values()), answered
    assert np.mean([abs(v - exact[f]) for f, v in others.items()]) < 0.1, (others, exact)
    assert all(v == round(v, 4) for v in csi.values())


def test_the_same_question_gets_the_same_noise_and_another_question_fresh_noise(
    trained: dict, tmp_path: Path
) -> None:
    # given a host with its own secret noise key (made 0600 on first use) and the default noise
    keys = [k for k in GUEST[KEY] if k.endswith(f":{SHIFTED_MONTH}")]
    answers = []
    for served in _serve(trained, tmp_path, policy=HostPolicy(max_reveals_per_row=10)):
        # when the guest asks the same monitoring question twice, and once over one row fewer
        for n, rows in enumerate((keys, keys, keys[1:])):
            answers.append(
                scoring_session(served, f"repeat-{n}", rows, period=SHIFTED_MONTH, monitor=True)[1]
            )
        key_file = served.state / "csi_noise.key"
        assert key_file.stat().st_mode & 0o077 == 0
    first, again, other = (a.fields["csi"] for a in answers)
    # then repeating it cannot average the noise away, while another set of rows gets its own draw
    assert first == again
    assert first != other
    # and a host with another key (another platform, or a simulated one with its seed) answers otherwise
    for served in _serve(
        trained, tmp_path / "seeded", policy=HostPolicy(max_reveals_per_row=10, noise_seed=7)
    ):
        seeded = scoring_session(served, "seeded", keys, period=SHIFTED_MONTH, monitor=True)[1].fields["csi"]
    assert seeded != first


def test_csi_names_the_features_only_when_the_host_shares_them(trained: dict, tmp_path: Path) -> None:
    for served in _serve(trained, tmp_path, policy=HostPolicy(share_feature_names=True)):
        _, reply = scoring_session(
            served, "monitor-dec", _matched(QUIET_MONTH), period=QUIET_MONTH, monitor=True
        )
    assert list(reply.fields["csi"]) == HOST_FEATURES


def test_csi_is_refused_below_the_minimum_rows_or_without_a_reference(
    trained: dict, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def no_computation(*args, **kwargs):
        raise AssertionError("the host computed a CSI it must refuse")

    for served in _serve(trained, tmp_path, policy=HostPolicy()):
        monkeypatch.setattr(host_module, "proportion_matrices", no_computation)
        # when the guest monitors 150 rows (the minimum is 200)
        u, reply = scoring_session(served, "monitor-few", _matched(QUIET_MONTH)[:150], monitor=True)
        # then it gets the scores, no CSI, and the reason
        assert np.isfinite(u).all() and reply.fields["csi"] == {} and reply.fields["csi_rows"] == 150
        assert "below the host's minimum of 200" in reply.fields["csi_refused"], reply.fields
        assert not (served.state / "monitoring").exists(), "nothing computed, nothing recorded"
        # given a part stored before monitoring existed (no reference): then the CSI is refused too
        path = served.state / "models" / f"{served.part_id}.json"
        part = json.loads(path.read_text())
        del part["reference"]
        path.write_text(json.dumps(part))
        _, reply = scoring_session(served, "monitor-old", _matched(QUIET_MONTH), monitor=True)
        assert reply.fields["csi"] == {} and "no reference profile" in reply.fields["csi_refused"]


def test_the_stored_part_carries_the_reference_bins_of_its_training_rows(served: Served) -> None:
    part = json.loads((served.state / "models" / f"{served.part_id}.json").read_text())
    assert ReferenceProfile.from_dict(part["reference"]) == _reference()


# --- the differencing attack on the CSI ---
def _differencing_attack(served: Served, tag: str) -> tuple[float, float]:
    """A guest monitors S, then S + {k} for rows k whose host features it knows, then S + {x} per target x.

    For each continuous host feature it guesses that x shares the decile bin of the known row whose CSI
    difference (to S) is closest to x's. Returns (accuracy over targets x features, chance: the same
    guess with a random known row).
    """
    keys = _matched(QUIET_MONTH)
    order = np.random.default_rng(7).permutation(len(keys))
    base = [keys[i] for i in order[:250]]
    known = [keys[i] for i in order[250:290]]
    targets = [keys[i] for i in order[290:330]]

    def csi(extra: str | None, n: int) -> np.ndarray:
        ids = base if extra is None else [*base, extra]
        _, reply = scoring_session(served, f"{tag}-{n}", ids, period=QUIET_MONTH, monitor=True)
        assert "csi_refused" not in reply.fields, reply.fields
        return np.array(list(reply.fields["csi"].values()))

    baseline = csi(None, 0)
    known_d = np.array([csi(k, i + 1) - baseline for i, k in enumerate(known)])
    target_d = np.array([csi(x, 100 + i) - baseline for i, x in enumerate(targets)])
    reference = _reference()
    continuous = [j for j, f in enumerate(HOST_FEATURES) if HOST[f].nunique() > 2]
    hits, chance = [], []
    for j in continuous:
        column = reference.column(HOST_FEATURES[j])
        known_bins = column.bin_index(_host_rows(known)[HOST_FEATURES[j]])
        target_bins = column.bin_index(_host_rows(targets)[HOST_FEATURES[j]])
        for t in range(len(targets)):
            guess = int(np.argmin(np.abs(known_d[:, j] - target_d[t, j])))
            hits.append(known_bins[guess] == target_bins[t])
            chance.append(np.mean(known_bins == target_bins[t]))
    return float(np.mean(hits)), float(np.mean(chance))


@pytest.mark.slow(seconds=40)  # 162 monitoring sessions, each with its own PSI
def test_a_differencing_attack_on_the_csi_is_defeated_by_the_noise(trained: dict, tmp_path: Path) -> None:
    # given hosts whose reveal budget and session rate do not stop the attack (81 sessions over one month)
    lax = {"max_reveals_per_row": 10**6, "score_sessions_per_hour": 10**6}
    results = {}
    for noise in (0.0, HostPolicy().csi_noise_scale):
        for served in _serve(
            trained, tmp_path / f"noise-{noise}", policy=HostPolicy(csi_noise_scale=noise, **lax)
        ):
            # when the guest runs the differencing attack over 40 targets
            results[noise] = _differencing_attack(served, f"attack-{noise}")
    figures = {noise: f"accuracy {acc:.3f} (chance {chance:.3f})" for noise, (acc, chance) in results.items()}
    print(f"differencing attack on the CSI: {figures}")
    (exact_acc, exact_chance), (noisy_acc, noisy_chance) = results[0.0], results[2.0]
    # then without noise it recovers the targets' decile bins far above chance
    assert exact_acc > 0.6 and exact_acc > 4 * exact_chance, figures
    # and with the default noise it stays near chance (280 guesses: 0.1 above chance is over 5 sd)
    assert noisy_acc < noisy_chance + 0.1, figures


# --- candidate parts and the gate ---
def test_a_candidate_part_waits_for_the_gate(served: Served) -> None:
    models = served.state / "models"
    champion = served.part_id

    def candidate() -> str | None:
        path = models / "candidate.json"
        return json.loads(path.read_text())["part_id"] if path.exists() else None

    def decide(session: str, part_id: str, promote: bool) -> Message:
        client = served.client(session)
        try:
            return client.call(Message("part_decision", fields={"part_id": part_id, "promote": promote}))
        finally:
            client.close()

    # when a retrain finishes with activate false, then it is the candidate and the champion stays scorable
    first, _ = served.train("cand-1", 1, finish={"activate": False})
    assert candidate() == first and served.party.active_part() == champion
    u, _ = scoring_session(served, "score-champion", _matched(QUIET_MONTH)[:5])
    assert np.isfinite(u).all()
    # and the candidate itself may be scored (its gate measures its score stability on recent rows)
    as_first = Served(served.party, served.server, served.state, first)
    u, _ = scoring_session(as_first, "score-cand", _matched(QUIET_MONTH)[5:10])
    assert np.isfinite(u).all()
    # when a second candidate arrives, then the older one is retired and can no longer be scored
    second, _ = served.train("cand-2", 2, finish={"activate": False})
    assert candidate() == second and (models / "retired" / f"{first}.json").exists()
    with pytest.raises(OrchardError, match="retired or unknown"):
        scoring_session(as_first, "score-cand-retired", _matched(QUIET_MONTH)[10:15])
    # when the guest decides on a part that is not the candidate, then the host refuses
    for n, wrong in enumerate((first, champion, "host-part-0000000000000000")):
        with pytest.raises(OrchardError, match="not the host's candidate"):
            decide(f"decide-wrong-{n}", wrong, True)
    # when it rejects the candidate, then it is retired and the champion stays active
    reply = decide("decide-reject", second, False)
    assert reply.fields == {"part_id": second, "promoted": False, "active": champion}
    assert candidate() is None and served.party.active_part() == champion
    assert (models / "retired" / f"{second}.json").exists() and (models / f"{champion}.json").exists()
    with pytest.raises(OrchardError, match="already rejected"):
        decide("decide-again", second, True)
    # and the same decision again (a month redone after an interruption) is answered as it was
    assert decide("decide-replayed", second, False).fields == reply.fields
    with pytest.raises(OrchardError, match="no candidate"):
        decide("decide-unknown", "host-part-0000000000000000", True)
    # when a third candidate is promoted, then it is active and every other part is retired
    third, _ = served.train("cand-3", 3, finish={"activate": False})
    decide("decide-promote", third, True)
    assert served.party.active_part() == third and candidate() is None
    assert sorted(p.stem for p in models.glob("host-part-*.json")) == [third]
    with pytest.raises(OrchardError, match="retired"):
        scoring_session(served, "score-old-champion", _matched(QUIET_MONTH)[:5])
    # and both decisions are recorded in the host's sessions
    decisions = {
        r["part_id"]: r["status"]
        for r in (json.loads(p.read_text()) for p in (served.state / "sessions").glob("decision-*.json"))
    }
    assert decisions == {second: "rejected", third: "promoted"}, decisions


def test_evaluate_compare_returns_the_champions_scores_of_the_same_rows(
    trained: dict, tmp_path: Path
) -> None:
    # given no active part, the first job's compare got no champion scores
    assert "u_active" not in trained["first_evaluate"].arrays
    for served in _serve(trained, tmp_path, cls=RecordingHost):
        assert isinstance(served.party, RecordingHost)
        served.party.aligned_at_evaluate = {}
        # when a retrain evaluates with compare
        challenger, client = served.train(
            "challenger", 5, evaluate={"compare": True}, finish={"activate": False}
        )
        reply = client.replies["evaluate"]
        positions = np.asarray(reply.arrays["positions"])
        u_active, u_new = np.asarray(reply.arrays["u_active"]), np.asarray(reply.arrays["u"])
        rows = served.party.aligned_at_evaluate["job-challenger"][positions]
        keys = [served.party.keys[i] for i in rows.tolist()]
        # then u_active covers the same rows as u, and equals what a scoring session of the champion returns
        assert u_active.shape == u_new.shape == (len(keys),) and np.isfinite(u_active).all()
        assert not np.allclose(u_active, u_new), "the champion's scores, not the challenger's"
        sample = np.random.default_rng(3).choice(len(keys), 300, replace=False)
        scored, _ = scoring_session(served, "score-champion", [keys[i] for i in sample])
        assert served.party.active_part() == served.part_id != challenger
        np.testing.assert_allclose(scored, u_active[sample], rtol=0, atol=1e-12)
