"""The corruption corpus: corrupted copies of clean simulated batches, each stopped or warned by the right check.

A clean lake of 2019-01..2019-07 is simulated and validated once (every batch must pass: no false alarm). Each
kind of corruption then replaces one source's 2019-07 batch in a copy of that lake, and the test asserts the
contract names the expected expectation with the expected severity; a stopped batch must leave silver exactly
as a lake that never received it. A few kinds also go through the real validate flow and the feature tables.
"""

from __future__ import annotations

import hashlib
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from flows.validate import MonthQuarantined, validate_month
from orchard.contracts import check_batch
from orchard.contracts.history_store import profile_path
from orchard.contracts.waves import validation_waves
from orchard.feature_store import update_offline_tables
from orchard.lake import (
    MANIFEST,
    bronze_dir,
    ingest_batch,
    landing_path,
    read_bronze,
    read_manifest,
    silver_path,
)
from orchard.lifecycle.tools import Tools
from orchard.months import month_range
from orchard.settings import Settings
from orchard.simulate import simulate
from orchard.sources import BATCH_ID, EVENT_TIME
from tests.conftest import make_settings
from tests.partition_steps import imported


def _task_prefixes(dask_scheduler: object) -> list[str]:
    return list(dask_scheduler.task_prefixes)  # type: ignore[attr-defined]


pytestmark = pytest.mark.slow(seconds=50)

MONTHS = month_range("2019-01", "2019-07")
MONTH = MONTHS[-1]
PREVIOUS = MONTHS[-2]
# demo scale: a contract's sampling-aware bounds are tight enough here to see half the rows go missing
N_USERS = 12_000

Corruption = Callable[[pd.DataFrame, pd.DataFrame], pd.DataFrame]
"""(clean batch of MONTH, clean batch of PREVIOUS) -> corrupted batch of MONTH."""


@dataclass(frozen=True)
class Kind:
    """One kind of corruption: the source it hits, what it does, and the check that must name it."""

    source: str
    corrupt: Corruption
    expectation: str
    column: str | None
    severity: str = "fail"


def _scale(column: str, factor: float) -> Corruption:
    def corrupt(df: pd.DataFrame, _: pd.DataFrame) -> pd.DataFrame:
        out = df.copy()
        out[column] = (out[column] * factor).astype(df[column].dtype)
        return out

    return corrupt


def _swap(a: str, b: str) -> Corruption:
    def corrupt(df: pd.DataFrame, _: pd.DataFrame) -> pd.DataFrame:
        out = df.copy()
        out[a], out[b] = df[b].astype(df[a].dtype), df[a].astype(df[b].dtype)
        return out

    return corrupt


def _constant(column: str) -> Corruption:
    def corrupt(df: pd.DataFrame, _: pd.DataFrame) -> pd.DataFrame:
        out = df.copy()
        out[column] = df[column].mode().iloc[0]
        return out

    return corrupt


def _drop_half(df: pd.DataFrame, _: pd.DataFrame) -> pd.DataFrame:
    return df.iloc[::2].reset_index(drop=True)


def _rekey(column: str) -> Corruption:
    def corrupt(df: pd.DataFrame, _: pd.DataFrame) -> pd.DataFrame:
        out = df.copy()
        present = out[column].notna()
        out.loc[present, column] = "X" + out.loc[present, column].astype(str).str[1:]
        return out

    return corrupt


def _shuffle_ids(column: str) -> Corruption:
    """Give each row another identifier that never appeared (a re-keyed extract of the same users)."""

    def corrupt(df: pd.DataFrame, _: pd.DataFrame) -> pd.DataFrame:
        out = df.copy()
        out[column] = [f"{v[0]}9{v[1:]}" for v in out[column].to_numpy()[::-1]]
        return out

    return corrupt


def _repeat_previous(share: float) -> Corruption:
    """Append a share of last month's rows, re-dated into this month (the same keys arrive twice)."""

    def corrupt(df: pd.DataFrame, previous: pd.DataFrame) -> pd.DataFrame:
        again = previous.head(int(share * len(df))).copy()
        again[EVENT_TIME] = again[EVENT_TIME] + pd.DateOffset(months=1)
        again[EVENT_TIME] = again[EVENT_TIME].clip(upper=df[EVENT_TIME].max())
        again[BATCH_ID] = df[BATCH_ID].iloc[0]
        return pd.concat([df, again], ignore_index=True)

    return corrupt


def _where(column: str, value: object, rows: Callable[[pd.DataFrame], pd.Series]) -> Corruption:
    def corrupt(df: pd.DataFrame, _: pd.DataFrame) -> pd.DataFrame:
        out = df.copy()
        out.loc[rows(out), column] = value
        return out

    return corrupt


def _every_tenth(df: pd.DataFrame) -> pd.Series:
    return pd.Series(np.arange(len(df)) % 10 == 0, index=df.index)


def _map(column: str, how: Callable[[pd.Series], pd.Series]) -> Corruption:
    def corrupt(df: pd.DataFrame, _: pd.DataFrame) -> pd.DataFrame:
        out = df.copy()
        out[column] = how(out[column])
        return out

    return corrupt


def _drop_column(column: str) -> Corruption:
    def corrupt(df: pd.DataFrame, _: pd.DataFrame) -> pd.DataFrame:
        return df.drop(columns=[column])

    return corrupt


def _rename_column(column: str, new: str) -> Corruption:
    def corrupt(df: pd.DataFrame, _: pd.DataFrame) -> pd.DataFrame:
        return df.rename(columns={column: new})

    return corrupt


def _shift_time(offset: pd.DateOffset | pd.Timedelta) -> Corruption:
    def corrupt(df: pd.DataFrame, _: pd.DataFrame) -> pd.DataFrame:
        out = df.copy()
        out[EVENT_TIME] = out[EVENT_TIME] + offset
        return out

    return corrupt


def _share_to(column: str, value: str, share: float) -> Corruption:
    def corrupt(df: pd.DataFrame, _: pd.DataFrame) -> pd.DataFrame:
        out = df.copy()
        out.loc[out.index[: int(share * len(out))], column] = value
        return out

    return corrupt


def _paid_fifty_times(df: pd.DataFrame, _: pd.DataFrame) -> pd.DataFrame:
    out = df.copy()
    rows = (out["amount_due"] > 0) & _every_tenth(out)
    out.loc[rows, "amount_paid"] = (out.loc[rows, "amount_due"] * 50).clip(upper=100_000)
    return out


def _current_with_dpd(df: pd.DataFrame, _: pd.DataFrame) -> pd.DataFrame:
    out = df.copy()
    rows = out["status"] == "delinquent"
    out.loc[rows, "status"] = "current"
    out.loc[rows, "dpd"] = 200
    return out


def _recovered_on_sms(df: pd.DataFrame, _: pd.DataFrame) -> pd.DataFrame:
    out = df.copy()
    rows = out["action"] == "sms"
    out.loc[rows, "recovered_amount"] = out.loc[rows, "amount_overdue"]
    return out


def _responses_lose_their_application(df: pd.DataFrame, _: pd.DataFrame) -> pd.DataFrame:
    out = df.copy()
    out["application_id"] = None
    return out


def _spend_without_transactions(df: pd.DataFrame, _: pd.DataFrame) -> pd.DataFrame:
    out = df.copy()
    rows = (out["txn_amount_30d"] > 0) & _every_tenth(out)
    out.loc[rows, "txn_count_30d"] = 0
    return out


SCALE = "expect_column_scale_to_match_history"
VARIETY = "expect_column_variety_to_match_history"
DISTRIBUTION = "expect_column_distribution_to_match_history"
ROWS = "expect_table_row_count_to_match_history"
REUSE = "expect_table_keys_reused_to_match_history"
FK = "expect_column_values_to_exist_in_source"
RULE = "expect_rows_to_satisfy_rules"
COMPLETENESS = "expect_column_completeness_to_match_history"
COLUMNS = "expect_table_columns_to_match_ordered_list"
IN_SET = "expect_column_values_to_be_in_set"
BETWEEN = "expect_column_values_to_be_between"
UNIQUE = "expect_compound_columns_to_be_unique"

KINDS: dict[str, Kind] = {
    # schema
    "applications: a column dropped": Kind("applications", _drop_column("income_declared"), COLUMNS, None),
    "repayments: a column renamed": Kind("repayments", _rename_column("dpd", "days_past_due"), COLUMNS, None),
    # units
    "applications: income in cents (x100)": Kind(
        "applications", _scale("income_declared", 100), SCALE, "income_declared"
    ),
    "applications: amount in thousands": Kind(
        "applications", _scale("requested_amount", 0.001), SCALE, "requested_amount"
    ),
    "partner_users: income x100": Kind(
        "partner_users", _scale("income_est_monthly", 100), SCALE, "income_est_monthly"
    ),
    "partner_users: spend in thousands": Kind(
        "partner_users", _scale("txn_amount_30d", 0.001), SCALE, "txn_amount_30d"
    ),
    "repayments: amount due in cents": Kind("repayments", _scale("amount_due", 100), SCALE, "amount_due"),
    "campaigns: offer amount x10": Kind("campaigns", _scale("offer_amount", 10), SCALE, "offer_amount"),
    "collections: overdue in cents": Kind(
        "collections", _scale("amount_overdue", 100), SCALE, "amount_overdue"
    ),
    # swaps
    "applications: amount and term swapped": Kind(
        "applications", _swap("requested_amount", "term_months"), SCALE, "requested_amount"
    ),
    "partner_users: income and spend swapped": Kind(
        "partner_users", _swap("income_est_monthly", "txn_amount_30d"), SCALE, "income_est_monthly"
    ),
    "repayments: balance and amount due swapped": Kind(
        "repayments", _swap("balance", "amount_due"), SCALE, "balance"
    ),
    "collections: overdue and recovered swapped": Kind(
        "collections", _swap("amount_overdue", "recovered_amount"), SCALE, "amount_overdue"
    ),
    # constants
    "applications: every application declined": Kind(
        "applications", _where("decision", "declined", lambda d: d.index == d.index), VARIETY, "decision"
    ),
    "applications: one channel": Kind("applications", _constant("channel"), VARIETY, "channel"),
    "partner_users: one device": Kind("partner_users", _constant("device_os"), VARIETY, "device_os"),
    "partner_users: constant age": Kind("partner_users", _constant("age"), VARIETY, "age"),
    "repayments: every statement the first": Kind(
        "repayments", _constant("months_on_book"), VARIETY, "months_on_book"
    ),
    "campaigns: everyone responded": Kind("campaigns", _constant("responded"), VARIETY, "responded"),
    "collections: every action sms": Kind("collections", _constant("action"), VARIETY, "action"),
    # volume
    "applications: half the rows missing": Kind("applications", _drop_half, ROWS, None),
    "partner_users: half the rows missing": Kind("partner_users", _drop_half, ROWS, None),
    "repayments: half the rows missing": Kind("repayments", _drop_half, ROWS, None),
    "collections: half the rows missing": Kind("collections", _drop_half, ROWS, None),
    # joins and re-keying
    "applications: user ids re-keyed": Kind("applications", _rekey("user_id"), FK, "user_id"),
    "repayments: loan ids re-keyed": Kind("repayments", _rekey("application_id"), FK, "application_id"),
    "campaigns: user ids re-keyed": Kind("campaigns", _rekey("user_id"), FK, "user_id"),
    "campaigns: application ids re-keyed": Kind("campaigns", _rekey("application_id"), FK, "application_id"),
    "collections: loan ids re-keyed": Kind("collections", _rekey("application_id"), FK, "application_id"),
    "partner_users: user ids re-keyed (the customer source)": Kind(
        "partner_users", _shuffle_ids("user_id"), REUSE, None
    ),
    # cross-field
    "repayments: payments fifty times the amount due": Kind(
        "repayments", _paid_fifty_times, RULE, "amount_paid <= amount_due + balance"
    ),
    "repayments: current with 200 days past due": Kind(
        "repayments", _current_with_dpd, RULE, "status != 'current' or dpd == 0"
    ),
    "collections: recoveries on sms actions": Kind(
        "collections", _recovered_on_sms, RULE, "action == 'write_off' or recovered_amount == 0"
    ),
    "partner_users: spend without transactions": Kind(
        "partner_users", _spend_without_transactions, RULE, "txn_count_30d > 0 or txn_amount_30d == 0"
    ),
    # duplicates across months
    "applications: last month's applications again": Kind("applications", _repeat_previous(0.2), REUSE, None),
    "repayments: last month's statements again": Kind("repayments", _repeat_previous(0.2), REUSE, None),
    "campaigns: last month's offers again": Kind("campaigns", _repeat_previous(0.2), REUSE, None),
    # null spikes in nullable columns
    "campaigns: responses lose their application id": Kind(
        "campaigns", _responses_lose_their_application, COMPLETENESS, "application_id"
    ),
    # distribution jumps (a shift, not a unit: the batch passes with a warning)
    "applications: incomes 40% lower": Kind(
        "applications", _scale("income_declared", 0.6), DISTRIBUTION, "income_declared", "warn"
    ),
    "partner_users: activity jumps": Kind(
        "partner_users",
        _map("active_days_30d", lambda s: (s + 8).clip(upper=30)),
        DISTRIBUTION,
        "active_days_30d",
        "warn",
    ),
    "applications: purpose mix jumps": Kind(
        "applications", _share_to("loan_purpose", "medical", 0.5), DISTRIBUTION, "loan_purpose", "warn"
    ),
    "collections: contact results jump": Kind(
        "collections", _share_to("contact_result", "refused", 0.6), DISTRIBUTION, "contact_result", "warn"
    ),
    # encodings
    "applications: categories upper-cased": Kind(
        "applications", _map("employment_type", lambda s: s.str.upper()), IN_SET, "employment_type"
    ),
    "partner_users: categories padded": Kind(
        "partner_users", _map("city_tier", lambda s: s + " "), IN_SET, "city_tier"
    ),
    "collections: ids with a stray prefix": Kind(
        "collections", _map("application_id", lambda s: " " + s), FK, "application_id"
    ),
    # time
    "applications: event times a month late": Kind(
        "applications", _shift_time(pd.Timedelta(days=40)), BETWEEN, EVENT_TIME
    ),
    "repayments: event times a year early": Kind(
        "repayments", _shift_time(pd.DateOffset(years=-1)), BETWEEN, EVENT_TIME
    ),
    # duplicates within the batch (schema keys)
    "collections: statements twice": Kind(
        "collections", lambda df, _: pd.concat([df, df.head(30)], ignore_index=True), UNIQUE, None
    ),
}


def _settings(home: Path, dask_workers: int = 0) -> Settings:
    """Settings of a corpus lake: demo scale, no planted corruption (a Dask LocalCluster of dask_workers)."""
    return make_settings(
        home,
        n_users=N_USERS,
        end_month=MONTH,
        corrupt_batches=[],
        silent_corrupt_batches=[],
        dask_workers=dask_workers,
    )


def _silver_digest(settings: Settings) -> dict[str, str]:
    return {
        str(p.relative_to(settings.silver_dir)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(settings.silver_dir.rglob("*.parquet"))
    }


@pytest.fixture(scope="module")
def clean_lakes(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Settings]:
    """A simulated lake validated through PREVIOUS ('before') and through MONTH ('after'): every batch passed."""
    root = tmp_path_factory.mktemp("corpus")
    settings = _settings(root / "before")
    simulate(settings)
    for month in MONTHS:
        if month == MONTH:
            shutil.copytree(settings.home, root / "after")
            settings = _settings(root / "after")
        for source in settings.portfolio_def.sources:
            ingest_batch(settings, source, month)
            outcome = check_batch(settings, source, month)
            # no false alarm on the clean lake (warnings allowed only if they are listed)
            assert outcome.success, f"clean batch {outcome.batch_id} was stopped: {outcome.broken}"
            assert not outcome.warnings, f"clean batch {outcome.batch_id} was warned: {outcome.warnings}"
    return {"before": _settings(root / "before"), "after": settings}


def _case_lake(clean: Settings, tmp_path: Path, source: str, frame: pd.DataFrame) -> Settings:
    """Copy the validated lake and replace (source, MONTH) by a corrupted batch, ingested as it would land."""
    shutil.copytree(clean.home, tmp_path / "home")
    settings = _settings(tmp_path / "home")
    shutil.rmtree(bronze_dir(settings, source, MONTH))
    silver_path(settings, source, MONTH).unlink(missing_ok=True)
    profile_path(settings, source, MONTH).unlink(missing_ok=True)
    frame.to_parquet(landing_path(settings, source, MONTH), index=False)
    ingest_batch(settings, source, MONTH)
    return settings


def test_the_corpus_has_forty_kinds_over_every_source() -> None:
    # Given the corpus, Then it covers at least 40 kinds and every demo source
    assert len(KINDS) >= 40, len(KINDS)
    assert {k.source for k in KINDS.values()} == {
        "partner_users",
        "applications",
        "repayments",
        "campaigns",
        "collections",
    }


@pytest.mark.parametrize("name", list(KINDS))
def test_each_corruption_is_named_by_the_right_check(
    name: str, clean_lakes: dict[str, Settings], tmp_path: Path
) -> None:
    kind = KINDS[name]
    clean = clean_lakes["after"]
    batch = read_bronze(clean, kind.source, MONTH)
    previous = read_bronze(clean, kind.source, PREVIOUS)
    digest_clean = _silver_digest(clean)
    # Given a clean lake whose latest batch of the source is replaced by a corrupted one
    settings = _case_lake(clean, tmp_path, kind.source, kind.corrupt(batch, previous))
    # When the batch is validated
    outcome = check_batch(settings, kind.source, MONTH)
    # Then the expected expectation names it, with the expected severity
    findings = outcome.broken if kind.severity == "fail" else outcome.warnings
    prefix = f"{kind.expectation}({kind.column})" if kind.column else kind.expectation
    assert any(line.startswith(prefix) for line in findings), (
        f"{name}: {prefix} not among the {kind.severity} findings {findings} (broken: {outcome.broken})"
    )
    ours = f"{kind.source}/{MONTH}.parquet"
    if kind.severity == "fail":
        # And a stopped batch leaves silver exactly as a lake that never received it
        assert not outcome.success and outcome.quarantine_path is not None
        expected = {k: v for k, v in digest_clean.items() if k != ours}
        assert _silver_digest(settings) == expected, f"{name}: silver changed"
    else:
        assert outcome.success and not outcome.broken, f"{name}: a warning must not stop the batch"
        assert (settings.silver_dir / ours).is_file()
        assert outcome.docs_path is not None and outcome.docs_path.is_file(), (
            "a warning is on a Data Docs page"
        )


FLOW_KINDS = [
    "applications: every application declined",
    "repayments: current with 200 days past due",
    "campaigns: user ids re-keyed",
]


@pytest.mark.parametrize("name", FLOW_KINDS)
def test_a_stopped_batch_never_reaches_silver_or_features_through_the_flow(
    name: str, clean_lakes: dict[str, Settings], tmp_path: Path
) -> None:
    kind = KINDS[name]
    before, after = clean_lakes["before"], clean_lakes["after"]
    corrupted_batch = kind.corrupt(
        read_bronze(after, kind.source, MONTH), read_bronze(before, kind.source, PREVIOUS)
    )
    # Given the month landed with one corrupted batch; and, to compare with, the clean run's lake of the same
    # month with that batch taken out of silver (every other batch as the clean run validated it)
    corrupted, without = _settings(tmp_path / "corrupted"), _settings(tmp_path / "without")
    shutil.copytree(before.home, corrupted.home)
    shutil.copytree(after.home, without.home)
    silver_path(without, kind.source, MONTH).unlink()
    corrupted_batch.to_parquet(landing_path(corrupted, kind.source, MONTH), index=False)
    for source in corrupted.portfolio_def.sources:
        ingest_batch(corrupted, source, MONTH)
    # When the validate task of the flow runs on the month, and the feature tables are brought up to date
    with pytest.raises(MonthQuarantined) as info:
        validate_month.fn(corrupted, MONTH)
    update_offline_tables(corrupted)
    update_offline_tables(without)
    # Then the batch is quarantined naming the check, and silver and the feature tables are byte-identical
    assert [v.batch_id for v in info.value.violations] == [f"{kind.source}-{MONTH}"]
    assert any(b.startswith(f"{kind.expectation}({kind.column})") for b in info.value.violations[0].broken)
    assert _silver_digest(corrupted) == _silver_digest(without), (
        "silver differs from the lake without the batch"
    )
    for path in sorted(without.features_dir.rglob("*.parquet")):
        twin = corrupted.features_dir / path.relative_to(without.features_dir)
        assert twin.read_bytes() == path.read_bytes(), f"feature table {path.name} differs"
    assert any(without.features_dir.rglob("*.parquet")), "the comparison covers feature tables"


def _validation_files(settings: Settings) -> dict[str, bytes]:
    """Every file validating a month writes (silver, quarantine, results, history records, references), its home
    written as HOME."""
    folders = [settings.silver_dir, settings.quarantine_dir]
    folders += [settings.gx_dir / name for name in ("results", "profiles", "references")]
    home = str(settings.home.resolve()).encode()
    return {
        str(p.relative_to(settings.home)): p.read_bytes().replace(home, b"HOME")
        for folder in folders
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def test_a_month_checked_on_a_dask_local_cluster_or_beside_the_lane_equals_the_single_process_run(
    clean_lakes: dict[str, Settings], tmp_path: Path
) -> None:
    before, after = clean_lakes["before"], clean_lakes["after"]
    # Given the month landed with a parent batch that will be stopped (every application declined) and a batch
    # that will pass with a warning (collections' contact results jump), in two copies of the lake
    corrupted = {
        "applications": KINDS["applications: every application declined"],
        "collections": KINDS["collections: contact results jump"],
    }
    lakes = {
        "one process": _settings(tmp_path / "one"),
        "cluster": _settings(tmp_path / "many", dask_workers=2),
        "lane": _settings(tmp_path / "lane"),
    }
    landed = lakes["one process"]
    shutil.copytree(before.home, landed.home)
    for source, kind in corrupted.items():
        frame = kind.corrupt(read_bronze(after, source, MONTH), read_bronze(before, source, PREVIOUS))
        frame.to_parquet(landing_path(landed, source, MONTH), index=False)
    for source in landed.portfolio_def.sources:
        ingest_batch(landed, source, MONTH)
    shutil.copytree(landed.home, lakes["cluster"].home)
    shutil.copytree(landed.home, lakes["lane"].home)
    # When one copy's month is validated in this process, another's on a 2-worker LocalCluster, and the third's in a
    # run with a lane process (the lifecycle's), which checks all but the first batch of a wave
    found, ran, lanes = {}, {}, {}
    for name, settings in lakes.items():
        with Tools(lane_process=name == "lane") as tools:
            if tools.lane_process:  # started, idle (as the lifecycle's is once its month's work is done)
                tools.lane()
            with pytest.raises(MonthQuarantined) as info:
                validate_month.fn(settings, MONTH, tools)
            found[name] = info.value
            cluster = tools.cluster(settings)
            ran[name] = set() if cluster is None else set(cluster.client.run_on_scheduler(_task_prefixes))
            # (a lane process imports Great Expectations only to check a batch)
            lanes[name] = tools.lane_process and tools.lane().submit(imported, "great_expectations").result()
    assert "check_batch_apart" in ran["cluster"] and not ran["one process"], (
        ran
    )  # the batches ran on the workers
    assert lanes == {"one process": False, "cluster": False, "lane": True}, lanes
    # Then the same batch is stopped for the same findings, the same batch passes with the same warnings
    stopped = {n: [(v.batch_id, v.broken) for v in e.violations] for n, e in found.items()}
    assert stopped["cluster"] == stopped["one process"] == stopped["lane"]
    assert [b for b, _ in stopped["cluster"]] == [f"applications-{MONTH}"]
    passed = {n: [(o.batch_id, o.warnings, o.history_note) for o in e.passed] for n, e in found.items()}
    assert passed["cluster"] == passed["one process"] == passed["lane"]
    assert [b for b, w, _ in passed["cluster"] if w] == [f"collections-{MONTH}"]
    # And every file the validation wrote is the same, byte for byte (the Data Docs pages built in both)
    files = {name: _validation_files(settings) for name, settings in lakes.items()}
    assert files["cluster"] == files["one process"] == files["lane"]
    assert any("quarantine" in f for f in files["cluster"]) and any("profiles" in f for f in files["cluster"])
    for error in found.values():
        docs = [o.docs_path for o in error.passed if o.warnings]
        docs += [read_manifest(Path(v.quarantine_path) / MANIFEST)["data_docs"] for v in error.violations]
        assert len(docs) == 2 and all(Path(p).is_file() for p in docs), docs
    # (the wave the collections batch is in has more than one batch: it was checked in the lane)
    waves = validation_waves(
        {
            n: [t.split(".")[0] for t in s.foreign_keys.values()]
            for n, s in landed.portfolio_def.sources.items()
        }
    )
    assert any(len(w) > 1 and "collections" in w[1:] for w in waves), waves
