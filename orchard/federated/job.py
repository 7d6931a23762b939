"""The coordinator of a joint job: starts the two party processes, waits for the guest, records the outcome."""

from __future__ import annotations

import json
import logging
import os
import secrets
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from model_registry.registry import load_model
from orchard.atomic import write_json
from orchard.errors import OrchardError
from orchard.federated.channel import PeerClient, load_key, wait_until_healthy, write_secret
from orchard.federated.data import VerticalSplit, simulator_guest_spec, simulator_host_spec
from orchard.federated.guest import JointTreeModel, joint_score_frame, partial_scores, pd_frame, tree_scores
from orchard.federated.paillier_lr import LRConfig
from orchard.federated.party import party_state_dir
from orchard.federated.party_spec import PartyTable
from orchard.federated.secureboost_tree import SBConfig
from orchard.ports import free_port
from orchard.settings import Settings, tool_environment

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class PartyHomes:
    """The two parties' own homes, key file and data files."""

    guest_home: Path
    host_home: Path
    key_file: Path
    guest_data: Path
    host_data: Path
    guest_spec: Path
    host_spec: Path


def prepare_parties(
    settings: Settings,
    split: VerticalSplit,
    guest_spec: PartyTable | None = None,
    host_spec: PartyTable | None = None,
) -> PartyHomes:
    """Give each party its state folder (the host its own ORCHARD_HOME), its table spec and the channel key."""
    guest_dir = party_state_dir(settings, "guest")
    host_home = settings.federated_dir / "host_home"
    host_dir = host_home / "federated" / "host"
    key_file = guest_dir / "channel.key"
    if not key_file.exists():
        write_secret(secrets.token_hex(32), key_file)
    host_key = host_dir / "channel.key"
    if not host_key.exists() or host_key.read_text() != key_file.read_text():
        write_secret(key_file.read_text(), host_key)
    guest_spec_file = write_json(
        (guest_spec or simulator_guest_spec()).model_dump(), guest_dir / "table_spec.json"
    )
    host_spec_file = write_json(
        (host_spec or simulator_host_spec()).model_dump(), host_dir / "table_spec.json"
    )
    return PartyHomes(
        guest_home=settings.home,
        host_home=host_home,
        key_file=key_file,
        guest_data=split.guest_path,
        host_data=split.host_path,
        guest_spec=guest_spec_file,
        host_spec=host_spec_file,
    )


def _env(home: Path, settings: Settings) -> dict[str, str]:
    party = settings.model_copy(update={"home": home})
    env = {**os.environ, **tool_environment(party), "ORCHARD_HOME": str(home.resolve())}
    env.pop("PREFECT_API_URL", None)
    return env


def party_args(role: str, port: int, data: Path, key_file: Path, spec: Path, extra: list[str]) -> list[str]:
    """Return the command line of a party process."""
    return [
        sys.executable,
        "-m",
        "orchard.federated.party",
        "--role",
        role,
        "--port",
        str(port),
        "--data",
        str(data),
        "--key-file",
        str(key_file),
        "--spec",
        str(spec),
        *extra,
    ]


def start_host(
    settings: Settings,
    homes: PartyHomes,
    port: int,
    record_dir: Path | None = None,
    idle_timeout_seconds: float = 120.0,
    policy: dict[str, Any] | None = None,
    die_with_parent: bool = False,
) -> subprocess.Popen[bytes]:
    """Start the host party process and return it once it answers (stopped again if it never does).

    `die_with_parent`: the kernel kills it when the thread that starts it ends, this process included (Linux).
    """
    extra = ["--idle-timeout", str(idle_timeout_seconds)]
    if record_dir:
        extra += ["--record-dir", str(record_dir)]
    if policy:
        extra += ["--policy", str(write_json(policy, homes.host_home / "federated" / "host" / "policy.json"))]
    if die_with_parent:
        extra += ["--die-with", str(os.getpid())]
    host_key = homes.host_home / "federated" / "host" / "channel.key"
    log_path = homes.host_home / "federated" / "host" / "party.log"
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "ab") as log_file:
        proc = subprocess.Popen(
            party_args("host", port, homes.host_data, host_key, homes.host_spec, extra),
            env=_env(homes.host_home, settings),
            stdout=log_file,
            stderr=log_file,
        )
    try:
        wait_until_healthy("127.0.0.1", port, timeout_seconds=60)
    except BaseException:
        stop_host(proc)
        raise
    return proc


def stop_host(proc: subprocess.Popen[bytes]) -> None:
    """Stop a host party process (by its own pid): SIGTERM, then SIGKILL after 10 s."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@contextmanager
def host_process(
    settings: Settings,
    homes: PartyHomes,
    port: int,
    record_dir: Path | None = None,
    idle_timeout_seconds: float = 120.0,
    policy: dict[str, Any] | None = None,
) -> Iterator[subprocess.Popen[bytes]]:
    """Start the host party process and stop it (by its own pid) on exit."""
    proc = start_host(settings, homes, port, record_dir, idle_timeout_seconds, policy)
    try:
        yield proc
    finally:
        stop_host(proc)


def write_job(settings: Settings, job: dict[str, Any]) -> tuple[Path, Path]:
    """Write a job's spec under the guest's state (any earlier result of the same job removed); return the spec
    file and the file its result goes to."""
    jobs_dir = party_state_dir(settings, "guest") / "jobs"
    job_file = write_json(job, jobs_dir / f"{job['job_id']}.job.json")
    result_file = jobs_dir / f"{job['job_id']}.result.json"
    if result_file.exists():
        result_file.unlink()
    return job_file, result_file


def start_guest(
    settings: Settings, homes: PartyHomes, port: int, job: dict[str, Any], record_dir: Path | None = None
) -> tuple[subprocess.Popen[bytes], Path]:
    """Start the guest process running one job; return it and its result file."""
    job_file, result_file = write_job(settings, job)
    jobs_dir = job_file.parent
    extra = ["--job-file", str(job_file), "--result-file", str(result_file)]
    if record_dir:
        extra += ["--record-dir", str(record_dir)]
    log_path = jobs_dir / f"{job['job_id']}.log"
    with open(log_path, "ab") as log_file:
        proc = subprocess.Popen(
            party_args("guest", port, homes.guest_data, homes.key_file, homes.guest_spec, extra),
            env=_env(homes.guest_home, settings),
            stdout=log_file,
            stderr=log_file,
        )
    return proc, result_file


def read_result(proc: subprocess.Popen[bytes], result_file: Path, timeout_seconds: float) -> dict[str, Any]:
    """Wait for the guest and return its result record, or raise naming why the job failed."""
    try:
        code = proc.wait(timeout=timeout_seconds)
    except subprocess.TimeoutExpired as exc:
        proc.kill()
        proc.wait()
        raise OrchardError(f"the joint job did not finish within {timeout_seconds:.0f} s") from exc
    record = json.loads(result_file.read_text()) if result_file.exists() else {}
    if code != 0 or record.get("status") != "registered":
        detail = record.get("error") or f"the guest process exited with code {code} and no result"
        raise OrchardError(f"joint job failed: {detail}")
    return record


def job_spec(
    job_id: str,
    split: VerticalSplit,
    config: LRConfig,
    model_name: str,
    holdout_vintages: int = 3,
    *,
    compare: bool = False,
    activate: bool = True,
    algorithm: str = "hetero_lr",
    sb_config: SBConfig | None = None,
) -> dict[str, Any]:
    """Return the job spec the guest reads (compare/activate: a retrain gated against the champion's part).

    algorithm "secureboost" trains hetero SecureBoost with sb_config (default SBConfig()) instead of the LR.
    """
    spec = {
        "job_id": job_id,
        "model_name": model_name,
        "config": config.as_dict(),
        "holdout_vintages": holdout_vintages,
        "batch_ids": split.batch_ids,
        "guest_sha256": split.guest_sha256,
        "compare": compare,
        "activate": activate,
        "algorithm": algorithm,
    }
    if algorithm == "secureboost":
        spec["sb_config"] = (sb_config or SBConfig()).as_dict()
    return spec


def run_joint_job(
    settings: Settings,
    split: VerticalSplit,
    job_id: str,
    config: LRConfig,
    model_name: str = "precredit_response_joint",
    record_dir: Path | None = None,
    timeout_seconds: float = 3600.0,
    guest_spec: PartyTable | None = None,
    host_spec: PartyTable | None = None,
    algorithm: str = "hetero_lr",
    sb_config: SBConfig | None = None,
) -> dict[str, Any]:
    """Run a joint training job between two fresh party processes; return the guest's result record.

    algorithm "secureboost" grows hetero SecureBoost trees (sb_config) instead of the LR (config unused).
    """
    homes = prepare_parties(settings, split, guest_spec, host_spec)
    port = free_port()
    started = time.perf_counter()
    with host_process(settings, homes, port, record_dir):
        proc, result_file = start_guest(
            settings,
            homes,
            port,
            job_spec(job_id, split, config, model_name, algorithm=algorithm, sb_config=sb_config),
            record_dir,
        )
        record = read_result(proc, result_file, timeout_seconds)
    record["job_wall_seconds"] = round(time.perf_counter() - started, 3)
    log.info("joint job %s registered %s v%s", job_id, record.get("model"), record.get("version"))
    return record


def joint_score(
    settings: Settings,
    model_name: str,
    ref: str | int,
    frame: pd.DataFrame,
    peer_port: int,
    key_file: Path,
    purpose: str,
    peer_host: str = "127.0.0.1",
) -> pd.DataFrame:
    """Score customers with a registered joint model through a logged scoring session at the host.

    A hetero-LR model gets the host's partial scores (an unmatched customer is an error); a SecureBoost model
    gets the directions at the host nodes on each customer's path (unmatched or over budget: NaN PD, no tier).
    """
    model = load_model(settings, model_name, ref)
    key = load_key(key_file)
    client = PeerClient(key, "guest", peer_host, peer_port, session=f"score-{time.time_ns()}")
    try:
        if isinstance(model, JointTreeModel):
            pds = tree_scores(client, model, frame, purpose)
            return pd_frame(model.id_column, frame[model.id_column].to_numpy(), pds)
        ids = frame[model.id_column].astype(str).tolist()
        host_scores = partial_scores(client, model.host_part_id, ids, purpose)
    finally:
        client.close()
    return joint_score_frame(model, frame, host_scores)
