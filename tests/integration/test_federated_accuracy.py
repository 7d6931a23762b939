"""The protected protocol (linearised residual, both keys) fits the same model as centralised LR on the joined rows."""

from __future__ import annotations

import secrets
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from orchard.credit.metrics import auc
from orchard.federated.channel import PartyServer, PeerClient
from orchard.federated.data import GUEST_FEATURES, HOST_FEATURES, KEY, LABEL, VINTAGE, Scaler
from orchard.federated.guest import GuestJob, train_guest
from orchard.federated.host import HostParty
from orchard.federated.paillier_lr import Helper, LRConfig, sigmoid, train_plaintext, with_intercept
from tests.federated_tables import synthetic_tables

KEY_BYTES = secrets.token_bytes(32)


def test_federated_auc_equals_centralised_lr_within_0_005(tmp_path: Path) -> None:
    # given 4,000 matched rows whose label depends on both parties' features
    guest, host = synthetic_tables(n_matched=4000, n_guest_only=100, n_host_only=500, seed=21)
    config = LRConfig(epochs=3, batch_size=256, key_bits=512)
    server = PartyServer(KEY_BYTES, "host", HostParty(host, tmp_path / "host", KEY_BYTES).handle).start()
    try:
        client = PeerClient(KEY_BYTES, "guest", "127.0.0.1", server.port, session="acc")
        # when trained federated (no party sees the other's per-row values)
        outcome = train_guest(client, guest, GuestJob(job_id="acc", model_name="joint", config=config))
        client.close()
    finally:
        server.shutdown()
    # and centrally with the exact sigmoid on the same joined, out-of-time-split rows
    joined = guest.merge(host.drop(columns=VINTAGE), on=KEY).sort_values(KEY).reset_index(drop=True)
    test = joined[VINTAGE].isin(sorted(joined[VINTAGE].unique())[-3:]).to_numpy()
    train = joined[~test]
    xg = Scaler.fit(train, GUEST_FEATURES).transform(joined)
    xh = Scaler.fit(train, HOST_FEATURES).transform(joined)
    y = joined[LABEL].to_numpy(dtype=float)
    wg, wh = train_plaintext(xg[~test], xh[~test], y[~test], config)
    central = auc(y[test], sigmoid(with_intercept(xg[test]) @ wg + xh[test] @ wh))
    guest_only = train_plaintext(xg[~test], None, y[~test], config)[0]
    alone = auc(y[test], sigmoid(with_intercept(xg[test]) @ guest_only))
    # then the federated AUC equals the centralised one within 0.005 and beats the guest alone
    federated = outcome.metrics["auc_test"]
    assert abs(federated - central) < 0.005, f"federated {federated:.4f} vs centralised {central:.4f}"
    assert federated > alone + 0.02, f"the host's features help: {federated:.4f} vs guest only {alone:.4f}"
    # and it is the centralised fit of the protocol's own linearised loss, to fixed-point precision
    pg, ph = train_plaintext(xg[~test], xh[~test], y[~test], config, protocol=True)
    same_loss = auc(y[test], sigmoid(with_intercept(xg[test]) @ pg + xh[test] @ ph))
    assert abs(federated - same_loss) < 1e-3, f"federated {federated:.4f} vs same loss {same_loss:.4f}"
    assert np.isfinite(outcome.metrics["n_test"]) and outcome.metrics["n_test"] == test.sum(), outcome.metrics


def _fit(
    tmp_path: Path, guest: pd.DataFrame, host: pd.DataFrame, config: LRConfig
) -> tuple[list[float], float]:
    server = PartyServer(KEY_BYTES, "host", HostParty(host, tmp_path / "host", KEY_BYTES).handle).start()
    try:
        client = PeerClient(KEY_BYTES, "guest", "127.0.0.1", server.port, session=tmp_path.name)
        outcome = train_guest(
            client, guest, GuestJob(job_id=tmp_path.name, model_name="joint", config=config)
        )
        client.close()
    finally:
        server.shutdown()
    return outcome.model.guest_weights, float(outcome.metrics["auc_test"])


def test_helper_processes_fit_the_very_same_model(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # given 1,500 matched rows, batches of 600 (each batch is split between a party and its helper)
    guest, host = synthetic_tables(n_matched=1500, n_guest_only=50, n_host_only=200, seed=5)
    base = {"epochs": 2, "batch_size": 600, "key_bits": 512}
    started: list[Helper] = []
    start = Helper.__init__

    def counted(self: Helper) -> None:
        started.append(self)
        start(self)

    monkeypatch.setattr(Helper, "__init__", counted)
    # when the same job runs with both parties' helper processes and without
    helped = _fit(tmp_path / "helped", guest, host, LRConfig(**base, helper_from=0))
    assert len(started) == 2, f"the guest and the host each started a helper, got {len(started)}"
    alone = _fit(tmp_path / "alone", guest, host, LRConfig(**base, helper_from=10**9))
    assert len(started) == 2, "no helper below the threshold"
    # then the fits are identical to the last bit (the halves' sums multiply to the whole's ciphertexts)
    assert helped == alone, f"same weights and AUC with and without helpers: {helped} vs {alone}"
