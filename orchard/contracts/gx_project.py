"""The Great Expectations project under settings.gx_dir: one cached context per process, validation, Data Docs."""

from __future__ import annotations

import datetime as dt
import functools
import logging
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Final
from urllib.parse import unquote, urlparse

import pandas as pd

if TYPE_CHECKING:
    import great_expectations as gx
    from great_expectations.core import ExpectationSuiteValidationResult
    from great_expectations.core.batch_definition import BatchDefinition
    from great_expectations.data_context import FileDataContext

logger = logging.getLogger(__name__)

# great_expectations takes seconds to import, so it is imported inside the functions that need it:
# importing orchard.contracts (e.g. from the CLI) stays cheap.

DATASOURCE = "orchard_lake"
BATCH_DEFINITION = "whole_batch"
RESULT_FORMAT: Final = "BASIC"
# GE contexts are not thread-safe for writes (stores, great_expectations.yml, Data Docs).
_LOCK = threading.RLock()


@functools.cache
def _context(root: str) -> FileDataContext:
    """Return the file-mode context rooted at root, created on first use and reused within the process."""
    import great_expectations as gx
    from great_expectations.data_context.types.base import ProgressBarsConfig

    with _LOCK:
        context = gx.get_context(mode="file", project_root_dir=root)
        bars = context.variables.progress_bars
        # a fresh context holds a ProgressBarsConfig; one read back from great_expectations.yml holds a dict
        globally = bars.get("globally") if isinstance(bars, dict) else getattr(bars, "globally", None)
        if bars is None or globally is not False:
            context.variables.progress_bars = ProgressBarsConfig(globally=False, metric_calculations=False)
            context.variables.save()
        # Dataframe assets hold no state worth keeping: start each process from a clean datasource.
        context.data_sources.add_or_update_pandas(name=DATASOURCE)
        logger.debug("great expectations context ready at %s", root)
        return context


@functools.cache
def _batch_definition(root: str, source: str) -> BatchDefinition:
    """Return the whole-dataframe batch definition of a source's asset (registered once per process)."""
    from great_expectations.datasource.fluent import PandasDatasource

    with _LOCK:
        datasource = _context(root).data_sources.get(DATASOURCE)
        if not isinstance(datasource, PandasDatasource):  # _context registers it as a pandas datasource
            raise TypeError(f"great expectations datasource {DATASOURCE!r} is not a pandas datasource")
        asset = datasource.add_dataframe_asset(name=source)
        return asset.add_batch_definition_whole_dataframe(BATCH_DEFINITION)


def context_for(gx_dir: Path) -> FileDataContext:
    """Return the process-wide context of the GE project under gx_dir."""
    return _context(str(Path(gx_dir).resolve()))


def validate_frame(
    gx_dir: Path, source: str, df: pd.DataFrame, suite: gx.ExpectationSuite
) -> ExpectationSuiteValidationResult:
    """Validate a dataframe against a suite (nothing is stored: passing batches leave no GE artefacts)."""
    batch = _batch_definition(str(Path(gx_dir).resolve()), source).get_batch(
        batch_parameters={"dataframe": df}
    )
    return batch.validate(suite, result_format=RESULT_FORMAT)


def publish_result(
    gx_dir: Path,
    suite: gx.ExpectationSuite,
    result: ExpectationSuiteValidationResult,
    batch_id: str,
    run_time: dt.datetime,
) -> Path:
    """Store a result (failed, or passed with warnings) and its suite and build its Data Docs page; return its path.

    The run id is derived from the batch (name = batch id, time = ingestion time), so publishing the same
    batch again overwrites its page instead of adding another one.
    """
    from great_expectations.core.run_identifier import RunIdentifier
    from great_expectations.data_context.types.resource_identifiers import (
        ExpectationSuiteIdentifier,
        ValidationResultIdentifier,
    )

    with _LOCK:
        context = context_for(gx_dir)
        context.suites.add_or_update(suite)
        suite_id = ExpectationSuiteIdentifier(name=suite.name)
        result_id = ValidationResultIdentifier(
            expectation_suite_identifier=suite_id,
            run_id=RunIdentifier(run_name=batch_id, run_time=run_time),
            batch_identifier=batch_id,
        )
        context.validation_results_store.store_validation_results(
            suite_validation_result=result,
            suite_validation_result_identifier=result_id,
            expectation_suite_identifier=suite_id,
        )
        context.build_data_docs(resource_identifiers=[result_id])
        sites = context.get_docs_sites_urls(resource_identifier=result_id, only_if_exists=True)
        urls = [site["site_url"] for site in sites if site.get("site_url")]
        if not urls:
            raise RuntimeError(f"Data Docs were not built for {batch_id} under {gx_dir}")
        return Path(unquote(urlparse(urls[0]).path))
