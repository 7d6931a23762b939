"""Ingest flow: a month's landing files into bronze, idempotent by batch id."""

from __future__ import annotations

from prefect import flow, task
from prefect.cache_policies import NONE

from orchard.lake import IngestResult, ingest_batch
from orchard.settings import Settings


@task(name="ingest-month", cache_policy=NONE, retries=2, retry_delay_seconds=[1, 5])
def ingest_month(settings: Settings, month: str) -> list[IngestResult]:
    """Copy every source's landing file of the month into bronze (no-op for batches already there)."""
    return [ingest_batch(settings, source, month) for source in settings.portfolio_def.sources]


@flow(name="ingest", flow_run_name="ingest {month}", validate_parameters=False)
def ingest_flow(settings: Settings, month: str) -> list[IngestResult]:
    """Ingest one month of every source."""
    return ingest_month(settings, month)
