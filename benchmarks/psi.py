"""Benchmark: Orchard's PSI/CSI (frozen reference profile + monthly check) vs Evidently's DataDriftPreset(method="psi").

Run: python -m benchmarks.psi [--rows 1000000] [--numeric 40] [--categorical 10] [--no-memory]

Both run side by side in one process on the same seeded frames (default 1M rows x 50 columns: 40 numeric with
5 % missing, 10 categorical with 6 levels; the current month is shifted). Time is wall time (time.perf_counter)
of a pass without tracing; peak memory is tracemalloc's peak of Python-visible allocations (numpy and pandas
buffers included) in a second, traced pass, so tracing overhead never enters the timings. Orchard's figures
are the one-off profile fit (at training time) and the monthly check (load the stored profile, PSI of every
column of the new batch); Evidently's is one Report run, which re-reads the reference every time.
"""

from __future__ import annotations

import argparse
import gc
import logging
import tempfile
import time
import tracemalloc
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from orchard.credit.psi import ReferenceProfile, load_profile, psi, psi_reference, save_profile

log = logging.getLogger(__name__)
LEVELS = np.array(["a", "b", "c", "d", "e", "f"], dtype=object)


@dataclass(frozen=True)
class Measure:
    """One measured step."""

    step: str
    seconds: float
    peak_mb: float | None


def synthetic_frame(n_rows: int, n_numeric: int, n_categorical: int, shift: float, seed: int) -> pd.DataFrame:
    """Return a seeded frame: normal numeric columns (5 % missing, shifted by `shift`) and categorical levels."""
    rng = np.random.default_rng(seed)
    data: dict[str, Any] = {}
    for i in range(n_numeric):
        x = rng.normal(shift * (1 + i % 3), 1.0 + 0.1 * (i % 5), n_rows)
        x[rng.random(n_rows) < 0.05] = np.nan
        data[f"num_{i:02d}"] = x
    weights = np.array([0.3, 0.25, 0.2, 0.15, 0.07, 0.03])
    tilted = weights * np.exp(shift * np.arange(weights.size) / 2)
    for i in range(n_categorical):
        data[f"cat_{i:02d}"] = rng.choice(LEVELS, n_rows, p=tilted / tilted.sum())
    return pd.DataFrame(data)


def _timed(step: str, fn: Callable[[], Any]) -> tuple[Measure, Any]:
    gc.collect()
    start = time.perf_counter()
    out = fn()
    return Measure(step, time.perf_counter() - start, None), out


def _traced(step: str, fn: Callable[[], Any]) -> float:
    gc.collect()
    tracemalloc.start()
    try:
        fn()
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    return peak / 2**20


def evidently_psi(
    reference: pd.DataFrame, current: pd.DataFrame, numeric: list[str], categorical: list[str]
) -> Any:
    """Run Evidently 0.7's DataDriftPreset with the PSI method for every column and return the snapshot."""
    from evidently import DataDefinition, Dataset, Report
    from evidently.presets import DataDriftPreset

    definition = DataDefinition(numerical_columns=numeric, categorical_columns=categorical)
    report = Report([DataDriftPreset(columns=[*numeric, *categorical], method="psi")])
    return report.run(
        Dataset.from_pandas(current, data_definition=definition),
        Dataset.from_pandas(reference, data_definition=definition),
    )


def evidently_values(snapshot: Any) -> dict[str, float]:
    """Return Evidently's per-column PSI, read by metric type."""
    return {
        m["config"]["column"]: float(m["value"])
        for m in snapshot.dict()["metrics"]
        if m["config"]["type"] == "evidently:metric_v2:ValueDrift"
    }


def run(n_rows: int, n_numeric: int, n_categorical: int, memory: bool) -> dict[str, Any]:
    """Measure both paths and return the figures."""
    import evidently.presets  # noqa: F401  (import cost is not part of the measured run)

    numeric = [f"num_{i:02d}" for i in range(n_numeric)]
    categorical = [f"cat_{i:02d}" for i in range(n_categorical)]
    reference = synthetic_frame(n_rows, n_numeric, n_categorical, shift=0.0, seed=1)
    current = synthetic_frame(n_rows, n_numeric, n_categorical, shift=0.15, seed=2)

    with tempfile.TemporaryDirectory(prefix="orchard-psi-bench-") as tmp:
        profile_file = Path(tmp) / "reference_profile.json"

        def fit() -> ReferenceProfile:
            profile = ReferenceProfile.fit(reference, numeric, categorical)
            save_profile(profile, profile_file)
            return profile

        def check() -> dict[str, float]:
            return psi(load_profile(profile_file), current)

        fit_m, profile = _timed("orchard fit (once, at training)", fit)
        check_m, orchard = _timed("orchard monthly check", check)
        evidently_m, snapshot = _timed(
            "evidently DataDriftPreset(method='psi')",
            lambda: evidently_psi(reference, current, numeric, categorical),
        )
        peaks: dict[str, float | None] = {fit_m.step: None, check_m.step: None, evidently_m.step: None}
        if memory:
            peaks[fit_m.step] = _traced(fit_m.step, fit)
            peaks[check_m.step] = _traced(check_m.step, check)
            peaks[evidently_m.step] = _traced(
                evidently_m.step, lambda: evidently_psi(reference, current, numeric, categorical)
            )

    # exactness spot check against the plain loop on one numeric and one categorical column (the loop is slow)
    spot = {
        c: psi_reference(reference[c].tolist(), current[c].tolist(), kind)
        for c, kind in ((numeric[0], "numeric"), (categorical[0], "categorical"))
        if c
    }
    max_error = max(abs(orchard[c] - v) for c, v in spot.items())
    ev = evidently_values(snapshot)
    return {
        "measures": [Measure(m.step, m.seconds, peaks[m.step]) for m in (fit_m, check_m, evidently_m)],
        "profile_columns": len(profile.columns),
        "max_error_vs_loop": max_error,
        "sample": {
            c: (orchard[c], ev.get(c, float("nan"))) for c in (numeric[0], numeric[-1], categorical[0])
        },
    }


def main() -> None:
    """Parse arguments, run, print the figures."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--numeric", type=int, default=40)
    parser.add_argument("--categorical", type=int, default=10)
    parser.add_argument("--no-memory", action="store_true", help="skip the traced (memory) pass")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    figures = run(args.rows, args.numeric, args.categorical, memory=not args.no_memory)
    fit_m, check_m, evidently_m = figures["measures"]
    lines = [
        f"PSI benchmark: {args.rows:,} rows x {args.numeric + args.categorical} columns "
        f"({args.numeric} numeric, {args.categorical} categorical), reference and current month",
        f"{'step':<44}{'seconds':>10}{'peak MB (tracemalloc)':>24}",
    ]
    for m in figures["measures"]:
        peak = f"{m.peak_mb:,.0f}" if m.peak_mb is not None else "-"
        lines.append(f"{m.step:<44}{m.seconds:>10.2f}{peak:>24}")
    lines.append(f"speed-up, monthly check vs Evidently: {evidently_m.seconds / check_m.seconds:,.0f}x")
    lines.append(
        f"speed-up, fit + check vs Evidently:   {evidently_m.seconds / (fit_m.seconds + check_m.seconds):,.0f}x"
    )
    if check_m.peak_mb and evidently_m.peak_mb:
        lines.append(f"peak memory, Evidently / monthly check: {evidently_m.peak_mb / check_m.peak_mb:,.1f}x")
    lines.append(
        f"max |Orchard - plain loop| on the spot-checked columns: {figures['max_error_vs_loop']:.2e}"
    )
    lines.append(
        "PSI of a few columns, Orchard (frozen deciles) vs Evidently (Sturges bins over both samples):"
    )
    for column, (ours, theirs) in figures["sample"].items():
        lines.append(f"  {column}: Orchard {ours:.4f}  Evidently {theirs:.4f}")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
