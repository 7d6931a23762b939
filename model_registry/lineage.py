"""Lineage of a registered model: which batches, data, contracts, features and code produced it."""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from typing import Any

from orchard.errors import OrchardError

TAG_PREFIX = "orchard.lineage."
# MLflow keeps tag values up to 8000 characters (model versions: 5000); stay well below both.
_MAX_TAG_CHARS = 1000


@dataclass(frozen=True)
class Lineage:
    """Where a model came from: lake batches, training-data hash, GE validations, Feast service, code."""

    batch_ids: list[str]
    data_sha256: str
    validation_ids: list[str]
    feature_service: str
    code_version: str
    train_window: str
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for name in ("data_sha256", "feature_service", "code_version", "train_window"):
            value = getattr(self, name)
            if not isinstance(value, str) or not value.strip():
                raise OrchardError(f"lineage field {name!r} must be a non-empty string, got {value!r}")
        for name in ("batch_ids", "validation_ids"):
            value = getattr(self, name)
            if isinstance(value, str) or not all(isinstance(item, str) for item in value):
                raise OrchardError(f"lineage field {name!r} must be a list of strings, got {value!r}")


def lineage_dict(lineage: Lineage) -> dict[str, Any]:
    """Return the lineage as a JSON-ready dict (the content of lineage.json)."""
    return asdict(lineage)


def lineage_sha256(lineage: Lineage) -> str:
    """Return a stable hash of the whole lineage record."""
    text = json.dumps(lineage_dict(lineage), sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()


def _joined(items: list[str]) -> str:
    """Join ids with commas, shortened with a '(+N more)' note when too long for a tag."""
    text = ",".join(items)
    if len(text) <= _MAX_TAG_CHARS:
        return text
    kept: list[str] = []
    for item in items:
        if len(",".join([*kept, item])) > _MAX_TAG_CHARS - 20:
            break
        kept.append(item)
    return ",".join(kept) + f",...(+{len(items) - len(kept)} more)"


def lineage_tags(lineage: Lineage) -> dict[str, str]:
    """Return the lineage summary as flat string tags (the full record lives in lineage.json)."""
    return {
        f"{TAG_PREFIX}data_sha256": lineage.data_sha256,
        f"{TAG_PREFIX}feature_service": lineage.feature_service,
        f"{TAG_PREFIX}code_version": lineage.code_version,
        f"{TAG_PREFIX}train_window": lineage.train_window,
        f"{TAG_PREFIX}n_batches": str(len(lineage.batch_ids)),
        f"{TAG_PREFIX}batch_ids": _joined(lineage.batch_ids),
        f"{TAG_PREFIX}validation_ids": _joined(lineage.validation_ids),
        f"{TAG_PREFIX}sha256": lineage_sha256(lineage),
    }
