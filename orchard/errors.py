"""Errors that users see as one clear line (the CLI prints them without a traceback)."""

from __future__ import annotations


class OrchardError(Exception):
    """A problem the user can act on; the message names what is wrong."""


class ContractViolation(OrchardError):
    """A batch broke its data contract and was quarantined."""

    def __init__(self, source: str, batch_id: str, broken: list[str], quarantine_path: str) -> None:
        self.source = source
        self.batch_id = batch_id
        self.broken = broken
        self.quarantine_path = quarantine_path
        detail = "; ".join(broken)
        super().__init__(
            f"batch {batch_id} of {source} broke its contract and was quarantined at {quarantine_path}: {detail}"
        )


class ServiceUnreachable(OrchardError):
    """A service of the production profile (PostgreSQL, ...) does not answer."""
