"""The Great Expectations project under settings.gx_dir: its context, validation and Data Docs, held by a run."""

from __future__ import annotations

import datetime as dt
import logging
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Final
from urllib.parse import unquote, urlparse

import pandas as pd

from orchard.contracts.expectation_memo import keep_expectations

if TYPE_CHECKING:
    import great_expectations as gx
    from great_expectations.core import ExpectationSuiteValidationResult
    from great_expectations.core.batch_definition import BatchDefinition
    from great_expectations.data_context import AbstractDataContext

logger = logging.getLogger(__name__)

# great_expectations takes seconds to import, so it is imported inside the methods that need it:
# importing orchard.contracts (e.g. from the CLI) stays cheap.

DATASOURCE = "orchard_lake"
BATCH_DEFINITION = "whole_batch"
RESULT_FORMAT: Final = "BASIC"


class GxProject:
    """A home's GE project: its file-mode context, opened on first use, and its batch definitions.

    A run's tools hold one for the run (orchard.lifecycle.tools); a call without one opens the project for
    that call. Nothing is kept in the process beyond the object. GE contexts are not thread-safe for writes
    (stores, great_expectations.yml, Data Docs), so the object serialises them.

    `GxProject.ephemeral()` validates on an in-memory context of the same datasource, asset and batch definition
    names (so its results are the file project's) and writes nothing: what a process that shares the home with
    others (a Dask worker) validates with; it cannot publish.
    """

    def __init__(self, gx_dir: Path | None) -> None:
        self.root = None if gx_dir is None else Path(gx_dir).resolve()
        self._context: AbstractDataContext | None = None
        self._definitions: dict[str, BatchDefinition] = {}
        self._lock = threading.RLock()

    @classmethod
    def ephemeral(cls) -> GxProject:
        """Return a project that validates in memory and writes nothing (see the class docstring)."""
        return cls(None)

    def context(self) -> AbstractDataContext:
        """Return the project's context, created (or read back) on first use."""
        import great_expectations as gx
        from great_expectations.data_context.types.base import (
            DataContextConfig,
            InMemoryStoreBackendDefaults,
            ProgressBarsConfig,
        )

        with self._lock:
            if self._context is not None:
                return self._context
            context: AbstractDataContext
            if self.root is None:  # no Data Docs site: it never publishes
                stores = InMemoryStoreBackendDefaults(init_temp_docs_sites=False)
                config = DataContextConfig(store_backend_defaults=stores)
                context = gx.get_context(mode="ephemeral", project_config=config)
            else:
                context = gx.get_context(mode="file", project_root_dir=str(self.root))
            bars = context.variables.progress_bars
            # a fresh context holds a ProgressBarsConfig; one read back from great_expectations.yml holds a dict
            globally = bars.get("globally") if isinstance(bars, dict) else getattr(bars, "globally", None)
            if bars is None or globally is not False:
                context.variables.progress_bars = ProgressBarsConfig(
                    globally=False, metric_calculations=False
                )
                if self.root is not None:
                    context.variables.save()
            if (
                DATASOURCE not in context.data_sources.all()
            ):  # reopening writes nothing (reruns change no file)
                context.data_sources.add_pandas(name=DATASOURCE)
            logger.debug("great expectations context ready at %s", self.root)
            self._context = context
            return context

    def _batch_definition(self, source: str) -> BatchDefinition:
        """Return the whole-dataframe batch definition of a source's asset (registered once per project)."""
        from great_expectations.datasource.fluent import PandasDatasource

        with self._lock:
            if source not in self._definitions:
                datasource = self.context().data_sources.get(DATASOURCE)
                if not isinstance(datasource, PandasDatasource):  # context() registers it as pandas
                    raise TypeError(
                        f"great expectations datasource {DATASOURCE!r} is not a pandas datasource"
                    )
                names = {asset.name for asset in datasource.assets}
                asset = (
                    datasource.get_asset(source)
                    if source in names
                    else datasource.add_dataframe_asset(name=source)
                )
                known = {definition.name for definition in asset.batch_definitions}
                self._definitions[source] = (
                    asset.get_batch_definition(BATCH_DEFINITION)
                    if BATCH_DEFINITION in known
                    else asset.add_batch_definition_whole_dataframe(BATCH_DEFINITION)
                )
            return self._definitions[source]

    def validate(
        self, source: str, df: pd.DataFrame, suite: gx.ExpectationSuite
    ) -> ExpectationSuiteValidationResult:
        """Validate a dataframe against a suite (nothing is stored: passing batches leave no GE artefacts)."""
        keep_expectations()
        batch = self._batch_definition(source).get_batch(batch_parameters={"dataframe": df})
        return batch.validate(suite, result_format=RESULT_FORMAT)

    def publish(
        self,
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

        if self.root is None:
            raise RuntimeError(f"an ephemeral GE project cannot publish the result of {batch_id}")
        with self._lock:
            context = self.context()
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
                raise RuntimeError(f"Data Docs were not built for {batch_id} under {self.root}")
            return Path(unquote(urlparse(urls[0]).path))
