"""Online store benchmark: Redis (production) vs the embedded SQLite store, side by side, same rows and reads.

Materializes one month of both feature views for N customers (default 100k) into each store, then reads one
customer at a time through the application_pd feature service and prints rows/s and read p50/p99 with ratios.

    python -m benchmarks.online_store [--customers 100000] [--reads 2000] [--redis redis://127.0.0.1:6379/14]

Needs PostgreSQL on 127.0.0.1:5432 (the Feast SQL registry; a throwaway database, dropped afterwards) and Redis
(the database given is flushed before and after).
"""

from __future__ import annotations

import argparse
import secrets
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
from feast import FeatureStore
from pydantic import SecretStr

from feature_repo.definitions import definitions
from orchard.feature_store import repo_config
from orchard.features import feature_specs
from orchard.production import ensure_databases, production_repo_config
from orchard.settings import Settings
from orchard.sources import EVENT_TIME
from orchard.testing.services import drop_databases

# the demo portfolio's views and the application_pd service that reads both, keyed on user_id
ENTITY_KEY = "user_id"
VIEWS = ("partner_activity", "credit_history")
SERVICE = "application_pd_v1"


def synthetic_view_frame(view: str, customers: int, seed: int = 0) -> pd.DataFrame:
    """Return one row per customer of a view's features (typed like the offline tables), seeded."""
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame({ENTITY_KEY: [f"u{i:07d}" for i in range(customers)]})
    for spec in (f for f in feature_specs(Settings(_env_file=None).portfolio_def) if f.view == view):
        if spec.dtype == "int":
            frame[spec.name] = rng.integers(0, 120, customers).astype("int64")
        elif spec.dtype == "float":
            frame[spec.name] = rng.gamma(2.0, 500.0, customers)
        else:
            frame[spec.name] = rng.choice(["a", "b", "c", "d"], customers).astype(object)
    frame[EVENT_TIME] = pd.Timestamp("2019-06-15", tz="UTC")
    frame["created_at"] = frame[EVENT_TIME]
    return frame


def _materialize(store: FeatureStore, frames: dict[str, pd.DataFrame]) -> float:
    started = time.perf_counter()
    for view, frame in frames.items():
        store.write_to_online_store(view, frame)
    return time.perf_counter() - started


def _read_latencies(store: FeatureStore, user_ids: list[str]) -> np.ndarray:
    service = store.get_feature_service(SERVICE)
    latencies = []
    for user_id in user_ids:
        started = time.perf_counter()
        store.get_online_features(features=service, entity_rows=[{ENTITY_KEY: user_id}]).to_dict()
        latencies.append(time.perf_counter() - started)
    return np.array(latencies) * 1000.0


def run(customers: int, reads: int, redis_url: str, postgres_url: str) -> dict[str, dict[str, float]]:
    """Run both stores on the same rows and reads; return rows/s and read p50/p99 (ms) per store."""
    frames = {view: synthetic_view_frame(view, customers, seed) for seed, view in enumerate(VIEWS)}
    rows = sum(len(f) for f in frames.values())
    rng = np.random.default_rng(1)
    user_ids = [f"u{i:07d}" for i in rng.integers(0, customers, reads)]
    prefix = f"orchard_bench_{secrets.token_hex(3)}_"
    results: dict[str, dict[str, float]] = {}
    with tempfile.TemporaryDirectory(prefix="orchard-online-bench-") as tmp:
        home = Path(tmp) / "orchard"
        embedded = Settings(_env_file=None, home=home / "embedded")  # type: ignore[call-arg]
        production = Settings(
            _env_file=None,  # type: ignore[call-arg]
            home=home / "production",
            profile="production",
            postgres_url=SecretStr(postgres_url),
            redis_url=redis_url,
            database_prefix=prefix,
        )
        import redis

        flush = redis.Redis.from_url(redis_url)
        flush.flushdb()
        try:
            ensure_databases(production.production)
            for name, settings, config in (
                ("embedded SQLite", embedded, repo_config(embedded)),
                ("Redis", production, production_repo_config(production)),
            ):
                settings.feast_dir.mkdir(parents=True, exist_ok=True)
                store = FeatureStore(config=config)
                store.apply(definitions(settings))
                seconds = _materialize(store, frames)
                _read_latencies(store, user_ids[:50])  # warm-up: connections, registry cache
                latencies = _read_latencies(store, user_ids)
                results[name] = {
                    "rows_per_s": rows / seconds,
                    "p50_ms": float(np.percentile(latencies, 50)),
                    "p99_ms": float(np.percentile(latencies, 99)),
                }
        finally:
            flush.flushdb()
            flush.close()
            drop_databases(prefix)
    return results


def main() -> None:
    """Print the side-by-side figures."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--customers", type=int, default=100_000)
    parser.add_argument("--reads", type=int, default=2_000)
    parser.add_argument("--redis", default="redis://127.0.0.1:6379/14")
    parser.add_argument("--postgres", default="postgresql://postgres@127.0.0.1:5432")
    args = parser.parse_args()
    results = run(args.customers, args.reads, args.redis, args.postgres)
    print(f"online store, {args.customers:,} customers x 2 views, {args.reads:,} single-customer reads")
    print(f"{'store':<16} {'materialize rows/s':>20} {'read p50 ms':>12} {'read p99 ms':>12}")
    for name, r in results.items():
        print(f"{name:<16} {r['rows_per_s']:>20,.0f} {r['p50_ms']:>12.3f} {r['p99_ms']:>12.3f}")
    sqlite, redis_ = results["embedded SQLite"], results["Redis"]
    print(
        f"Redis / SQLite: materialize x{redis_['rows_per_s'] / sqlite['rows_per_s']:.2f}, "
        f"p50 x{redis_['p50_ms'] / sqlite['p50_ms']:.2f}, p99 x{redis_['p99_ms'] / sqlite['p99_ms']:.2f}"
    )


if __name__ == "__main__":
    main()
