"""FATE 2.x reference: hetero coordinated LR (1024-bit Paillier) on the rows benchmarks.federated exported.

NOT part of Orchard: it runs in FATE's own virtual environment, outside the repo, and no test imports it.

    python3 -m venv /tmp/fate-venv && /tmp/fate-venv/bin/pip install pyfate==2.2.0
    .venv/bin/python -m benchmarks.federated --export-dir /tmp/orchard-fate-rows ...   # writes the CSVs
    /tmp/fate-venv/bin/python benchmarks/fate_reference.py --parties guest:9999 host:10000 arbiter:10001 \
        --rows_dir /tmp/orchard-fate-rows --epochs 5 --data_dir /tmp/orchard-fate-rows/fate-data

FATE's own multiprocess launcher (fate.arch.launchers) starts the three parties (guest, host, arbiter: the
arbiter holds FATE's Paillier key) as local processes with its standalone computing and federation. The rows
are the intersection already aligned by benchmarks.federated (both CSVs in the same order), so FATE's PSI is not
run; its per-epoch time is compared with Orchard's per-epoch time, which excludes Orchard's PSI too. The guest
writes its timings and the out-of-time AUC to <rows_dir>/fate_result.json.
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
    epochs: int = field(default=5)
    batch_size: int = field(default=4096)
    learning_rate: float = field(default=0.05)
    l2: float = field(default=1e-3)
    key_length: int = field(default=1024)


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


def run_reference(ctx: Any) -> None:
    """One party's part of the run (FATE calls this in each launched process)."""
    from fate.ml.glm import CoordinatedLRModuleArbiter, CoordinatedLRModuleGuest, CoordinatedLRModuleHost
    from fate.ml.utils import _optimizer

    args = HfArgumentParser(ReferenceArguments).parse_args_into_dataclasses(return_remaining_strings=True)[0]
    rows = Path(args.rows_dir)
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
        return
    role = "guest" if ctx.is_on_guest else "host"
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
        return
    frame = predicted.as_pd_df()
    bounds = [*epoch_starts, finished]
    result = {
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
    (rows / "fate_result.json").write_text(json.dumps(result, indent=2))
    log.warning("FATE reference: %s", result)


if __name__ == "__main__":
    launch(run_reference, extra_args_desc=[ReferenceArguments])
