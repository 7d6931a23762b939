"""Validate a bronze batch against its contract: pass -> silver; fail -> quarantine, Data Docs, ContractViolation."""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from orchard.atomic import write_json
from orchard.contracts.gx_project import publish_failure, validate_frame
from orchard.contracts.report import broken_expectations, stable_result
from orchard.contracts.suites import build_suite
from orchard.errors import ContractViolation
from orchard.lake import (
    DATA,
    MANIFEST,
    bronze_dir,
    bronze_manifest,
    get_source,
    quarantine_dir,
    read_bronze,
    read_manifest,
    silver_path,
    write_silver,
)
from orchard.months import parse_month
from orchard.settings import Settings
from orchard.sources import batch_id

logger = logging.getLogger(__name__)

VALIDATION = "validation.json"


@dataclass(frozen=True)
class ValidationOutcome:
    """What validating one batch found and where its data and result went."""

    source: str
    month: str
    batch_id: str
    success: bool
    broken: list[str]
    result_path: Path
    docs_path: Path | None
    silver_path: Path | None
    quarantine_path: Path | None


def result_path(settings: Settings, source: str, month: str) -> Path:
    """Return where the validation result of a passing batch is kept."""
    return settings.gx_dir / "results" / source / f"{batch_id(source, month)}.json"


def _write_json_if_changed(obj: dict[str, Any], target: Path) -> None:
    text = json.dumps(obj, indent=2, sort_keys=True, default=str)
    if target.is_file() and target.read_text() == text:
        return
    write_json(obj, target)


@contextmanager
def _atomic_folder(target: Path) -> Iterator[Path]:
    """Yield a temporary folder next to target; swap it into place only if the block succeeds."""
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent))
    try:
        yield tmp
        if target.exists():
            old = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".old", dir=target.parent))
            os.replace(target, old / target.name)
            os.replace(tmp, target)
            shutil.rmtree(old)
        else:
            os.replace(tmp, target)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)


def check_batch(settings: Settings, source: str, month: str) -> ValidationOutcome:
    """Validate an ingested batch and route it to silver or quarantine; return the outcome without raising."""
    spec = get_source(settings, source)
    parse_month(month)
    bid = batch_id(source, month)
    manifest = bronze_manifest(settings, source, month)
    df = read_bronze(settings, source, month)
    suite = build_suite(spec, month, settings.n_users)

    result = validate_frame(settings.gx_dir, source, df, suite)
    result_json = stable_result(result.to_json_dict())
    broken = broken_expectations(result_json)
    if result.success:
        silver = silver_path(settings, source, month)
        if write_silver(df, silver, manifest["sha256"]):
            logger.info("batch %s passed its contract: %d rows to %s", bid, len(df), silver)
        stale = quarantine_dir(settings, source, month)
        if stale.exists():
            logger.warning("batch %s now passes its contract; removing its old quarantine %s", bid, stale)
            shutil.rmtree(stale)
        target = result_path(settings, source, month)
        _write_json_if_changed(result_json, target)
        return ValidationOutcome(source, month, bid, True, [], target, None, silver, None)

    folder = quarantine_dir(settings, source, month)
    previous = read_manifest(folder / MANIFEST)
    record = {
        "source": source,
        "month": month,
        "batch_id": bid,
        "bronze_sha256": manifest["sha256"],
        "rows": len(df),
        "suite": suite.name,
        "broken": broken,
        "data": DATA,
        "validation": VALIDATION,
    }
    if previous is not None and {k: previous.get(k) for k in record} == record:
        docs = Path(previous["data_docs"])
        if docs.is_file():
            logger.info("batch %s is already quarantined with the same findings", bid)
            return ValidationOutcome(
                source, month, bid, False, broken, folder / VALIDATION, docs, None, folder
            )

    run_time = dt.datetime.fromisoformat(manifest["ingested_at"])
    docs = publish_failure(settings.gx_dir, suite, result, bid, run_time)
    with _atomic_folder(folder) as tmp:
        shutil.copyfile(bronze_dir(settings, source, month) / DATA, tmp / DATA)
        write_json(result_json, tmp / VALIDATION)
        write_json({**record, "data_docs": str(docs)}, tmp / MANIFEST)
    logger.warning("batch %s broke its contract and was quarantined at %s", bid, folder)
    return ValidationOutcome(source, month, bid, False, broken, folder / VALIDATION, docs, None, folder)


def validate_batch(settings: Settings, source: str, month: str) -> ValidationOutcome:
    """Validate an ingested batch: pass -> silver and the outcome; fail -> quarantine and ContractViolation."""
    outcome = check_batch(settings, source, month)
    if not outcome.success:
        raise ContractViolation(source, outcome.batch_id, outcome.broken, str(outcome.quarantine_path))
    return outcome
