"""What a lifecycle run's months will need first, made ready while Prefect's temporary server starts.

Orchard's modules import their heavy libraries where a step first needs them (a CLI command that validates
nothing never pays for Great Expectations), so the run's first validation, first fit and first point-in-time
join each start by importing them, about 2,600 modules, and the first registration by creating the MLflow
store's tables. A run that starts Prefect's temporary server waits several seconds for it with a core free (the
server's process takes the other): `warm_up` does that work then, and the months find it done.
"""

from __future__ import annotations

import importlib

from model_registry.tracking import mlflow_client
from orchard.settings import Settings

MONTH_LIBRARIES = (
    "great_expectations",  # each month's contracts (orchard.contracts)
    "great_expectations.expectations",
    "ibis.backends.duckdb",  # Feast's point-in-time joins (the duckdb offline store)
    "feast.infra.offline_stores.duckdb",
    "sklearn.linear_model",  # the fits (orchard.credit)
    "sklearn.model_selection",
    "lightgbm",
    "optbinning",
    "git",  # MLflow records a run's source version with it
)
"""Libraries a month's steps import on first use, in the order the first months need them."""

LANE_LIBRARIES = (
    "great_expectations",  # the batches it checks beside the run's process (flows.validate)
    "great_expectations.expectations",
    "evidently",  # the drift reports and dashboards (monitoring)
    "evidently.presets",
)
"""Libraries the run's lane (orchard.lifecycle.tools) imports as it starts, before its first task needs them."""


def import_libraries(names: tuple[str, ...]) -> None:
    """Import the named libraries, in order; one that does not import is left to the step that needs it."""
    for name in names:
        try:
            importlib.import_module(name)
        except ImportError:
            continue


def warm_up(settings: Settings) -> None:
    """Import the month steps' libraries and open the run's MLflow store (its tables made, once).

    A library that does not import is left to the step that needs it, which fails with its own error (GitPython
    without a git executable: MLflow runs without it).
    """
    import_libraries(MONTH_LIBRARIES)
    mlflow_client(settings)
