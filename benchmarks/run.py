"""`make bench`: every benchmark, one after the other, figures printed side by side."""

from __future__ import annotations

import subprocess
import sys

BENCHMARKS = [
    ("demo: wall time per stage and orchestration overhead", ["benchmarks.demo"]),
    ("online materialization: Orchard vs stock feast materialize", ["benchmarks.materialize"]),
]


def main() -> None:
    """Run each benchmark module in its own process and stream its figures."""
    failed = []
    for title, module in BENCHMARKS:
        print(f"\n=== {title} ===", flush=True)
        if subprocess.run([sys.executable, "-m", *module]).returncode != 0:
            failed.append(title)
    if failed:
        sys.exit(f"benchmarks failed: {', '.join(failed)}")


if __name__ == "__main__":
    main()
