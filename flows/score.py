"""Score flow: a month's population scored by a model's champion (or a given version) for monitoring."""

from __future__ import annotations

from dataclasses import dataclass

from prefect import flow, task
from prefect.cache_policies import NONE

from model_registry.registry import champion_version
from orchard.errors import OrchardError
from orchard.lifecycle.tools import Tools
from orchard.model_specs import model_spec
from orchard.serving.batch import score_month, scores_path
from orchard.serving.models import load_served
from orchard.settings import Settings


@dataclass(frozen=True)
class ScoreOutcome:
    """What one batch scoring wrote."""

    model: str
    month: str
    version: int
    rows: int
    path: str
    mean_pd: float


@task(name="score-month", task_run_name="score {model} v{version} @ {month}", cache_policy=NONE, retries=1)
def score_month_task(settings: Settings, model: str, month: str, version: int) -> ScoreOutcome:
    """Score one month's applications with one model version and write them under home/scores."""
    with Tools() as tools:  # closed here: a configured Dask cluster does not outlive the scoring
        scores = score_month(
            settings,
            model_spec(settings.portfolio_def, model),
            month,
            load_served(settings, model, version),
            tools=tools,
        )
    return ScoreOutcome(
        model=model,
        month=month,
        version=version,
        rows=len(scores),
        path=str(scores_path(settings, model, month)),
        mean_pd=float(scores["pd"].mean()) if len(scores) else float("nan"),
    )


@flow(name="score", flow_run_name="score {model} @ {month}", validate_parameters=False)
def score_flow(settings: Settings, model: str, month: str, version: int | None = None) -> ScoreOutcome:
    """Batch-score a month for a model: the champion unless a version is given."""
    model_spec(settings.portfolio_def, model)  # an unknown model is an error naming the known ones
    version = version if version is not None else champion_version(settings, model)
    if version is None:
        raise OrchardError(f"model {model} has no champion to score with; pass a version")
    return score_month_task(settings, model, month, version)
