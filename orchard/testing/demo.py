"""The demo portfolio's sources and models for tests and benchmarks (portfolios/demo, read once per process)."""

from __future__ import annotations

from dataclasses import replace
from functools import cache
from pathlib import Path
from typing import Any

import pandas as pd
import yaml

from orchard.atomic import write_parquet, write_text
from orchard.lake import silver_path
from orchard.model_specs import ModelSpec, model_specs
from orchard.portfolio.load import load_portfolio
from orchard.portfolio.spec import Portfolio
from orchard.settings import DEMO_PORTFOLIO, Settings
from orchard.simulate import simulate
from orchard.simulate.run import landing_path
from orchard.sources import SourceSpec, source_specs

SHORT_LABELS: dict[str, dict[str, Any]] = {
    "dpd90_6m": {"within_months": 2, "bad_dpd": 30},
    "dpd30_3m": {"within_months": 1, "bad_dpd": 30},
    "account_dpd90_6m": {"within_months": 2, "bad_dpd": 30},
}
"""The demo's loan-event labels made short and frequent (30+ dpd within 2 months, the early label within 1):
labels mature in small lakes."""


def demo_variant(
    folder: Path,
    *,
    policy: dict[str, Any] | None = None,
    labels: dict[str, dict[str, Any]] | None = None,
    joint: dict[str, Any] | None = None,
) -> Path:
    """Write the demo portfolio into folder with policy keys and label keys set over its own; return folder.

    `policy` sets keys of the portfolio's `policy` (nested `gates` / `monitoring` keys merged one by one);
    `labels` sets keys of named labels (e.g. a strategy's `within_months`); `joint` keys of the joint model.
    """
    document = yaml.safe_load((DEMO_PORTFOLIO / "portfolio.yaml").read_text())
    for key, value in (policy or {}).items():
        if isinstance(value, dict):
            document["policy"][key] = {**document["policy"].get(key, {}), **value}
        else:
            document["policy"][key] = value
    for name, keys in (labels or {}).items():
        document["labels"][name].update(keys)
    document["joint"].update(joint or {})
    folder.mkdir(parents=True, exist_ok=True)
    write_text(
        yaml.safe_dump(document, sort_keys=False), folder / "portfolio.yaml"
    )  # atomic: workers share it
    return folder


@cache
def demo_portfolio() -> Portfolio:
    """Return the validated demo portfolio."""
    return load_portfolio(DEMO_PORTFOLIO)


def demo_sources() -> dict[str, SourceSpec]:
    """Return the demo's sources as the lake holds them."""
    return source_specs(demo_portfolio())


def demo_source(name: str) -> SourceSpec:
    """Return one source of the demo."""
    return demo_sources()[name]


def demo_models() -> dict[str, ModelSpec]:
    """Return the demo's models in the portfolio's order."""
    return model_specs(demo_portfolio())


def demo_model(name: str) -> ModelSpec:
    """Return one model of the demo."""
    return demo_models()[name]


def demo_model_with(
    name: str, *, policy: dict[str, Any] | None = None, label: dict[str, Any] | None = None
) -> ModelSpec:
    """Return one model of the demo with top-level policy keys and label keys replaced (e.g. a short window)."""
    spec = demo_model(name)
    rule = spec.label_rule
    return replace(
        spec,
        policy=spec.policy.model_copy(update=policy or {}),
        label_rule=rule.model_copy(update=label or {}) if rule is not None else None,
    )


def served_models() -> dict[str, ModelSpec]:
    """Return the demo's models the decision API serves."""
    return {name: spec for name, spec in demo_models().items() if spec.serve}


def simulated_silver(settings: Settings) -> Settings:
    """Simulate the settings' window and put every landed batch into silver as it is (no contracts); return them."""
    summary = simulate(settings)
    for source, months in summary.rows.items():
        for month in months:
            frame = pd.read_parquet(landing_path(settings, source, month))
            write_parquet(frame, silver_path(settings, source, month))
    return settings
