"""Benchmark: federated (two processes, PSI + Paillier hetero LR) vs centralised training on the same rows.

Run: python -m benchmarks.federated [--users N] [--epochs E] [--psi-ids K] [--psi-host-ids H] [--host-decoys R]
[--fate-python PATH [--fate-epochs E | --fate-trees T]]
[--algorithm secureboost --trees T --depth D --bins B --key-bits K].
--algorithm secureboost runs the real two-process hetero SecureBoost job instead of the LR and prints its wall
time, seconds per tree, bytes exchanged and out-of-time AUC next to the same trees trained centrally in
plaintext (train_reference: what the protocol must reproduce), LightGBM on the joined features
(centralised_twin), the guest-only trees and, with --fate-python, FATE 2.x's hetero SecureBoost on the same
rows with the same settings. Prints, side by side, wall time, bytes exchanged, time per epoch and out-of-time AUC of:
the joint model (federated), the same LR trained centrally on the joined data, the guest-only LR and, with
--fate-python, FATE 2.x's hetero coordinated LR on the same rows (benchmarks/fate_reference.py in FATE's own
venv); then ECDH-PSI throughput on K x K synthetic ids.

--host-decoys R gives the host, instead of its whole snapshot history (one row per user and month, ~24x the
lender's rows), the lender's matched customer-months plus R times as many other snapshots drawn at random:
the PSI then still separates matches from non-matches, but its cost does not swamp the training figures
(PSI throughput is measured on its own with --psi-ids). The training rows are the same either way.
"""

from __future__ import annotations

import argparse
import dataclasses
import io
import json
import logging
import os
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from orchard.atomic import frame_sha256, write_parquet
from orchard.credit.metrics import auc
from orchard.federated.data import (
    GUEST_FEATURES,
    HOST_FEATURES,
    KEY,
    LABEL,
    VINTAGE,
    Scaler,
    write_vertical_split,
)
from orchard.federated.job import run_joint_job
from orchard.federated.paillier_lr import LRConfig, sigmoid, train_plaintext, with_intercept
from orchard.federated.psi_ecdh import PARALLEL_FROM, Blinder, UnblindingBlinder, match
from orchard.federated.secureboost import fill_values, filled
from orchard.federated.secureboost_tree import SBConfig, centralised_twin, train_reference
from orchard.settings import Settings
from orchard.simulate import simulate

HOLDOUT_VINTAGES = 3
FATE_SCRIPT = Path(__file__).with_name("fate_reference.py")


@dataclasses.dataclass(frozen=True)
class Prepared:
    """The joined rows split out of time, standardised with scalers fitted on the training rows."""

    test: np.ndarray
    y: np.ndarray
    guest: np.ndarray
    host: np.ndarray

    @classmethod
    def of(cls, joined: pd.DataFrame, holdout: int) -> Prepared:
        """Return the prepared rows of a joined table (intersection sorted by key, as the guest orders it)."""
        months = sorted(joined[VINTAGE].unique())
        test = joined[VINTAGE].isin(months[-holdout:]).to_numpy()
        train = joined[~test]
        guest = Scaler.fit(train, GUEST_FEATURES).transform(joined)
        host = Scaler.fit(train, HOST_FEATURES).transform(joined)
        return cls(test=test, y=joined[LABEL].to_numpy(dtype=float), guest=guest, host=host)


def _central(rows: Prepared, config: LRConfig, host: bool, protocol: bool = False) -> tuple[float, float]:
    """Return (test AUC, training seconds) of the LR trained centrally on the prepared rows."""
    train = ~rows.test
    started = time.perf_counter()
    wg, wh = train_plaintext(
        rows.guest[train], rows.host[train] if host else None, rows.y[train], config, protocol
    )
    seconds = time.perf_counter() - started
    linear = with_intercept(rows.guest[rows.test]) @ wg
    if host:
        linear = linear + rows.host[rows.test] @ wh
    return auc(rows.y[rows.test], sigmoid(linear)), seconds


def host_with_decoys(host: pd.DataFrame, guest: pd.DataFrame, ratio: float, seed: int) -> pd.DataFrame:
    """Return the host rows matching guest keys plus ratio times as many non-matching rows (seeded draw)."""
    matched = host[KEY].isin(guest[KEY])
    others = host.loc[~matched]
    count = min(len(others), round(ratio * int(matched.sum())))
    decoys = others.sample(n=count, random_state=seed)
    return pd.concat([host.loc[matched], decoys]).sort_values(KEY).reset_index(drop=True)


def export_rows(joined: pd.DataFrame, rows: Prepared, out_dir: Path) -> Path:
    """Write the standardised rows as FATE reads them: {guest,host}_{train,test}.csv, aligned, same order."""
    out_dir.mkdir(parents=True, exist_ok=True)
    ids = joined[KEY].astype(str).to_numpy()
    guest = pd.DataFrame(rows.guest, columns=GUEST_FEATURES).assign(y=rows.y.astype(int))
    host = pd.DataFrame(rows.host, columns=HOST_FEATURES)
    for part, mask in (("train", ~rows.test), ("test", rows.test)):
        guest[mask].assign(id=ids[mask])[["id", "y", *GUEST_FEATURES]].to_csv(
            out_dir / f"guest_{part}.csv", index=False
        )
        host[mask].assign(id=ids[mask])[["id", *HOST_FEATURES]].to_csv(
            out_dir / f"host_{part}.csv", index=False
        )
    return out_dir


def run_fate(
    fate_python: Path, rows_dir: Path, config: LRConfig | SBConfig, timeout_seconds: float
) -> dict[str, Any]:
    """Run FATE's hetero coordinated LR (guest, host, arbiter) or, given an SBConfig, its hetero SecureBoost
    (guest, host) on the exported rows, in FATE's own venv as local processes; return the guest's result
    with wall_seconds and bytes_pushed (what all parties pushed through FATE's federation)."""
    result_file = rows_dir / "fate_result.json"
    result_file.unlink(missing_ok=True)
    for stale in rows_dir.glob("fate_bytes_*.json"):
        stale.unlink()
    secureboost = isinstance(config, SBConfig)  # SecureBoost has no arbiter: the guest holds the key
    parties = ["guest:9999", "host:10000"] if secureboost else ["guest:9999", "host:10000", "arbiter:10001"]
    common = [str(fate_python), str(FATE_SCRIPT), "--parties", *parties, "--rows_dir", str(rows_dir)]
    common += ["--data_dir", str(rows_dir / "fate-data"), "--log_level", "WARNING"]
    options: dict[str, Any]
    if isinstance(config, SBConfig):
        options = {
            "algorithm": "secureboost",
            "trees": config.trees,
            "max_depth": config.max_depth,
            "max_bin": config.max_bins,
            "learning_rate": config.learning_rate,
            "l2": config.reg_lambda,
            "min_leaf_node": config.min_child_rows,
            "min_child_weight": config.min_child_weight,
            "key_length": config.key_bits,
        }
    else:
        options = {
            "algorithm": "hetero_lr",
            "epochs": config.epochs,
            "batch_size": config.batch_size,
            "learning_rate": config.learning_rate,
            "l2": config.l2,
            "key_length": config.key_bits,
        }
    command = common + [item for key, value in options.items() for item in (f"--{key}", str(value))]
    started = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True, timeout=timeout_seconds, check=False)
    wall = time.perf_counter() - started
    if done.returncode != 0 or not result_file.exists():
        tail = (done.stderr or done.stdout)[-2000:]
        raise RuntimeError(f"the FATE reference run failed (exit {done.returncode}): {tail}")
    pushed = [json.loads(f.read_text()) for f in sorted(rows_dir.glob("fate_bytes_*.json"))]
    bytes_pushed = sum(p["bytes"] for p in pushed) if len(pushed) == len(parties) else None
    return {**json.loads(result_file.read_text()), "wall_seconds": wall, "bytes_pushed": bytes_pushed}


def psi_throughput(n_ids: int, n_host: int, parallel_from: int, unblind: bool = True) -> dict[str, float]:
    """Return the seconds of an ECDH PSI of n_ids guest x n_host host ids (n_ids // 2 of them shared), each
    party's passes timed apart (a pass over parallel_from values or more is split with a worker process).

    `unblind`: the guest takes its own blinding off its doubly-blinded ids (UnblindingBlinder, what the guest
    runs); otherwise it blinds the host's values again (the double-blind match it ran before session 21)."""
    guest_ids = [f"U{i:08d}" for i in range(n_ids)]
    host_ids = [f"U{i:08d}" for i in range(n_ids // 2, n_ids // 2 + n_host)]
    with UnblindingBlinder(parallel_from) as a, Blinder(parallel_from) as b:
        started = time.perf_counter()
        ga, curve = a.blind_ids_on_curve(guest_ids)
        guest_s = time.perf_counter() - started
        mark = time.perf_counter()
        gab = b.blind_points(ga)
        hb = b.blind_ids(host_ids)
        host_s = time.perf_counter() - mark
        mark = time.perf_counter()
        g, _ = match(a.unblind(gab, curve), hb) if unblind else match(gab, a.blind_points(hb))
        guest_s += time.perf_counter() - mark
        seconds = time.perf_counter() - started
    assert len(g) == min(n_ids - n_ids // 2, n_host), "PSI found the overlap"
    return {
        "seconds": seconds,
        "guest_seconds": guest_s,
        "host_seconds": host_s,
        "matched": float(len(g)),
        "bytes": float(ga.nbytes + gab.nbytes + hb.nbytes),
    }


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=12_000)
    parser.add_argument("--end-month", default="2021-12")
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--psi-ids", type=int, default=100_000)
    parser.add_argument(
        "--psi-host-ids", type=int, default=0, help="the host's ids in the PSI run (default: --psi-ids)"
    )
    parser.add_argument(
        "--host-decoys",
        type=float,
        default=None,
        help="host set = matched rows + this many times as many other snapshots",
    )
    parser.add_argument(
        "--fate-python",
        type=Path,
        default=None,
        help="python of a venv with pyfate 2.x: also run FATE's coordinated LR (or, with --algorithm "
        "secureboost, its hetero SecureBoost) on the same rows",
    )
    parser.add_argument(
        "--export-dir",
        type=Path,
        default=None,
        help="keep the exported CSV rows (and FATE's result) here instead of a temporary folder",
    )
    parser.add_argument(
        "--fate-epochs", type=int, default=None, help="epochs of the FATE run (default: --epochs)"
    )
    parser.add_argument(
        "--fate-trees", type=int, default=None, help="secureboost: trees of the FATE run (default: --trees)"
    )
    parser.add_argument("--fate-timeout", type=float, default=7200.0)
    parser.add_argument("--algorithm", choices=("hetero_lr", "secureboost"), default="hetero_lr")
    parser.add_argument("--trees", type=int, default=3, help="secureboost: boosting rounds")
    parser.add_argument("--depth", type=int, default=3, help="secureboost: tree depth")
    parser.add_argument("--bins", type=int, default=32, help="secureboost: bins per feature")
    parser.add_argument("--key-bits", type=int, default=1024, help="secureboost: the guest's Paillier key")
    return parser


def _tree_aucs(joined: pd.DataFrame, config: SBConfig) -> dict[str, tuple[float, float]]:
    """Return (test AUC, training seconds) of the centralised trees, LightGBM and the guest-only trees."""
    months = sorted(joined[VINTAGE].unique())
    test = joined[VINTAGE].isin(months[-HOLDOUT_VINTAGES:]).to_numpy()
    xg = joined[GUEST_FEATURES].to_numpy(dtype=float)
    xh = joined[HOST_FEATURES].to_numpy(dtype=float)
    fg, fh = fill_values(xg[~test]), fill_values(xh[~test])
    xg, xh = filled(xg, fg), filled(xh, fh)
    y = joined[LABEL].to_numpy(dtype=float)
    out = {}
    for name, host in (("reference", True), ("guest only", False)):
        started = time.perf_counter()
        model = train_reference(xg[~test], xh[~test] if host else None, y[~test], config)
        seconds = time.perf_counter() - started
        score = model.predict_score(xg[test], xh[test] if host else None)
        out[name] = (auc(y[test], sigmoid(score)), seconds)
    started = time.perf_counter()
    twin = centralised_twin(config).fit(np.hstack([xg, xh])[~test], y[~test])
    seconds = time.perf_counter() - started
    out["lightgbm"] = (auc(y[test], twin.predict_proba(np.hstack([xg, xh])[test])[:, 1]), seconds)
    for k in range(1, config.trees + 1):  # boosting is deterministic: the first k trees of the same fit
        model = train_reference(xg[~test], xh[~test], y[~test], dataclasses.replace(config, trees=k))
        out[f"reference {k}"] = (auc(y[test], sigmoid(model.predict_score(xg[test], xh[test]))), 0.0)
    return out


def main_secureboost(
    args: argparse.Namespace, settings: Settings, split: Any, joined: pd.DataFrame, tmp: Path
) -> None:
    """Run the two-process SecureBoost job on the split and print it next to the centralised trees (and,
    with --fate-python, FATE's hetero SecureBoost on the same rows, exported under tmp)."""
    config = SBConfig(trees=args.trees, max_depth=args.depth, max_bins=args.bins, key_bits=args.key_bits)
    central = _tree_aucs(joined, config)
    started = time.perf_counter()
    record = run_joint_job(
        settings, split, "bench-trees", LRConfig(), algorithm="secureboost", sb_config=config
    )
    fed_s = time.perf_counter() - started
    load = os.getloadavg()[1]
    trees = record["epoch_seconds"]
    stats = record["tree_stats"]
    print(
        f"rows: joined {len(joined)}, train {record['train_rows']}, test {record['test_rows']}; {config.trees} "
        f"trees of depth {config.max_depth}, {config.max_bins} bins, {config.key_bits}-bit Paillier, "
        f"min_child_rows {config.min_child_rows}"
    )
    print(f"{'':34}{'wall s':>10}{'MB exchanged':>14}{'s / tree':>10}{'test AUC':>10}")
    fed_mb = (record["bytes_sent"] + record["bytes_received"]) / 1e6
    fed_auc = record["metrics"]["auc_test"]
    print(
        f"{'SecureBoost federated (2 pr.)':34}{fed_s:>10.2f}{fed_mb:>14.1f}{np.mean(trees):>10.2f}{fed_auc:>10.4f}"
    )
    print(
        f"{'  of which PSI, trees, evaluation':34}{record['psi']['seconds']:>10.2f} "
        f"{record['seconds'].get('training', 0.0):.2f} {record['seconds'].get('evaluation', 0.0):.2f}"
    )
    print(f"{'  trees (s)':34}{' '.join(f'{t:.2f}' for t in trees)}")
    for i, s in enumerate(stats, start=1):
        print(
            f"{'':4}tree {i}: encryption {s['guest_encryption']:.2f} s (obfuscators {s['obfuscators']:.2f}), "
            f"host histograms incl. transfer {s['host_histograms']:.2f} s, guest gains {s['guest_gain']:.2f} s, "
            f"other {s['other']:.2f} s; {s['bytes_to_host'] / 1e6:.1f} MB to host, "
            f"{s['bytes_to_guest'] / 1e6:.1f} MB to guest, {int(s['decryptions'])} decryptions"
        )
    for name, label in (
        ("reference", "centralised (same trees, plain)"),
        ("lightgbm", "LightGBM centralised twin"),
        ("guest only", "guest-only trees (plain)"),
    ):
        value, seconds = central[name]
        print(f"{label:34}{seconds:>10.2f}{'':>14}{seconds / config.trees:>10.2f}{value:>10.4f}")
    print(
        f"AUC federated - centralised reference: {fed_auc - central['reference'][0]:+.2e}; "
        f"- LightGBM: {fed_auc - central['lightgbm'][0]:+.4f}; - guest only: {fed_auc - central['guest only'][0]:+.4f}"
    )
    curve = [central[f"reference {k}"][0] for k in range(1, config.trees + 1)]
    print(
        f"AUC of the same trees (centralised reference = federated) after 1..{config.trees} trees: "
        + " ".join(f"{a:.4f}" for a in curve)
    )
    loads = {"Orchard": load}
    if args.fate_python:
        # standardised rows, missing -> the training mean as Orchard fills them: the same order of values
        rows_dir = export_rows(
            joined, Prepared.of(joined, HOLDOUT_VINTAGES), args.export_dir or tmp / "fate_rows"
        )
        fate_config = dataclasses.replace(config, trees=args.fate_trees or config.trees)
        fate = run_fate(args.fate_python, rows_dir, fate_config, args.fate_timeout)
        loads["FATE"] = os.getloadavg()[1]
        fate_trees = fate["epoch_seconds"]
        fate_mb = None if fate["bytes_pushed"] is None else fate["bytes_pushed"] / 1e6
        shown = "not measured" if fate_mb is None else f"{fate_mb:.1f}"
        print(
            f"{'FATE 2.x hetero SecureBoost (2 pr.)':34}{fate['wall_seconds']:>10.2f}{shown:>14}"
            f"{np.mean(fate_trees):>10.2f}{fate['auc_test']:>10.4f}"
        )
        rest = fate["fit_seconds"] - fate["setup_seconds"] - sum(fate_trees)  # score updates, loss
        print(
            f"{'  binning, trees, rest, predict':34}{fate['setup_seconds']:>10.2f} "
            f"{sum(fate_trees):.2f} {rest:.2f} {fate['predict_seconds']:.2f}"
        )
        print(f"{'  trees (s)':34}{' '.join(f'{t:.2f}' for t in fate_trees)}")
        n = len(fate_trees)
        print(
            f"FATE s/tree / Orchard s/tree = {np.mean(fate_trees) / np.mean(trees):.1f}x on the same "
            f"{record['train_rows']} rows; FATE fit (binning + {n} trees) / Orchard training "
            f"({config.trees} trees) per tree = {fate['fit_seconds'] / n / (record['seconds'].get('training', fed_s) / config.trees):.1f}x; "
            f"AUC after {n} tree(s): FATE {fate['auc_test']:.4f}, Orchard {curve[min(n, config.trees) - 1]:.4f} "
            f"({fate['auc_test'] - curve[min(n, config.trees) - 1]:+.4f})"
        )
        reached = next((k for k, a in enumerate(curve, start=1) if a >= fate["auc_test"]), None)
        if reached:
            print(
                f"to FATE's AUC after {n} tree(s), Orchard needs {reached} tree(s): "
                f"{sum(fate_trees) / (reached * np.mean(trees)):.1f}x less tree time"
            )
        else:
            print(f"Orchard's {config.trees} tree(s) stay below FATE's AUC after {n} tree(s)")
        if fate_mb is not None:
            print(
                f"MB exchanged per tree, whole runs (FATE: binning, {n} tree(s), prediction; Orchard: PSI, "
                f"{config.trees} trees, evaluation): FATE {fate_mb / n:.1f}, Orchard {fed_mb / config.trees:.1f}, "
                f"{fate_mb / fed_mb * config.trees / n:.1f}x"
            )
    print(
        "5-min load average at the end of: "
        + ", ".join(f"{k} {v:.1f}" for k, v in loads.items())
        + f" ({os.cpu_count()} cores)"
    )


def _row(name: str, wall: float, mb: float | None, per_epoch: float, auc_value: float) -> str:
    shown = "not measured" if mb is None else f"{mb:.1f}"
    return f"{name:30}{wall:>10.2f}{shown:>14}{per_epoch:>11.3f}{auc_value:>10.4f}"


def main() -> None:
    """Run the comparison and print the figures."""
    args = _parser().parse_args()
    logging.basicConfig(level=logging.WARNING)
    config = LRConfig(epochs=args.epochs)
    with tempfile.TemporaryDirectory() as tmp:
        settings = Settings(
            _env_file=None,
            home=Path(tmp) / "orchard",
            n_users=args.users,  # type: ignore[call-arg]
            end_month=args.end_month,
            corrupt_batches=[],
        )
        simulate(settings)
        split = write_vertical_split(settings, Path(tmp) / "split")
        guest, host = pd.read_parquet(split.guest_path), pd.read_parquet(split.host_path)
        guest = guest[guest[LABEL].notna()]  # the rows the job trains and tests on (the rest is unlabelled)
        host_history = len(host)
        if args.host_decoys is not None:
            host = host_with_decoys(host, guest, args.host_decoys, seed=config.seed)
            split = dataclasses.replace(
                split,
                host_path=write_parquet(host, Path(tmp) / "split" / "host_decoys.parquet"),
                host_rows=len(host),
                host_sha256=frame_sha256(host),
            )
        joined = guest.merge(host.drop(columns=VINTAGE), on=KEY).sort_values(KEY).reset_index(drop=True)
        if args.algorithm == "secureboost":
            main_secureboost(args, settings, split, joined, Path(tmp))
            return
        rows = Prepared.of(joined, HOLDOUT_VINTAGES)
        auc_central, central_s = _central(rows, config, host=True)
        auc_guest, guest_s = _central(rows, config, host=False)
        auc_protocol, _ = _central(rows, config, host=True, protocol=True)
        curve = [
            _central(rows, dataclasses.replace(config, epochs=k), host=True)[0]
            for k in range(1, args.epochs + 1)
        ]
        # the federated fit equals the central fit of the protocol's loss: its AUC after each epoch
        protocol_curve = [
            _central(rows, dataclasses.replace(config, epochs=k), host=True, protocol=True)[0]
            for k in range(1, args.epochs + 1)
        ]
        shipped = io.BytesIO()
        joined.loc[:, [KEY, *HOST_FEATURES]].to_parquet(shipped)  # what centralising costs: the host's rows
        started = time.perf_counter()
        record = run_joint_job(settings, split, "bench", config)
        fed_s = time.perf_counter() - started
        load = {"federated": os.getloadavg()[1]}  # the machine is shared: say how busy it was
        fate = None
        if args.fate_python:
            rows_dir = export_rows(joined, rows, args.export_dir or Path(tmp) / "fate_rows")
            fate_config = dataclasses.replace(config, epochs=args.fate_epochs or config.epochs)
            fate = run_fate(args.fate_python, rows_dir, fate_config, args.fate_timeout)
            load["FATE"] = os.getloadavg()[1]
    epochs = record["epoch_seconds"]
    per_epoch = float(np.mean(epochs))
    print(
        f"rows: guest {len(guest)}, host {len(host)} (of {host_history} snapshots), joined {len(joined)}, "
        f"train {record['train_rows']}, test {record['test_rows']}; epochs {args.epochs}, "
        f"batch {config.batch_size}, {config.key_bits}-bit Paillier"
    )
    print(f"{'':30}{'wall s':>10}{'MB exchanged':>14}{'s / epoch':>11}{'test AUC':>10}")
    fed_mb = (record["bytes_sent"] + record["bytes_received"]) / 1e6
    print(_row("federated (2 processes)", fed_s, fed_mb, per_epoch, record["metrics"]["auc_test"]))
    print(f"{'  of which PSI':30}{record['psi']['seconds']:>10.2f}")
    print(f"{'  epochs (s)':30}{' '.join(f'{e:.2f}' for e in epochs)}")
    print(
        _row(
            "centralised (same LR)",
            central_s,
            len(shipped.getvalue()) / 1e6,
            central_s / args.epochs,
            auc_central,
        )
    )
    print(_row("guest only", guest_s, 0.0, guest_s / args.epochs, auc_guest))
    print(
        f"AUC federated - centralised: {record['metrics']['auc_test'] - auc_central:+.4f}; "
        f"federated - guest only: {record['metrics']['auc_test'] - auc_guest:+.4f}; centralised fit of the "
        f"protocol's linearised loss: {auc_protocol:.4f}"
    )
    print(
        "AUC of the exact-sigmoid LR (centralised reference) after 1.."
        f"{args.epochs} epochs: " + " ".join(f"{a:.4f}" for a in curve)
    )
    print(
        "AUC of the protocol's loss fitted centrally (what the federated fit reaches) after 1.."
        f"{args.epochs} epochs: " + " ".join(f"{a:.4f}" for a in protocol_curve)
    )
    if fate:
        fate_epoch = float(np.mean(fate["epoch_seconds"]))
        print(
            _row(
                "FATE 2.x coordinated LR (3 pr.)",
                fate["wall_seconds"],
                None if fate["bytes_pushed"] is None else fate["bytes_pushed"] / 1e6,
                fate_epoch,
                fate["auc_test"],
            )
        )
        print(f"{'  epochs (s)':30}{' '.join(f'{e:.2f}' for e in fate['epoch_seconds'])}")
        print(
            f"FATE s/epoch / Orchard s/epoch = {fate_epoch / per_epoch:.1f}x on the same {record['train_rows']} "
            f"rows; AUC FATE - Orchard federated: {fate['auc_test'] - record['metrics']['auc_test']:+.4f}"
        )
        reached = next((k for k, a in enumerate(protocol_curve, start=1) if a >= fate["auc_test"]), None)
        if reached:
            print(
                f"to FATE's AUC after {len(fate['epoch_seconds'])} epochs, Orchard needs {reached} epoch(s): "
                f"{sum(fate['epoch_seconds']) / (reached * per_epoch):.1f}x less training time"
            )
    print(
        "5-min load average at the end of: "
        + ", ".join(f"{k} {v:.1f}" for k, v in load.items())
        + f" ({os.cpu_count()} cores)"
    )
    if args.psi_ids:
        n_host = args.psi_host_ids or args.psi_ids
        for label, parallel_from, unblind in (
            ("one process per party, the guest blinds the host's ids again", 10**12, False),
            ("a worker per party, the guest blinds the host's ids again", PARALLEL_FROM, False),
            ("a worker per party, the guest unblinds its own ids", PARALLEL_FROM, True),
        ):
            psi = psi_throughput(args.psi_ids, n_host, parallel_from, unblind)
            print(
                f"ECDH-PSI (X25519) {args.psi_ids} x {n_host} ids, {label}: "
                f"{psi['seconds']:.1f} s (guest {psi['guest_seconds']:.1f} s, host {psi['host_seconds']:.1f} s), "
                f"{psi['bytes'] / 1e6:.1f} MB of blinded points"
            )


if __name__ == "__main__":
    main()
