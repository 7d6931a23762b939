"""Data contracts: Great Expectations suites derived from the source specs, and batch validation."""

from __future__ import annotations

from orchard.contracts.suites import build_suite
from orchard.contracts.validate import ContractTools, ValidationOutcome, check_batch, validate_batch

__all__ = ["ContractTools", "ValidationOutcome", "build_suite", "check_batch", "validate_batch"]
