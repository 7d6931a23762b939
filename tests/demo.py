"""The demo portfolio's sources and models for tests (portfolios/demo, read once per test session)."""

from __future__ import annotations

from functools import cache

from orchard.model_specs import ModelSpec, model_specs
from orchard.portfolio.load import load_portfolio
from orchard.portfolio.spec import Portfolio
from orchard.settings import DEMO_PORTFOLIO
from orchard.sources import SourceSpec, source_specs


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


def served_models() -> dict[str, ModelSpec]:
    """Return the demo's models the decision API serves."""
    return {name: spec for name, spec in demo_models().items() if spec.serve}
