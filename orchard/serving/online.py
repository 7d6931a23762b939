"""Online features of one customer from the Feast online store, with how fresh each feature view is."""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from feast import FeatureService, FeatureStore
from feast.errors import FeatureServiceNotFoundException

from orchard.errors import OrchardError

_TS_SUFFIX = "__ts"
_SECONDS_PER_DAY = 86_400.0


@dataclass(frozen=True)
class ViewFreshness:
    """Whether a view had a row for the customer, its event time, and its age at read time."""

    found: bool
    event_time: datetime | None
    age_days: float | None

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-ready dict (event time in ISO format)."""
        return {
            "found": self.found,
            "event_time": self.event_time.isoformat() if self.event_time else None,
            "age_days": self.age_days,
        }


@dataclass(frozen=True)
class OnlineRow:
    """The online feature values of one customer (Python scalars, None when missing) and their freshness."""

    values: dict[str, Any]
    freshness: dict[str, ViewFreshness]

    @property
    def known(self) -> bool:
        """Return whether any feature view holds a row for the customer."""
        return any(f.found for f in self.freshness.values())


class OnlineFeatureReader:
    """Reads a feature service's features per customer; the store and the service are resolved once."""

    def __init__(self, store: FeatureStore, service: str) -> None:
        try:
            self._service: FeatureService = store.get_feature_service(service)
        except FeatureServiceNotFoundException:
            raise OrchardError(f"feature service {service!r} is not applied in the Feast registry") from None
        self._store = store
        self.service = service
        # the first feature of each view carries the view's event time for this customer
        self._view_probe = {
            p.name: p.features[0].name for p in self._service.feature_view_projections if p.features
        }
        self.features = [f.name for p in self._service.feature_view_projections for f in p.features]
        keys = {
            c.name
            for p in self._service.feature_view_projections
            for c in store.get_feature_view(p.name).entity_columns
        }
        if len(keys) != 1:
            raise OrchardError(
                f"feature service {service!r} must read views of one entity, not {sorted(keys)}"
            )
        self.join_key = keys.pop()

    def read(self, customer_id: str, now: datetime | None = None) -> OnlineRow:
        """Return the customer's latest online features (one get_online_features call)."""
        response = self._store.get_online_features(
            features=self._service, entity_rows=[{self.join_key: customer_id}]
        )
        data = response.to_dict(include_event_timestamps=True)
        values = {name: _scalar(data[name][0]) for name in self.features if name in data}
        now = now or datetime.now(UTC)
        freshness = {}
        for view, probe in self._view_probe.items():
            seconds = data.get(probe + _TS_SUFFIX, [0])[0]
            if seconds:
                event_time = datetime.fromtimestamp(seconds, UTC)
                age = round((now - event_time).total_seconds() / _SECONDS_PER_DAY, 3)
                freshness[view] = ViewFreshness(found=True, event_time=event_time, age_days=age)
            else:
                freshness[view] = ViewFreshness(found=False, event_time=None, age_days=None)
        return OnlineRow(values=values, freshness=freshness)


def _scalar(value: Any) -> Any:
    """Return a JSON-safe scalar: NaN becomes None (missing), numpy scalars become Python ones."""
    if hasattr(value, "item"):
        value = value.item()
    if isinstance(value, float) and math.isnan(value):
        return None
    return value
