"""FATE 2.x reference: hetero coordinated LR or hetero SecureBoost (1024-bit Paillier) on the rows
benchmarks.federated exported.

NOT part of Orchard: it runs in FATE's own virtual environment, outside the repo, and no test imports it.

    uv venv /tmp/fate-venv --python 3.10 && uv pip install --python /tmp/fate-venv/bin/python pyfate==2.2.0 pandas==2.2.2
    .venv/bin/python -m benchmarks.federated --export-dir /tmp/orchard-fate-rows ...   # writes the CSVs
    /tmp/fate-venv/bin/python benchmarks/fate_reference.py --parties guest:9999 host:10000 arbiter:10001 \
        --rows_dir /tmp/orchard-fate-rows --epochs 5 --data_dir /tmp/orchard-fate-rows/fate-data
    /tmp/fate-venv/bin/python benchmarks/fate_reference.py --parties guest:9999 host:10000 \
        --rows_dir /tmp/orchard-fate-rows --algorithm secureboost --trees 3 --max_depth 3 --learning_rate 0.3 \
        --data_dir /tmp/orchard-fate-rows/fate-data

FATE's own multiprocess launcher (fate.arch.launchers) starts the parties as local processes with its
standalone computing and federation: guest, host and arbiter (which holds the Paillier key) for the LR
(fate.ml.glm CoordinatedLR), guest and host (the guest holds the key) for SecureBoost
(fate.ml.ensemble HeteroSecureBoostGuest/Host). The rows are the intersection already aligned by
benchmarks.federated (both CSVs in the same order), so FATE's PSI is not run; its per-epoch (per-tree) time is
compared with Orchard's, which excludes Orchard's PSI too. The guest writes its timings and the out-of-time AUC
to <rows_dir>/fate_result.json; every party writes the bytes it pushed to the others (payload of FATE's
federation: pickled objects and the serialised rows of pushed tables, no transport framing) to
<rows_dir>/fate_bytes_<role>.json.
"""

# No `from __future__ import annotations`: FATE's argument parser reads the dataclass field types at run time.

import itertools
import json
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fate.arch.launchers.argparser import HfArgumentParser
from fate.arch.launchers.multiprocess_launcher import launch

log = logging.getLogger(__name__)


@dataclass
class ReferenceArguments:
    """Options of the FATE reference run (the launcher adds --parties, --data_dir, --log_level)."""

    rows_dir: str = field(default="")
    algorithm: str = field(default="hetero_lr")  # or "secureboost"
    epochs: int = field(default=5)
    batch_size: int = field(default=4096)
    learning_rate: float = field(default=0.05)  # LR: Adam's; SecureBoost: the shrinkage of each tree
    l2: float = field(default=1e-3)  # LR: L2 penalty; SecureBoost: lambda
    key_length: int = field(default=1024)
    trees: int = field(default=3)
    max_depth: int = field(default=3)
    max_bin: int = field(default=32)
    min_leaf_node: int = field(default=256)  # Orchard's min_child_rows
    min_child_weight: float = field(default=1.0)
    min_impurity_split: float = field(
        default=1e-6
    )  # FATE's gain threshold (its default 1e-2); Orchard's gamma 0


def auc(labels: list[float], scores: list[float]) -> float:
    """Return the ROC AUC by the rank-sum formula (average ranks for ties)."""
    import numpy as np
    import pandas as pd

    ranks = pd.Series(scores).rank(method="average").to_numpy()
    y = np.asarray(labels) > 0.5
    positives, negatives = int(y.sum()), int((~y).sum())
    return float((ranks[y].sum() - positives * (positives + 1) / 2) / (positives * negatives))


def _frame(ctx: Any, path: Path, with_label: bool) -> Any:
    import pandas as pd
    from fate.arch.dataframe import PandasReader

    table = pd.read_csv(path)
    # Both parties' rows are aligned and in the same order, so the row number is a shared sample id.
    table.index = table.index.astype(str)
    reader = PandasReader(
        match_id_name="id", label_name="y" if with_label else None, label_type="int32", dtype="float32"
    )
    return reader.to_frame(ctx, table)


def _count_pushed_bytes() -> dict[str, float]:
    """Count what this party pushes through FATE's standalone federation (patched in this process only)."""
    from fate.arch.computing.backends.standalone import standalone_raw

    counts = {"bytes": 0.0, "tables": 0.0, "objects": 0.0, "counting_seconds": 0.0}
    push_table, push_bytes = standalone_raw.Federation.push_table, standalone_raw.Federation.push_bytes

    def counted_table(self: Any, table: Any, name: str, tag: str, parties: list[Any]) -> Any:
        started = time.perf_counter()
        size = sum(len(k) + len(v) for k, v in table.collect())
        counts["bytes"] += size * len(parties)
        counts["tables"] += len(parties)
        counts["counting_seconds"] += time.perf_counter() - started
        return push_table(self, table, name, tag, parties)

    def counted_bytes(self: Any, v: bytes, name: str, tag: str, parties: list[Any]) -> Any:
        counts["bytes"] += len(v) * len(parties)
        counts["objects"] += len(parties)
        return push_bytes(self, v, name, tag, parties)

    standalone_raw.Federation.push_table = counted_table  # type: ignore[method-assign]
    standalone_raw.Federation.push_bytes = counted_bytes  # type: ignore[method-assign]
    return counts


def _role(ctx: Any) -> str:
    return "guest" if ctx.is_on_guest else "host" if ctx.is_on_host else "arbiter"


def _write_bytes(rows: Path, ctx: Any, counts: dict[str, float]) -> None:
    (rows / f"fate_bytes_{_role(ctx)}.json").write_text(json.dumps(counts))


def _fit_lr(ctx: Any, args: ReferenceArguments, rows: Path) -> dict[str, Any] | None:
    from fate.ml.glm import CoordinatedLRModuleArbiter, CoordinatedLRModuleGuest, CoordinatedLRModuleHost
    from fate.ml.utils import _optimizer

    ctx.cipher.set_phe(ctx.device, {"kind": "paillier", "key_length": args.key_length})
    optimizer = {
        "method": "adam",
        "penalty": "l2",
        "alpha": args.l2,
        "optimizer_params": {"lr": args.learning_rate},
    }
    scheduler = {"method": "constant", "scheduler_params": {"factor": 1.0}}
    init = {"method": "zeros", "fit_intercept": True}
    common = {
        "epochs": args.epochs,
        "batch_size": args.batch_size,
        "optimizer_param": optimizer,
        "learning_rate_param": scheduler,
    }
    if ctx.is_on_arbiter:
        CoordinatedLRModuleArbiter(early_stop="diff", tol=0.0, **common).fit(ctx.sub_ctx("train"))
        return None
    role = _role(ctx)
    train = _frame(ctx, rows / f"{role}_train.csv", with_label=ctx.is_on_guest)
    test = _frame(ctx, rows / f"{role}_test.csv", with_label=ctx.is_on_guest)
    epoch_starts: list[float] = []
    original = _optimizer.Optimizer.set_iters

    def set_iters(self: Any, new_iters: int) -> None:  # FATE calls this at the start of every epoch
        epoch_starts.append(time.perf_counter())
        original(self, new_iters)

    _optimizer.Optimizer.set_iters = set_iters  # type: ignore[method-assign]
    if ctx.is_on_guest:
        module = CoordinatedLRModuleGuest(init_param=init, **common)
    else:
        module = CoordinatedLRModuleHost(init_param=init, **common)
    started = time.perf_counter()
    module.fit(ctx.sub_ctx("train"), train)
    finished = time.perf_counter()
    predicted = module.predict(ctx.sub_ctx("predict"), test)
    if not ctx.is_on_guest:
        return None
    frame = predicted.as_pd_df()
    bounds = [*epoch_starts, finished]
    return {
        "algorithm": "hetero_lr",
        "rows_train": len(train) if hasattr(train, "__len__") else None,
        "rows_test": len(frame),
        "epochs": args.epochs,
        "batch_size": args.batch_size,
        "key_length": args.key_length,
        "fit_seconds": round(finished - started, 3),
        "setup_seconds": round(epoch_starts[0] - started, 3) if epoch_starts else None,
        "epoch_seconds": [round(b - a, 3) for a, b in itertools.pairwise(bounds)],
        "auc_test": auc(frame["label"].tolist(), frame["predict_score"].tolist()),
    }


def _fit_secureboost(ctx: Any, args: ReferenceArguments, rows: Path) -> dict[str, Any] | None:
    from fate.ml.ensemble import HeteroSecureBoostGuest, HeteroSecureBoostHost
    from fate.ml.ensemble.algo.secureboost.hetero import guest as sb_guest
    from fate.ml.ensemble.learner.decision_tree.hetero.guest import HeteroDecisionTreeGuest

    role = _role(ctx)
    train = _frame(ctx, rows / f"{role}_train.csv", with_label=ctx.is_on_guest)
    test = _frame(ctx, rows / f"{role}_test.csv", with_label=ctx.is_on_guest)
    if not ctx.is_on_guest:
        module = HeteroSecureBoostHost(num_trees=args.trees, max_depth=args.max_depth, max_bin=args.max_bin)
        module.fit(ctx.sub_ctx("train"), train)
        module.predict(ctx.sub_ctx("predict"), test)
        return None
    # the guest holds the Paillier key (FATE's component sets it the same way)
    ctx.cipher.set_phe(ctx.device, {"kind": "paillier", "key_length": args.key_length})
    tree_starts: list[float] = []  # before the gradients of each boosting round
    tree_ends: list[float] = []  # after each tree is grown (both parties)
    compute_gh, booster_fit = sb_guest._compute_gh, HeteroDecisionTreeGuest.booster_fit

    def timed_gh(*a: Any, **k: Any) -> Any:
        tree_starts.append(time.perf_counter())
        return compute_gh(*a, **k)

    def timed_fit(self: Any, *a: Any, **k: Any) -> Any:
        out = booster_fit(self, *a, **k)
        tree_ends.append(time.perf_counter())
        return out

    sb_guest._compute_gh = timed_gh
    HeteroDecisionTreeGuest.booster_fit = timed_fit  # type: ignore[method-assign]
    module = HeteroSecureBoostGuest(
        num_trees=args.trees,
        max_depth=args.max_depth,
        learning_rate=args.learning_rate,
        objective="binary:bce",
        max_bin=args.max_bin,
        l2=args.l2,
        min_impurity_split=args.min_impurity_split,
        min_sample_split=2 * args.min_leaf_node,
        min_leaf_node=args.min_leaf_node,
        min_child_weight=args.min_child_weight,
    )
    started = time.perf_counter()
    module.fit(ctx.sub_ctx("train"), train)
    finished = time.perf_counter()
    predicted = module.predict(ctx.sub_ctx("predict"), test)
    predicted_at = time.perf_counter()
    frame = predicted.as_pd_df()
    return {
        "algorithm": "secureboost",
        "rows_train": len(train) if hasattr(train, "__len__") else None,
        "rows_test": len(frame),
        "trees": args.trees,
        "max_depth": args.max_depth,
        "max_bin": args.max_bin,
        "learning_rate": args.learning_rate,
        "lambda": args.l2,
        "min_leaf_node": args.min_leaf_node,
        "key_length": args.key_length,
        "fit_seconds": round(finished - started, 3),
        "setup_seconds": round(tree_starts[0] - started, 3) if tree_starts else None,  # binning, init scores
        # gradients + growing each tree; the score update and loss of a round are in fit_seconds only
        "epoch_seconds": [round(b - a, 3) for a, b in zip(tree_starts, tree_ends, strict=True)],
        "predict_seconds": round(predicted_at - finished, 3),
        "auc_test": auc(frame["label"].tolist(), frame["predict_score"].tolist()),
    }


def run_reference(ctx: Any) -> None:
    """One party's part of the run (FATE calls this in each launched process)."""
    args = HfArgumentParser(ReferenceArguments).parse_args_into_dataclasses(return_remaining_strings=True)[0]
    rows = Path(args.rows_dir)
    counts = _count_pushed_bytes()
    if args.algorithm == "secureboost":
        result = _fit_secureboost(ctx, args, rows)
    elif args.algorithm == "hetero_lr":
        result = _fit_lr(ctx, args, rows)
    else:
        raise ValueError(f"unknown algorithm {args.algorithm!r}: hetero_lr or secureboost")
    _write_bytes(rows, ctx, counts)
    if result is not None:
        (rows / "fate_result.json").write_text(json.dumps(result, indent=2))
        log.warning("FATE reference: %s", result)


if __name__ == "__main__":
    launch(run_reference, extra_args_desc=[ReferenceArguments])
