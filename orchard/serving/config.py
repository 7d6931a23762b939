"""The serving knobs (API key, decision cut-offs, polling, limits), read from the settings in one place."""

from __future__ import annotations

from dataclasses import dataclass

from pydantic import SecretStr

from orchard.errors import OrchardError
from orchard.settings import Settings


@dataclass(frozen=True)
class ServingConfig:
    """What the decision API needs beyond the shared settings."""

    api_key: SecretStr | None = None
    approve_max_pd: float = 0.10
    decline_min_pd: float = 0.30
    fraud_refer_min: float = 0.20
    champion_poll_seconds: float = 5.0
    max_body_bytes: int = 16_384
    decision_flush_rows: int = 500
    decision_queue_max: int = 2_000
    decision_log_timeout_seconds: float = 5.0
    decision_db_url: str | None = None
    public_docs: bool = False

    def __post_init__(self) -> None:
        if not 0.0 <= self.approve_max_pd <= self.decline_min_pd <= 1.0:
            raise OrchardError(
                f"decision cut-offs must satisfy 0 <= approve_max_pd ({self.approve_max_pd}) "
                f"<= decline_min_pd ({self.decline_min_pd}) <= 1"
            )
        if not 0.0 <= self.fraud_refer_min <= 1.0:
            raise OrchardError(f"fraud_refer_min must be within [0, 1], got {self.fraud_refer_min}")
        if self.champion_poll_seconds <= 0:
            raise OrchardError(f"champion_poll_seconds must be positive, got {self.champion_poll_seconds}")
        if self.max_body_bytes < 256:
            raise OrchardError(f"max_body_bytes must be at least 256, got {self.max_body_bytes}")
        if (
            self.decision_flush_rows < 1
            or self.decision_queue_max < 1
            or self.decision_log_timeout_seconds <= 0
        ):
            raise OrchardError(
                "decision_flush_rows and decision_queue_max must be at least 1, "
                "decision_log_timeout_seconds positive"
            )


def serving_config(settings: Settings) -> ServingConfig:
    """Return the serving config from the settings."""
    return ServingConfig(
        api_key=settings.api_key,
        approve_max_pd=settings.approve_max_pd,
        decline_min_pd=settings.decline_min_pd,
        fraud_refer_min=settings.fraud_refer_min,
        champion_poll_seconds=settings.champion_poll_seconds,
        max_body_bytes=settings.max_body_bytes,
        decision_flush_rows=settings.decision_flush_rows,
        decision_queue_max=settings.decision_queue_max,
        decision_log_timeout_seconds=settings.decision_log_timeout_seconds,
        decision_db_url=settings.decision_db_url,
        public_docs=settings.api_public_docs,
    )
