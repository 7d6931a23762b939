"""Validate a bronze batch against its contract: pass -> silver; fail -> quarantine, Data Docs, ContractViolation."""

from __future__ import annotations

import datetime as dt
import logging
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

from orchard.atomic import atomic_folder, write_json, write_json_if_changed
from orchard.contracts.bounds import History, learn_checks
from orchard.contracts.gx_project import GxProject
from orchard.contracts.history_store import accepted_history, forget_rejected, record_accepted
from orchard.contracts.profile import batch_profile, profile_columns
from orchard.contracts.reference import key_share, lake_key_sets, lake_months, write_reference
from orchard.contracts.report import broken_expectations, stable_result
from orchard.contracts.suites import KEY_REUSE, HistoryContract, build_suite
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
from orchard.sources import SourceSpec, batch_id

if TYPE_CHECKING:
    from great_expectations import ExpectationSuite
    from great_expectations.core import ExpectationSuiteValidationResult

logger = logging.getLogger(__name__)

VALIDATION = "validation.json"


@dataclass
class ContractTools:
    """What validating batches reuses within a run: the home's GE project."""

    project: GxProject

    @classmethod
    def of(cls, settings: Settings) -> ContractTools:
        """Return fresh tools on the settings' GE project (opened on first use)."""
        return cls(GxProject(settings.gx_dir))


@dataclass(frozen=True)
class ValidationOutcome:
    """What validating one batch found and where its data and result went.

    `broken` are the failed checks of severity fail (the batch is quarantined if there is one); `warnings` the
    failed checks of severity warn (the batch passed, and they are on its Data Docs page).
    """

    source: str
    month: str
    batch_id: str
    success: bool
    broken: list[str]
    result_path: Path
    docs_path: Path | None
    silver_path: Path | None
    quarantine_path: Path | None
    warnings: list[str] = field(default_factory=list)
    history_note: str = ""

    def violation(self) -> ContractViolation:
        """Return the error naming what a failed batch broke and where it was quarantined."""
        return ContractViolation(self.source, self.batch_id, self.broken, str(self.quarantine_path))


def result_path(settings: Settings, source: str, month: str) -> Path:
    """Return where the validation result of a passing batch is kept."""
    return settings.gx_dir / "results" / source / f"{batch_id(source, month)}.json"


def _references(settings: Settings, spec: SourceSpec, month: str, history: History) -> dict[str, str]:
    """Store the references the batch is checked against: its own earlier accepted keys and each foreign key's."""
    accepted = [b[len(spec.name) + 1 :] for b in history.batches]
    own = lake_key_sets(settings, spec.name, list(spec.key), accepted, quarantined=False)
    paths = {KEY_REUSE: str(write_reference(settings, spec.name, month, KEY_REUSE, own))}
    for column, target in spec.foreign_keys:
        source, target_column = target.split(".")
        months = lake_months(settings, source, month)
        keys = lake_key_sets(settings, source, [target_column], months, quarantined=True)
        paths[column] = str(write_reference(settings, spec.name, month, f"fk_{column}", keys))
    return paths


def _observations(spec: SourceSpec, df: pd.DataFrame, references: dict[str, str]) -> dict[str, Any]:
    """Return what an accepted batch adds to its source's history: profile, key reuse, orphan shares."""
    orphans = {}
    for column, _ in spec.foreign_keys:
        share = key_share(df, [column], Path(references[column]))
        orphans[column] = 1.0 - share.found_share if share.rows else 0.0
    reuse = key_share(df, list(spec.key), Path(references[KEY_REUSE]))
    return {
        "profile": batch_profile(df, profile_columns(spec)),
        "key_reuse": reuse.found_share,
        "orphan_share": orphans,
    }


def _failed_by_severity(result_json: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """Split a result's failed expectations into (blocking, warning) results of the same shape."""
    failed = [r for r in result_json.get("results", []) if not r.get("success")]
    warning = [r for r in failed if (r.get("expectation_config") or {}).get("severity") == "warning"]
    blocking = [r for r in failed if r not in warning]
    return {"results": blocking}, {"results": warning}


@dataclass
class Assessment:
    """What checking a batch against its contract found, before the batch is routed to silver or quarantine."""

    spec: SourceSpec
    month: str
    manifest: dict[str, Any]
    frame: pd.DataFrame
    suite: ExpectationSuite
    result: ExpectationSuiteValidationResult
    result_json: dict[str, Any]
    broken: list[str]
    warnings: list[str]
    references: dict[str, str]
    note: str

    @property
    def batch_id(self) -> str:
        return batch_id(self.spec.name, self.month)

    @property
    def needs_docs(self) -> bool:
        """Whether routing it may build a Data Docs page (failed, or passed with warnings)."""
        return bool(self.broken or self.warnings)


def assess_batch(settings: Settings, source: str, month: str, project: GxProject) -> Assessment:
    """Check an ingested batch against its contract (its history checks' references stored) without routing it."""
    spec = get_source(settings, source)
    parse_month(month)
    manifest = bronze_manifest(settings, source, month)
    df = read_bronze(settings, source, month)
    history = accepted_history(settings, source, month, spec.contract.history_window)
    nullable = {c.name for c in spec.columns if c.nullable}
    fk_columns = [column for column, _ in spec.foreign_keys]
    learnt = learn_checks(profile_columns(spec), nullable, fk_columns, history, spec.contract)
    references = _references(settings, spec, month, history)
    suite = build_suite(spec, month, settings.simulation.n_users, HistoryContract(learnt, references))
    result = project.validate(source, df, suite)
    result_json = stable_result(result.to_json_dict())
    blocking, warning = _failed_by_severity(result_json)
    return Assessment(
        spec,
        month,
        manifest,
        df,
        suite,
        result,
        result_json,
        broken_expectations(blocking),
        broken_expectations(warning),
        references,
        learnt.note,
    )


def route_batch(settings: Settings, checked: Assessment, project: GxProject) -> ValidationOutcome:
    """Route a checked batch: pass -> silver, its result and its history record; fail -> quarantine. Return the
    outcome without raising. A result that needs Data Docs is published on `project`."""
    source, month, bid, df = checked.spec.name, checked.month, checked.batch_id, checked.frame
    broken, warnings, note = checked.broken, checked.warnings, checked.note
    run_time = dt.datetime.fromisoformat(checked.manifest["ingested_at"])
    if not broken:
        silver = silver_path(settings, source, month)
        if write_silver(df, silver, checked.manifest["sha256"]):
            logger.info("batch %s passed its contract: %d rows to %s", bid, len(df), silver)
        stale = quarantine_dir(settings, source, month)
        if stale.exists():
            logger.warning("batch %s now passes its contract; removing its old quarantine %s", bid, stale)
            shutil.rmtree(stale)
        target = result_path(settings, source, month)
        write_json_if_changed(checked.result_json, target)
        observed = _observations(checked.spec, df, checked.references)
        record_accepted(settings, source, month, {"month": month, **observed})
        docs = None
        if warnings:
            logger.warning("batch %s passed with warnings: %s", bid, "; ".join(warnings))
            docs = project.publish(checked.suite, checked.result, bid, run_time)
        return ValidationOutcome(source, month, bid, True, [], target, docs, silver, None, warnings, note)

    forget_rejected(settings, source, month)
    folder = quarantine_dir(settings, source, month)
    previous = read_manifest(folder / MANIFEST)
    record = {
        "source": source,
        "month": month,
        "batch_id": bid,
        "bronze_sha256": checked.manifest["sha256"],
        "rows": len(df),
        "suite": checked.suite.name,
        "broken": broken,
        "warnings": warnings,
        "data": DATA,
        "validation": VALIDATION,
    }
    if previous is not None and {k: previous.get(k) for k in record} == record:
        docs = Path(previous["data_docs"])
        if docs.is_file():
            logger.info("batch %s is already quarantined with the same findings", bid)
            return ValidationOutcome(
                source, month, bid, False, broken, folder / VALIDATION, docs, None, folder, warnings, note
            )

    docs = project.publish(checked.suite, checked.result, bid, run_time)
    with atomic_folder(folder) as tmp:
        shutil.copyfile(bronze_dir(settings, source, month) / DATA, tmp / DATA)
        write_json(checked.result_json, tmp / VALIDATION)
        write_json({**record, "data_docs": str(docs)}, tmp / MANIFEST)
    logger.warning("batch %s broke its contract and was quarantined at %s", bid, folder)
    return ValidationOutcome(
        source, month, bid, False, broken, folder / VALIDATION, docs, None, folder, warnings, note
    )


def check_batch(
    settings: Settings, source: str, month: str, tools: ContractTools | None = None
) -> ValidationOutcome:
    """Validate an ingested batch and route it to silver or quarantine; return the outcome without raising.

    `tools` (the GE project) are the run's; a batch validated alone opens its own.
    """
    tools = tools or ContractTools.of(settings)
    return route_batch(settings, assess_batch(settings, source, month, tools.project), tools.project)


def check_batch_apart(settings: Settings, source: str, month: str) -> ValidationOutcome | Assessment:
    """check_batch in a process that shares the home with others (a Dask worker), writing only its batch's files.

    The batch is validated on an ephemeral GE project, and routed here unless routing may publish to the home's
    GE project (stores and Data Docs, which one process writes): such a batch (failed, or passed with warnings)
    comes back checked but not routed, for that process to route (`route_batch`).
    """
    project = GxProject.ephemeral()
    checked = assess_batch(settings, source, month, project)
    return checked if checked.needs_docs else route_batch(settings, checked, project)


def validate_batch(
    settings: Settings, source: str, month: str, tools: ContractTools | None = None
) -> ValidationOutcome:
    """Validate an ingested batch: pass -> silver and the outcome; fail -> quarantine and ContractViolation."""
    outcome = check_batch(settings, source, month, tools)
    if not outcome.success:
        raise outcome.violation()
    return outcome
