"""Benchmark: a large LightGBM fit in one process vs LightGBM's Dask estimator on a LocalCluster (side by side).

Run: python -m benchmarks.lightgbm_dask [--rows 1000000] [--features 20] [--workers 2] [--search-rows 200000].
Both fit `orchard.credit.model.train_lightgbm` on the same synthetic sample (benchmarks.binning.synthetic), each
in a fresh process one after the other: in one process (the search and the kept winner on every fitting row), and
with a cluster (orchard.credit.lightgbm_dask: the search on a sample here, the winner fitted again on every
fitting row by `lightgbm.DaskLGBMClassifier`). Printed: wall time of the fit, the fitting process's peak memory
(the cluster's workers apart), trees, and AUC on a holdout drawn from the same distribution.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
import warnings

from benchmarks.binning import synthetic


def fit(variant: str, rows: int, features: int, workers: int, search_rows: int) -> dict[str, float]:
    """Fit one variant in this process; return its figures."""
    from orchard.credit.lightgbm_dask import ClusterFit
    from orchard.credit.metrics import auc
    from orchard.credit.model import train_lightgbm
    from orchard.partitions import open_cluster
    from orchard.settings import Settings

    frame, y, categorical = synthetic(rows, features)
    holdout, y_holdout, _ = synthetic(200_000, features, seed=1)
    train = frame.assign(bad=y)
    opened = open_cluster(
        Settings(_env_file=None, dask_workers=workers if variant == "dask" else 0).production
    )  # type: ignore[call-arg]
    cluster = None if opened is None else ClusterFit(opened.client, opened.workers, 1, search_rows)
    start = time.perf_counter()
    model = train_lightgbm(train, "bad", list(frame.columns), categorical, seed=7, cluster=cluster)
    seconds = time.perf_counter() - start
    if opened is not None:
        opened.close()
    return {
        "seconds": seconds,
        "peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "trees": float(model.params["trees"]),
        "auc": auc(y_holdout, model.predict_pd(holdout)),
    }


def main() -> None:
    """Run both variants, each in a fresh process, and print them side by side."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--features", type=int, default=20)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--search-rows", type=int, default=200_000)
    parser.add_argument("--variant", choices=["process", "dask"], help=argparse.SUPPRESS)
    args = parser.parse_args()
    warnings.filterwarnings("ignore")
    sizes = (args.rows, args.features, args.workers, args.search_rows)
    if args.variant:
        print(json.dumps(fit(args.variant, *sizes)))
        return
    results = {}
    for variant in ("process", "dask"):
        command = [sys.executable, "-m", "benchmarks.lightgbm_dask", "--variant", variant]
        command += [
            "--rows",
            str(args.rows),
            "--features",
            str(args.features),
            "--workers",
            str(args.workers),
        ]
        command += ["--search-rows", str(args.search_rows)]
        done = subprocess.run(command, capture_output=True, text=True, check=True)
        results[variant] = json.loads(done.stdout.strip().splitlines()[-1])
    print(f"LightGBM fit on {args.rows:,} rows x {args.features} features, holdout 200,000 rows")
    print(f"{'variant':<52} {'fit s':>7} {'peak MB':>8} {'trees':>6} {'AUC':>7}")
    names = {
        "process": "one process (search + winner on every row)",
        "dask": f"Dask LocalCluster x{args.workers} (search on {args.search_rows:,} rows)",
    }
    for variant, r in results.items():
        print(
            f"{names[variant]:<52} {r['seconds']:7.1f} {r['peak_mb']:8.0f} {r['trees']:6.0f} {r['auc']:7.4f}"
        )
    one, dask = results["process"], results["dask"]
    print(
        f"time dask / one process: {dask['seconds'] / one['seconds']:.2f}x; peak memory of the fitting process: "
        f"{dask['peak_mb'] / one['peak_mb']:.2f}x; AUC difference {dask['auc'] - one['auc']:+.4f}"
    )


if __name__ == "__main__":
    main()
