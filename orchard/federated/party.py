"""A party process: `--role host` serves the platform's side; `--role guest` runs a joint job against it.

Run as `python -m orchard.federated.party --role host --port 8765 --data host.parquet --key-file key`
or through the CLI (`orchard party`, wired to party_command). Each party keeps its state in its own folder
(by default settings.federated_dir / role); the coordinator gives each process its own ORCHARD_HOME.
"""

from __future__ import annotations

import argparse
import json
import logging
import signal
import sys
import time
from pathlib import Path
from typing import Any

from orchard.atomic import write_json, write_parquet
from orchard.errors import OrchardError
from orchard.federated.channel import DEFAULT_MAX_BYTES, PartyServer, PeerClient, file_recorder, load_key
from orchard.federated.guest import GuestJob, abort_quietly, guest_data, train_guest
from orchard.federated.host import HostParty
from orchard.federated.host_sessions import HostPolicy
from orchard.federated.paillier_lr import LRConfig
from orchard.federated.party_spec import PartyTable, load_party_table
from orchard.federated.secureboost_tree import SBConfig
from orchard.runtime import load_settings
from orchard.settings import Settings
from orchard.worker import die_with

log = logging.getLogger(__name__)

ROLES = ("guest", "host")


def party_state_dir(settings: Settings, role: str) -> Path:
    """Return a party's own state folder under the settings' home."""
    return settings.federated_dir / role


def run_host(
    settings: Settings,
    port: int,
    data_path: Path,
    key_file: Path,
    host: str = "127.0.0.1",
    record_dir: Path | None = None,
    idle_timeout_seconds: float = 120.0,
    max_bytes: int = DEFAULT_MAX_BYTES,
    spec: PartyTable | None = None,
    policy: HostPolicy | None = None,
) -> None:
    """Serve the host party until SIGTERM/SIGINT."""
    if host not in ("127.0.0.1", "localhost", "::1"):
        raise OrchardError(f"parties listen on loopback only, not {host}")
    if not Path(data_path).exists():
        raise OrchardError(f"host data {data_path} does not exist")
    key = load_key(key_file)
    party = HostParty.from_file(
        Path(data_path),
        party_state_dir(settings, "host"),
        key,
        idle_timeout_seconds=idle_timeout_seconds,
        spec=spec,
        policy=policy,
    )
    recorder = file_recorder(record_dir) if record_dir else None
    server = PartyServer(
        key, "host", party.handle, host=host, port=port, max_bytes=max_bytes, recorder=recorder
    )
    party.start_reaper()

    def stop(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, stop)
    log.info("host party listening on %s:%d with %d rows", host, server.port, len(party.keys))
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        log.info("host party stopping")
    finally:
        party.stop()
        server.shutdown()


def run_guest(
    settings: Settings,
    peer_port: int,
    data_path: Path,
    key_file: Path,
    job_file: Path,
    result_file: Path,
    peer_host: str = "127.0.0.1",
    record_dir: Path | None = None,
    register: bool = True,
    table_spec: PartyTable | None = None,
) -> dict[str, Any]:
    """Run one joint job against the host, register the model, write and return the result record."""
    job = json.loads(Path(job_file).read_text())
    algorithm = str(job.get("algorithm", "hetero_lr"))
    try:
        config = LRConfig(**job.get("config", {}))
        sb_config = SBConfig(**job.get("sb_config", {})) if algorithm == "secureboost" else None
    except (TypeError, ValueError) as exc:
        raise OrchardError(f"job {job_file} has an invalid training config: {exc}") from exc
    spec = GuestJob(
        job_id=job["job_id"],
        model_name=job.get("model_name", "precredit_response_joint"),
        config=config,
        holdout_vintages=int(job.get("holdout_vintages", 3)),
        compare=bool(job.get("compare", False)),
        activate=bool(job.get("activate", True)),
        algorithm=algorithm,
        sb_config=sb_config,
        **({"spec": table_spec} if table_spec else {}),
    )
    key = load_key(key_file)
    recorder = file_recorder(record_dir) if record_dir else None
    client = PeerClient(
        key, "guest", peer_host, peer_port, session=f"{spec.job_id}-{time.time_ns()}", recorder=recorder
    )
    started = time.perf_counter()
    try:
        outcome = train_guest(client, guest_data(data_path), spec)
        # the guest's own out-of-time rows (labels, both models' PDs) and reference bins, for its gate and monitor
        window_file = write_parquet(outcome.window, result_file.with_suffix(".window.parquet"))
        reference_file = write_json(outcome.reference, result_file.with_suffix(".reference.json"))
        record: dict[str, Any] = {
            "status": "trained",
            **outcome.summary(),
            "window_file": str(window_file),
            "reference_file": str(reference_file),
            "host_part_id": outcome.model.host_part_id,
        }
        if register:
            # MLflow (seconds to import) is loaded only by a guest that registers its model
            from orchard.federated.registration import register_joint_model

            ref = register_joint_model(settings, outcome, job)
            record.update(status="registered", model=ref.name, version=ref.version, run_id=ref.run_id)
    except OrchardError as exc:
        abort_quietly(client, str(exc))
        record = {"status": "failed", "job_id": spec.job_id, "error": str(exc)}
        write_json(record, result_file)
        raise
    finally:
        client.close()
    record["wall_seconds"] = round(time.perf_counter() - started, 3)
    write_json(record, result_file)
    return record


def load_host_policy(path: Path) -> HostPolicy:
    """Return the host's limits stored (JSON) in a file, or raise naming the file and the problem."""
    try:
        return HostPolicy(**json.loads(Path(path).read_text()))
    except (OSError, ValueError, TypeError) as exc:
        raise OrchardError(f"cannot read the host policy {path}: {exc}") from exc


def party_command(
    settings: Settings,
    role: str,
    port: int,
    data: Path,
    key_file: Path,
    job_file: Path | None = None,
    result_file: Path | None = None,
    record_dir: Path | None = None,
    idle_timeout_seconds: float = 120.0,
    spec_file: Path | None = None,
    policy_file: Path | None = None,
) -> str:
    """CLI entry: serve the host, or run the guest's joint job; return a one-line summary."""
    if role not in ROLES:
        raise OrchardError(f"role must be one of {', '.join(ROLES)}, got {role!r}")
    spec = load_party_table(spec_file) if spec_file else None
    if spec is not None and spec.role != role:
        raise OrchardError(f"table spec {spec_file} describes a {spec.role} table, not the {role}'s")
    if role == "host":
        run_host(
            settings,
            port,
            data,
            key_file,
            record_dir=record_dir,
            idle_timeout_seconds=idle_timeout_seconds,
            spec=spec,
            policy=load_host_policy(policy_file) if policy_file else None,
        )
        return "host party stopped"
    if job_file is None or result_file is None:
        raise OrchardError("the guest needs --job-file and --result-file")
    record = run_guest(
        settings, port, data, key_file, job_file, result_file, record_dir=record_dir, table_spec=spec
    )
    return (
        f"joint job {record['job_id']}: {record['status']} {record.get('model', '')} "
        f"v{record.get('version', '-')}, test AUC {record['metrics']['auc_test']:.4f}"
    )


def main(argv: list[str] | None = None) -> int:
    """Parse arguments, build the settings at the edge, run the party; return the exit code."""
    parser = argparse.ArgumentParser(prog="orchard party", description=__doc__.splitlines()[0])
    parser.add_argument("--role", choices=ROLES, required=True)
    parser.add_argument("--port", type=int, required=True, help="host: port to listen on; guest: host's port")
    parser.add_argument("--data", type=Path, required=True, help="the party's own table (parquet)")
    parser.add_argument("--key-file", type=Path, required=True, help="pre-shared channel key (hex)")
    parser.add_argument("--job-file", type=Path, help="guest: the job spec (JSON)")
    parser.add_argument("--result-file", type=Path, help="guest: where to write the result record")
    parser.add_argument("--record-dir", type=Path, help="record every message crossing the channel here")
    parser.add_argument("--spec", type=Path, help="this party's table spec (YAML/JSON PartyTable)")
    parser.add_argument("--idle-timeout", type=float, default=120.0, help="host: abort a silent session")
    parser.add_argument("--policy", type=Path, help="host: its limits (JSON of HostPolicy fields)")
    parser.add_argument("--die-with", type=int, metavar="PID", help="end with this parent process (Linux)")
    args = parser.parse_args(argv)
    if args.die_with is not None:
        die_with(args.die_with)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    try:
        summary = party_command(
            load_settings(),
            args.role,
            args.port,
            args.data,
            args.key_file,
            args.job_file,
            args.result_file,
            args.record_dir,
            args.idle_timeout,
            args.spec,
            args.policy,
        )
    except OrchardError as exc:
        sys.stderr.write(f"error: {exc}\n")
        return 1
    sys.stdout.write(summary + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
