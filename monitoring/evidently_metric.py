"""Orchard's exact PSI/CSI as Evidently 0.7 custom metrics, so its numbers show in reports and workspace dashboards.

`OrchardPSI` is a Metric (the configuration) bound to `OrchardPSICalculation` (the implementation, found by
Evidently through the generic parameter). Its result is one value per column (`ByLabelValue`, label = column), so
a dashboard panel reads it by metric type `evidently:metric_v2:OrchardPSI`, the `scope` parameter (score or
feature) and, optionally, the column label. The value comes from orchard.credit.psi, in one of three ways:
- `profile` given (the frozen reference profile stored with the model): only the current dataset is read;
- no profile: bins are frozen from the run's reference dataset (same as ReferenceProfile.fit on that sample);
- `values` given: PSI already computed by the monthly check (orchard.credit.psi.psi) is recorded as is.

`OrchardValue` records values computed elsewhere (drift share, matured AUC/KS, alias-event counts) under a
`group` parameter, so every dashboard panel reads its numbers by metric type and labels, never by position.
Only `scope`/`group` reach the stored metric labels: the profile and values are deliberately kept out, so a
retrained model's new profile continues the same dashboard series.
"""

from __future__ import annotations

from typing import Any

from evidently._pydantic_compat import Field
from evidently.core.datasets import Dataset
from evidently.core.metric_types import (
    BoundTest,
    ByLabelCalculation,
    ByLabelMetric,
    ByLabelValue,
    MetricConfig,
)
from evidently.core.report import Context
from evidently.legacy.model.widget import BaseWidgetInfo
from evidently.legacy.renderers.html_widgets import WidgetSize, table_data

from monitoring.reports import PSI_METRIC_TYPE
from orchard.credit.psi import DEFAULT_BINS, PSI_EPSILON, ReferenceProfile, psi
from orchard.errors import OrchardError

_LABEL_PARAMS = ("type", "scope", "group")  # the only metric parameters stored as dashboard series labels


def _compact_config(metric_id: str, params: dict[str, Any]) -> MetricConfig:
    """Return a metric config carrying only the label parameters (not the profile or the recorded values)."""
    return MetricConfig(metric_id=metric_id, params={k: params[k] for k in _LABEL_PARAMS if k in params})


def _table(title: str, values: dict[str, float]) -> list[BaseWidgetInfo]:
    """Return one table widget listing every label and its value, largest first."""
    rows = [[label, f"{value:.6f}"] for label, value in sorted(values.items(), key=lambda kv: -kv[1])]
    return [table_data(title=title, column_names=["column", "value"], data=rows, size=WidgetSize.FULL)]


class OrchardPSI(ByLabelMetric):
    """PSI/CSI on bins frozen from the reference (credit-industry definition; see docs/psi.md), per column."""

    columns: list[str]
    """The columns to compare (numeric ones listed in `categorical` are not binned as numbers)."""
    categorical: list[str] = Field(default_factory=list)
    """Columns binned by level rather than by reference deciles (used when no profile is given)."""
    scope: str = "feature"
    """'score' for score PSI, 'feature' for CSI: the dashboard label that separates the two."""
    profile: dict[str, Any] | None = None
    """A ReferenceProfile.to_dict(): the frozen bins; when given, the reference dataset is not read."""
    values: dict[str, float] | None = None
    """PSI already computed by orchard.credit.psi.psi on the same profile, recorded as is."""
    n_bins: int = DEFAULT_BINS
    """Reference quantile bins per numeric column when the bins are frozen from the run's reference."""

    def _default_tests(self, context: Context) -> list[BoundTest]:
        return []

    def _default_tests_with_reference(self, context: Context) -> list[BoundTest]:
        return []


class OrchardPSICalculation(ByLabelCalculation[OrchardPSI]):
    """Compute OrchardPSI with orchard.credit.psi (vectorised, exact against the plain loop)."""

    def display_name(self) -> str:
        """Return the title shown in reports."""
        kind = "Score PSI" if self.metric.scope == "score" else "Feature CSI"
        return f"{kind} (Orchard, frozen reference bins, epsilon {PSI_EPSILON:g})"

    def to_metric_config(self) -> MetricConfig:
        """Return the config stored with each value: type and scope only."""
        return _compact_config(self.to_metric().metric_id, self.to_metric().dict(exclude_none=True))

    def calculate(
        self, context: Context, current_data: Dataset, reference_data: Dataset | None
    ) -> tuple[ByLabelValue, None]:
        """Return one PSI value per column."""
        metric = self.metric
        if metric.values is not None:
            missing = [c for c in metric.columns if c not in metric.values]
            if missing:
                raise OrchardError(f"recorded PSI has no value for column(s) {', '.join(missing)}")
            values = {c: float(metric.values[c]) for c in metric.columns}
        else:
            profile = self._profile(reference_data)
            values = psi(profile, current_data.as_dataframe().loc[:, metric.columns])
        result = self.result(values)
        result.widget = _table(self.display_name(), values)
        return result, None

    def _profile(self, reference_data: Dataset | None) -> ReferenceProfile:
        metric = self.metric
        if metric.profile is not None:
            stored = ReferenceProfile.from_dict(metric.profile)
            kept = tuple(stored.column(c) for c in metric.columns)
            return ReferenceProfile(columns=kept, n_reference=stored.n_reference, n_bins=stored.n_bins)
        if reference_data is None:
            raise OrchardError("OrchardPSI needs a stored profile or a reference dataset")
        reference = reference_data.as_dataframe()
        numeric = [c for c in metric.columns if c not in set(metric.categorical)]
        categorical = [c for c in metric.columns if c in set(metric.categorical)]
        return ReferenceProfile.fit(reference, numeric, categorical, n_bins=metric.n_bins)


class OrchardValue(ByLabelMetric):
    """Values computed outside Evidently (drift share, matured AUC/KS, event counts), recorded under a group."""

    group: str
    """What the values are ('drift', 'matured', 'estimate', 'events', ...): the dashboard label."""
    values: dict[str, float]
    """Label -> value."""

    def _default_tests(self, context: Context) -> list[BoundTest]:
        return []

    def _default_tests_with_reference(self, context: Context) -> list[BoundTest]:
        return []


class OrchardValueCalculation(ByLabelCalculation[OrchardValue]):
    """Return the recorded values."""

    def display_name(self) -> str:
        """Return the title shown in reports."""
        return f"Orchard {self.metric.group}"

    def label_display_name(self, label: object) -> str:
        """Return the title of one value."""
        return f"{self.metric.group}: {label}"

    def to_metric_config(self) -> MetricConfig:
        """Return the config stored with each value: type and group only."""
        return _compact_config(self.to_metric().metric_id, self.to_metric().dict(exclude_none=True))

    def calculate(
        self, context: Context, current_data: Dataset, reference_data: Dataset | None
    ) -> tuple[ByLabelValue, None]:
        """Return the recorded values."""
        values = {str(k): float(v) for k, v in self.metric.values.items()}
        result = self.result(values)
        result.widget = _table(self.display_name(), values)
        return result, None


def psi_report_metrics(
    profile: ReferenceProfile, score_column: str | None = "score", values: dict[str, float] | None = None
) -> list[OrchardPSI]:
    """Return the score-PSI and feature-CSI metrics of a profile (recording values when given)."""
    names = profile.column_names
    features = [c for c in names if c != score_column]
    categorical = [p.column for p in profile.columns if p.kind == "categorical"]
    stored = profile.to_dict()
    metrics: list[OrchardPSI] = []
    for scope, columns in (("score", [c for c in names if c == score_column]), ("feature", features)):
        if columns:
            recorded = None if values is None else {c: values[c] for c in columns if c in values}
            metrics.append(
                OrchardPSI(
                    columns=columns,
                    categorical=[c for c in categorical if c in columns],
                    scope=scope,
                    profile=stored,
                    values=recorded,
                )
            )
    return metrics


def read_psi(snapshot: Any) -> dict[str, dict[str, float]]:
    """Return {scope: {column: PSI}} from a snapshot, read by metric type (never by position)."""
    found: dict[str, dict[str, float]] = {}
    for metric in snapshot.dict()["metrics"]:
        if metric["config"]["type"] == PSI_METRIC_TYPE:
            scope = str(metric["config"].get("scope", "feature"))
            found.setdefault(scope, {}).update({str(k): float(v) for k, v in metric["value"].items()})
    return found
