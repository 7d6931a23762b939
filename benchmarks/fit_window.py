"""A fit's time and memory on a finished demo's lake: every mature vintage against a training window.

Run: python -m benchmarks.fit_window --home .orchard [--as-of 2021-12] [--window 12] [--models application_pd ...]
(after `make demo`). Each fit runs in a fresh process on its own copy of the home (a version is kept per model
and month, so a second fit in the same home would return the first); the peak resident memory reported is the
process's rise during the fit (getrusage before and after), the store opened and the training libraries imported
beforehand.
"""

from __future__ import annotations

import argparse
import json
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path


def _peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def fit_once(home: Path, model: str, as_of: str, window: int | None) -> dict[str, object]:
    """Train and register one model at `as_of` in `home` with the given window; return what it read and cost."""
    from orchard.feast_typecheck import skip_feast_typechecks

    skip_feast_typechecks()
    import lightgbm  # noqa: F401 - imported before the baseline, as in a running lifecycle

    from orchard.lifecycle.datasets import fit_months
    from orchard.lifecycle.tools import Tools
    from orchard.lifecycle.training import train_and_register
    from orchard.model_specs import model_specs
    from orchard.settings import Settings

    settings = Settings(_env_file=None, home=home)
    spec = model_specs(settings.portfolio_def)[model]
    spec = replace(spec, policy=spec.policy.model_copy(update={"train_vintages": window}))
    tools = Tools()
    tools.feature_store(settings)
    base = _peak_mb()
    start = time.perf_counter()
    months = fit_months(settings, spec, as_of)
    trained = train_and_register(settings, spec, as_of, tools)
    return {
        "model": model,
        "window": window,
        "months_read": len(months),
        "train_window": trained.train_window,
        "oot_window": trained.oot_window,
        "oot_auc": round(trained.metrics["oot_auc"], 3),
        "seconds": round(time.perf_counter() - start, 2),
        "peak_rise_mb": round(_peak_mb() - base),
    }


def main() -> None:
    """Fit each model with every vintage and with the window, each in its own process and home copy; print them."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--home", type=Path, default=Path(".orchard"), help="a finished demo's state folder")
    parser.add_argument("--as-of", default="2021-12")
    parser.add_argument("--window", type=int, default=12, help="train_vintages of the windowed fit")
    parser.add_argument("--models", nargs="+", default=["application_pd", "behavior_pd", "loss_forecast"])
    parser.add_argument(
        "--one", nargs=4, metavar=("HOME", "MODEL", "AS_OF", "WINDOW"), help=argparse.SUPPRESS
    )
    args = parser.parse_args()
    if args.one:
        home, model, as_of, window = args.one
        print(json.dumps(fit_once(Path(home), model, as_of, int(window) or None)))
        return
    if not (args.home / "state" / "months").is_dir():
        raise SystemExit(f"{args.home} holds no finished lifecycle: run `make demo` first")
    print(
        f"{'model':<20} {'window':>7} {'months':>7} {'train':>17} {'oot AUC':>8} {'seconds':>8} {'peak rise':>10}"
    )
    for model in args.models:
        for window in (0, args.window):
            with tempfile.TemporaryDirectory(prefix="fit-window-") as tmp:
                copy = Path(tmp) / "home"
                shutil.copytree(args.home, copy)
                out = subprocess.run(
                    [
                        sys.executable,
                        "-m",
                        "benchmarks.fit_window",
                        "--one",
                        str(copy),
                        model,
                        args.as_of,
                        str(window),
                    ],
                    check=True,
                    capture_output=True,
                    text=True,
                )
            r = json.loads(out.stdout.strip().splitlines()[-1])
            print(
                f"{model:<20} {r['window'] or 'every':>7} {r['months_read']:>7} {r['train_window']:>17} "
                f"{r['oot_auc']:>8.3f} {r['seconds']:>8.2f} {r['peak_rise_mb']:>7} MB"
            )


if __name__ == "__main__":
    main()
