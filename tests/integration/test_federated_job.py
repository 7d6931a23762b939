"""Integration: two real party processes run PSI + Paillier hetero LR, register in MLflow, survive faults."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from model_registry.tracking import mlflow_client
from orchard.errors import OrchardError
from orchard.federated.channel import decode
from orchard.federated.data import GUEST_FEATURES, HOST_FEATURES, KEY, LABEL, Scaler, write_vertical_split
from orchard.federated.job import (
    host_process,
    job_spec,
    joint_score,
    prepare_parties,
    read_result,
    run_joint_job,
    start_guest,
)
from orchard.federated.paillier_lr import LRConfig
from orchard.ports import free_port
from orchard.settings import Settings
from orchard.simulate import simulate
from tests.conftest import make_settings

MODEL = "precredit_response_joint"
CONFIG = LRConfig(epochs=2, batch_size=256, key_bits=1024)


@pytest.fixture
def fed_settings(settings: Settings) -> Settings:
    """Small simulated population with a year of mature labels."""
    small = make_settings(settings.home, n_users=1_200, end_month="2020-03", corrupt_batches=[])
    simulate(small)
    return small


def _versions(settings: Settings) -> list:
    client = mlflow_client(settings)
    try:
        return client.search_model_versions(f"name = '{MODEL}'")
    except Exception:
        return []


def _forbidden_patterns(split_dir: Path) -> tuple[list[bytes], list[str]]:
    guest = pd.read_parquet(split_dir / "guest.parquet")
    host = pd.read_parquet(split_dir / "host.parquet")
    texts = sorted(set(guest[KEY]) | {k.split(":")[0] for k in guest[KEY]} | set(host[KEY].head(3000)))
    binary: list[bytes] = []
    for column in HOST_FEATURES:
        raw = host[column].to_numpy(dtype="<f8")
        z = Scaler.fit(host, [column]).transform(host)[:, 0]
        # a single float with few significant bytes (2.0) also occurs inside unrelated integers: skip those
        binary += [v.tobytes() for v in raw[:200] if sum(b != 0 for b in v.tobytes()) >= 4]
        binary += [v.tobytes() for v in z[:200].astype("<f8") if sum(b != 0 for b in v.tobytes()) >= 4]
        binary.append(raw[:4].tobytes())
    for column in GUEST_FEATURES:
        binary.append(guest[column].to_numpy(dtype="<f8")[:4].tobytes())
    y = guest[LABEL].dropna().astype(int).to_numpy()
    start = max(0, int(np.argmax(y == 1)) - 5)  # a window that holds both classes
    for dtype in ("<f8", "<i8", "<i4", "|u1", "|b1"):
        binary.append(y[start : start + 64].astype(dtype).tobytes())
    # constant runs (all zeros) are everywhere in any binary data: only distinctive patterns are evidence
    return [b for b in binary if len(set(b)) >= 2 and b.count(0) < len(b) - 1], texts


def test_a_split_without_digests_writes_the_same_tables(fed_settings: Settings, tmp_path: Path) -> None:
    # Given the parties' tables written with their digests (a job's lineage) and without (a month's scoring)
    hashed = write_vertical_split(fed_settings, tmp_path / "hashed")
    plain = write_vertical_split(fed_settings, tmp_path / "plain", digest=False)
    # Then the tables are the same, byte for byte, and only the digests were left out
    for a, b in ((hashed.guest_path, plain.guest_path), (hashed.host_path, plain.host_path)):
        assert a.read_bytes() == b.read_bytes()
    assert len(hashed.guest_sha256) == len(hashed.host_sha256) == 64
    assert plain.guest_sha256 == plain.host_sha256 == ""
    assert (plain.guest_rows, plain.host_rows, plain.batch_ids) == (
        hashed.guest_rows,
        hashed.host_rows,
        hashed.batch_ids,
    )


@pytest.mark.slow
def test_joint_job_registers_and_no_raw_data_crosses_the_wire(fed_settings: Settings, tmp_path: Path) -> None:
    # given the simulator's platform/lender split and a recorder on both parties
    split = write_vertical_split(fed_settings, tmp_path / "split")
    record_dir = tmp_path / "wire"
    # when a joint job runs between two processes
    record = run_joint_job(fed_settings, split, "job-wire", CONFIG, record_dir=record_dir)
    # then the model is registered with its parts and the intersection's lineage
    assert record["status"] == "registered" and record["version"] >= 1, f"registered: {record}"
    assert record["psi"]["matched"] > 100, f"intersection found: {record['psi']}"
    artifacts = {a.path for a in mlflow_client(fed_settings).list_artifacts(record["run_id"])}
    assert {"guest_part.json", "host_part.json", "intersection.json", "lineage.json"} <= artifacts, artifacts
    # and no raw id, feature value or label appears in any recorded message
    messages = [p.read_bytes() for p in sorted(record_dir.glob("*.bin"))]
    assert len(messages) > 10, f"messages were recorded: {len(messages)}"
    blob = b"\x00".join(messages)
    binary, texts = _forbidden_patterns(tmp_path / "split")
    leaked_text = [t for t in texts if t.encode() in blob]
    assert not leaked_text, f"raw ids on the wire: {leaked_text[:5]}"
    leaked_bin = [b for b in binary if b in blob]
    assert not leaked_bin, f"{len(leaked_bin)} raw feature/label byte patterns on the wire"
    assert b'"bad"' not in blob and b'"label"' not in blob, "no label field on the wire"
    # and no per-row plaintext value crosses during training: every float array is a reply of the final
    # model's evaluation (out-of-time rows only) or of a scoring session; all else is ciphertext or padded
    decoded = [decode(m) for m in messages]
    floats = {m.kind for m in decoded if any(a.dtype.kind == "f" for a in m.arrays.values())}
    assert floats <= {"evaluate"}, f"plaintext float arrays in {floats}"
    kinds = {m.kind for m in decoded}
    assert {"partial", "gradient", "update", "evaluate"} <= kinds, (
        f"the protocol's messages were recorded: {kinds}"
    )
    evaluated = [m for m in decoded if m.kind == "evaluate" and "u" in m.arrays]
    assert len(evaluated) == 2 and len(evaluated[0].arrays["u"]) == record["test_rows"], (
        "the guest sees plaintext host scores of the out-of-time rows only, once (both sides recorded it)"
    )

    # when a customer is scored jointly (the host returns its partial score over the channel)
    homes = prepare_parties(fed_settings, split)
    port = free_port()
    guest = pd.read_parquet(split.guest_path).head(20)
    with host_process(fed_settings, homes, port):
        scored = joint_score(
            fed_settings,
            MODEL,
            record["version"],
            guest,
            port,
            homes.key_file,
            purpose="pre-credit stratification of 20 applicants",
        )
    # then every customer gets a PD, score points and a pre-credit tier
    assert scored["pd"].between(0, 1).all() and len(scored) == 20, "PD per customer"
    assert set(scored["tier"]) <= {"A", "B", "C", "D"}, "tiers feed the pre-credit stratification"


def _wait_for(predicate, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("timed out waiting")
        time.sleep(0.05)


@pytest.mark.slow
def test_killed_host_fails_the_guest_cleanly_and_a_rerun_succeeds(
    fed_settings: Settings, tmp_path: Path
) -> None:
    # given a joint job whose host is killed as soon as training gradients start flowing
    split = write_vertical_split(fed_settings, tmp_path / "split")
    homes = prepare_parties(fed_settings, split)
    port = free_port()
    record_dir = tmp_path / "host-wire"
    config = LRConfig(epochs=50, batch_size=256)
    with host_process(fed_settings, homes, port, record_dir=record_dir) as host:
        proc, result_file = start_guest(fed_settings, homes, port, job_spec("job-kill", split, config, MODEL))
        _wait_for(
            lambda: any(b'"kind":"gradient"' in p.read_bytes()[:400] for p in record_dir.glob("host-in-*")),
            timeout=120,
        )
        host.kill()
        host.wait()
        # when the guest notices, then it fails with a clear message
        with pytest.raises(OrchardError, match="stopped responding during training epoch"):
            read_result(proc, result_file, timeout_seconds=120)
    # and nothing was registered
    assert _versions(fed_settings) == [], "a failed job registers nothing"
    # when the job is re-run, then it succeeds
    record = run_joint_job(fed_settings, split, "job-kill", CONFIG)
    assert record["status"] == "registered", f"re-run registers: {record}"


@pytest.mark.slow
def test_killed_guest_makes_the_host_abort_the_session(fed_settings: Settings, tmp_path: Path) -> None:
    # given a host with a short idle timeout and a guest killed mid-training
    split = write_vertical_split(fed_settings, tmp_path / "split")
    homes = prepare_parties(fed_settings, split)
    port = free_port()
    record_dir = tmp_path / "host-wire"
    with host_process(fed_settings, homes, port, record_dir=record_dir, idle_timeout_seconds=10):
        proc, _ = start_guest(
            fed_settings,
            homes,
            port,
            job_spec("job-guest-dies", split, LRConfig(epochs=50, batch_size=256), MODEL),
        )
        _wait_for(
            lambda: any(b'"kind":"gradient"' in p.read_bytes()[:400] for p in record_dir.glob("host-in-*")),
            timeout=120,
        )
        proc.kill()
        proc.wait()
        sessions = homes.host_home / "federated" / "host" / "sessions"
        # then the host records the session as failed with a clear reason
        _wait_for(lambda: any(b'"failed"' in p.read_bytes() for p in sessions.glob("*.json")), timeout=120)
    failed = [p.read_text() for p in sessions.glob("*.json") if b'"failed"' in p.read_bytes()]
    assert "guest went silent" in failed[0], failed
    assert _versions(fed_settings) == [], "nothing registered"
