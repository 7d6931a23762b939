"""Benchmark: stock `FeatureStore.materialize` into Feast's SQLite store vs Orchard's materialize_month.

Run: python -m benchmarks.materialize [--rows N]. Both paths get the same offline rows (one month of the
partner_activity view, one row per user), read them from the same kind of parquet table through Feast, and
must then serve identical values through get_online_features.
"""

from __future__ import annotations

import argparse
import logging
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from orchard.atomic import write_parquet
from orchard.errors import OrchardError
from orchard.feature_store import apply_definitions, materialize_month, open_store, update_offline_tables
from orchard.lake import silver_path
from orchard.months import month_end, month_start
from orchard.settings import Settings

MONTH = "2020-03"
CHECK_USERS = 2_000


@dataclass(frozen=True)
class Timing:
    """One path's measured materialization."""

    path: str
    rows: int
    seconds: float

    @property
    def rows_per_second(self) -> float:
        """Return the throughput."""
        return self.rows / self.seconds if self.seconds > 0 else float("inf")


def synthetic_partner_users(n_rows: int, month: str, seed: int = 7) -> pd.DataFrame:
    """Return one partner_users snapshot per user inside the month (seeded)."""
    rng = np.random.default_rng(seed)
    start = month_start(month)
    seconds = rng.integers(0, 27 * 86_400, n_rows)
    return pd.DataFrame(
        {
            "user_id": [f"u{i:07d}" for i in range(n_rows)],
            "event_ts": start + pd.to_timedelta(seconds, unit="s"),
            "batch_id": f"partner_users-{month}",
            "age": rng.integers(18, 80, n_rows),
            "city_tier": rng.choice(["tier1", "tier2", "tier3", "rural"], n_rows),
            "device_os": rng.choice(["android", "ios", "other"], n_rows),
            "platform_tenure_months": rng.integers(0, 120, n_rows),
            "active_days_30d": rng.integers(0, 31, n_rows),
            "txn_count_30d": rng.integers(0, 200, n_rows),
            "txn_amount_30d": rng.gamma(2.0, 400.0, n_rows).round(2),
            "income_est_monthly": rng.choice([0.0, 1_200.0, 2_500.0, 6_000.0], n_rows),
            "late_bill_payments_12m": rng.integers(0, 13, n_rows),
        }
    )


def _settings(home: Path) -> Settings:
    return Settings(_env_file=None, home=home)  # type: ignore[call-arg]


def _prepare(home: Path, partner_users: pd.DataFrame) -> Settings:
    """Put the snapshot in silver (no repayments) and build the offline tables from it."""
    settings = _settings(home)
    write_parquet(partner_users, silver_path(settings, "partner_users", MONTH))
    update_offline_tables(settings)
    return settings


def run_stock(home: Path, partner_users: pd.DataFrame) -> tuple[Timing, pd.DataFrame]:
    """Materialize with Feast's stock path: store.materialize into the stock SQLite online store."""
    settings = _prepare(home, partner_users)
    store = open_store(settings, stock_online_store=True)
    from feature_repo.definitions import definitions

    store.apply(definitions(settings))
    started = time.perf_counter()
    store.materialize(
        month_start(MONTH).to_pydatetime(),
        month_end(MONTH).to_pydatetime(),
        feature_views=["partner_activity"],
    )
    seconds = time.perf_counter() - started
    return Timing("feast stock materialize (sqlite)", len(partner_users), seconds), _served(
        store, partner_users
    )


def run_orchard(home: Path, partner_users: pd.DataFrame) -> tuple[Timing, pd.DataFrame]:
    """Materialize with Orchard's path: materialize_month -> write_to_online_store -> bulk online store."""
    settings = _prepare(home, partner_users)
    apply_definitions(settings)
    store = open_store(settings)
    started = time.perf_counter()
    result = materialize_month(settings, MONTH, store=store)
    seconds = time.perf_counter() - started
    if result.rows != len(partner_users):
        raise OrchardError(f"orchard path wrote {result.rows} rows, expected {len(partner_users)}")
    return Timing("orchard materialize_month", result.rows, seconds), _served(store, partner_users)


def _served(store: object, partner_users: pd.DataFrame) -> pd.DataFrame:
    from feast import FeatureStore

    assert isinstance(store, FeatureStore)
    users = partner_users["user_id"].iloc[:: max(1, len(partner_users) // CHECK_USERS)].tolist()
    features = [f"partner_activity:{f.name}" for f in store.get_feature_view("partner_activity").features]
    frame = store.get_online_features(features=features, entity_rows=[{"user_id": u} for u in users]).to_df()
    return frame.sort_index(axis=1)


def main(argv: list[str] | None = None) -> None:
    """Run both paths on the same rows, check they serve the same values, print the comparison."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--rows", type=int, default=100_000, help="offline rows (one per user) to materialize"
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    partner_users = synthetic_partner_users(args.rows, MONTH)
    with tempfile.TemporaryDirectory(prefix="orchard-bench-") as tmp:
        stock, stock_served = run_stock(Path(tmp) / "stock", partner_users)
        orchard, orchard_served = run_orchard(Path(tmp) / "orchard", partner_users)
    pd.testing.assert_frame_equal(stock_served, orchard_served, check_dtype=False)
    ratio = orchard.rows_per_second / stock.rows_per_second
    lines = [
        f"{'path':<36} {'rows':>9} {'seconds':>9} {'rows/s':>11}",
        *(
            f"{t.path:<36} {t.rows:>9,} {t.seconds:>9.3f} {t.rows_per_second:>11,.0f}"
            for t in (stock, orchard)
        ),
        f"ratio orchard/stock: {ratio:.1f}x (target >= 10x); online values identical on "
        f"{len(orchard_served):,} users x {orchard_served.shape[1] - 1} features",
    ]
    print("\n".join(lines))


if __name__ == "__main__":
    main()
