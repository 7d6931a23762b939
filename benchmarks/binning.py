"""Benchmark: Orchard's binning + WOE + selection vs optbinning's BinningProcess with its defaults, side by side.

Run: python -m benchmarks.binning [--rows 200000] [--features 50] [--stepwise]. Both fit the same synthetic
sample (numeric and categorical columns, some informative, some noise, some missing values) and turn it into
WOE. Total IV is computed for both with the same formula (orchard.credit.metrics.information_value, no
smoothing) from each one's bin assignment, so the figures compare the bins, not two IV conventions.
"""

from __future__ import annotations

import argparse
import logging
import time
import warnings

import numpy as np
import pandas as pd

from orchard.credit.binning import fit_binning
from orchard.credit.metrics import information_value
from orchard.credit.selection import SelectionConfig, filter_by_iv, prune_correlated, select_features

log = logging.getLogger(__name__)
N_CATEGORICAL_SHARE = 0.2


def synthetic(n_rows: int, n_features: int, seed: int = 0) -> tuple[pd.DataFrame, np.ndarray, list[str]]:
    """Return a frame of numeric and categorical features, 0/1 labels, and the categorical column names."""
    rng = np.random.default_rng(seed)
    n_cat = max(1, int(n_features * N_CATEGORICAL_SHARE))
    columns: dict[str, np.ndarray] = {}
    logit = np.full(n_rows, -2.0)
    for i in range(n_features - n_cat):
        x = rng.normal(size=n_rows)
        weight = 0.6 / np.sqrt(1 + i) if i % 3 != 2 else 0.0  # every third numeric column is noise
        shape = x if i % 2 == 0 else np.abs(x)  # some relations are monotone, some U-shaped
        logit += weight * shape
        x = x * 10 + 50
        x[rng.random(n_rows) < 0.03] = np.nan
        columns[f"num_{i:02d}"] = x
    categorical = []
    for i in range(n_cat):
        levels = np.array([f"L{j}" for j in range(8)])
        codes = rng.integers(0, 8, n_rows)
        logit += (0.3 / (1 + i)) * (codes - 3.5) / 3.5
        columns[f"cat_{i:02d}"] = levels[codes]
        categorical.append(f"cat_{i:02d}")
    y = (rng.random(n_rows) < 1 / (1 + np.exp(-logit))).astype(int)
    return pd.DataFrame(columns), y, categorical


def run_orchard(
    frame: pd.DataFrame,
    y: np.ndarray,
    categorical: list[str],
    holdout: pd.DataFrame | None,
    y_hold: np.ndarray | None,
) -> tuple[float, float, int]:
    """Time Orchard's path; return seconds, total IV (same formula) and the number of features selected."""
    features = list(frame.columns)
    start = time.perf_counter()
    binning = fit_binning(frame, y, features, categorical)
    woe = binning.woe_frame(frame)
    iv = binning.iv()
    config = SelectionConfig(cv_folds=0)
    if holdout is None:
        kept, _ = filter_by_iv(iv, config.min_iv)
        kept, _ = prune_correlated(woe[kept], iv, config.max_correlation)
    else:
        kept = select_features(iv, woe, y, config, 0, binning.woe_frame(holdout), y_hold).selected
    elapsed = time.perf_counter() - start
    total = sum(information_value(b.bin_index(frame[b.feature]), y) for b in binning.features)
    return elapsed, total, len(kept)


def run_optbinning(frame: pd.DataFrame, y: np.ndarray, categorical: list[str]) -> tuple[float, float, int]:
    """Time BinningProcess with its defaults (fit + WOE transform); return seconds, total IV and selected."""
    from optbinning import BinningProcess

    features = list(frame.columns)
    start = time.perf_counter()
    process = BinningProcess(variable_names=features, categorical_variables=categorical)
    process.fit(frame, y)
    process.transform(frame, metric="woe")
    elapsed = time.perf_counter() - start
    indices = process.transform(frame, metric="indices")
    total = sum(information_value(indices[f].to_numpy(), y) for f in features)
    return elapsed, total, int(process.get_support().sum())


def main() -> None:
    """Run both paths on the same data and print time, total IV and their ratios."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=200_000)
    parser.add_argument("--features", type=int, default=50)
    parser.add_argument("--stepwise", action="store_true", help="add stepwise selection on a 30 %% holdout")
    args = parser.parse_args()
    warnings.filterwarnings("ignore")
    import optbinning  # noqa: F401  (its import takes seconds: keep it out of the timed blocks)

    frame, y, categorical = synthetic(args.rows, args.features)
    holdout = y_hold = None
    if args.stepwise:
        hold, y_hold_all, _ = synthetic(args.rows * 3 // 7, args.features, seed=1)
        holdout, y_hold = hold, y_hold_all
    o_time, o_iv, o_kept = run_orchard(frame, y, categorical, holdout, y_hold)
    b_time, b_iv, b_kept = run_optbinning(frame, y, categorical)
    selection = "IV >= 0.02 + |corr| <= 0.7" + (" + stepwise AUC on holdout" if args.stepwise else "")
    print(f"binning + WOE + selection on {args.rows:,} rows x {args.features} features (2 cores, 1 process)")
    print(f"{'path':<44} {'seconds':>8} {'total IV':>9} {'kept':>5}")
    print(f"{'orchard (optbinning quantile pre-bins, monotone)':<44} {o_time:8.2f} {o_iv:9.4f} {o_kept:5d}")
    print(f"{'optbinning BinningProcess defaults':<44} {b_time:8.2f} {b_iv:9.4f} {b_kept:5d}")
    print(
        f"time ratio optbinning / orchard: {b_time / o_time:.2f}x; IV ratio orchard / optbinning: "
        f"{o_iv / b_iv:.3f}; orchard selection: {selection}"
    )


if __name__ == "__main__":
    main()
