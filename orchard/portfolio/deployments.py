"""The Prefect deployments of a portfolio (prefect.yaml), generated from its models, never copied by hand.

Monthly schedules on the 1st (UTC), in stage order: ingest, validate, features, then each model's monitor (the
retraining policy: it fits the first champion itself); each model's train deployment runs on its
`orchard.monitor.breach` event (the retraining automation) or by hand. A
portfolio other than the demo passes its folder to the flows through the worker's job environment.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from orchard.atomic import write_text
from orchard.model_specs import model_specs
from orchard.portfolio.spec import Portfolio

WORK_POOL = "orchard-process"
ENTRYPOINTS = "flows/automations.py"
HEADER = """\
# Prefect deployments of Orchard's production profile, generated from the portfolio by
# `orchard deployments --portfolio DIR` (do not edit by hand: a test checks this file against the generator).
# `prefect deploy --all` with PREFECT_API_URL = the server `orchard up --profile production` started. Runs go to
# the process work pool `orchard-process`; the worker passes its environment (ORCHARD_*, MLFLOW_TRACKING_*) to
# every flow run, and each flow builds Settings from it. Schedules are monthly, in stage order, on the 1st (UTC);
# a month left empty means the last complete month. Each model's monitor deployment applies the retraining policy
# to the recorded history (and fits the first champion); its train deployment has an event trigger on
# `orchard.monitor.breach` for its model (emitted by the monitor deployment when the policy asks for a retrain).
"""
_STAGES = (
    ("ingest", "Copy every source's landing file of the month into bronze (idempotent by batch id).", "0 2"),
    ("validate", "Validate the month's bronze batches against their Great Expectations contracts.", "30 2"),
    (
        "features",
        "Offline feature tables, Feast apply, materialization of the month into the online store.",
        "0 3",
    ),
)


def _schedule(minute_hour: str, days: str = "1 * *") -> list[dict[str, Any]]:
    return [{"cron": f"{minute_hour} {days}", "timezone": "UTC", "active": True}]


def _base(
    name: str, description: str, flow: str, tags: list[str], parameters: dict[str, Any]
) -> dict[str, Any]:
    return {
        "name": name,
        "description": description,
        "entrypoint": f"{ENTRYPOINTS}:{flow}",
        "tags": ["orchard", *tags],
        "parameters": parameters,
        "work_pool": {"name": WORK_POOL, "work_queue_name": "default"},
    }


def _train(model: str) -> dict[str, Any]:
    deployment = _base(
        f"train-{model}",
        f"Retrain {model} and gate its promotion (run by the breach automation or by hand).",
        "train_deployed",
        ["train", model],
        {"model": model},
    )
    deployment["triggers"] = [
        {
            "type": "event",
            "enabled": True,
            "match": {"prefect.resource.id": f"orchard.model.{model}"},
            "expect": ["orchard.monitor.breach"],
            "parameters": {"model": "{{ event.payload.model }}", "month": "{{ event.payload.month }}"},
        }
    ]
    return deployment


def _score(model: str, slot: int) -> dict[str, Any]:
    deployment = _base(
        f"score-{model}",
        f"Batch-score the month's cases with the {model} champion.",
        "score_deployed",
        ["score", model],
        {"model": model},
    )
    deployment["schedules"] = _schedule(f"{10 * slot % 60} {4 + 10 * slot // 60}")
    return deployment


def _monitor(model: str, slot: int) -> dict[str, Any]:
    deployment = _base(
        f"monitor-{model}",
        f"The retraining policy's month of {model} from the recorded history: PSI/CSI of its champion (a breach "
        "past the cooldown emits orchard.monitor.breach), or the first champion's fit once labels have matured.",
        "monitor_deployed",
        ["monitor", model],
        {"model": model},
    )
    # ten minutes apart from 05:00, in the portfolio's order
    deployment["schedules"] = _schedule(f"{10 * slot % 60} {5 + 10 * slot // 60}")
    return deployment


def deployments(portfolio: Portfolio, portfolio_dir: str | None = None) -> dict[str, Any]:
    """Return the prefect.yaml document of a portfolio (portfolio_dir: passed to the flows when not the demo)."""
    items = []
    for name, description, at in _STAGES:
        stage = _base(name, description, f"{name}_deployed", [name], {})
        stage["schedules"] = _schedule(at)
        items.append(stage)
    models = list(model_specs(portfolio))
    items += [_train(model) for model in models]
    items += [_score(model, slot) for slot, model in enumerate(portfolio.served_models)]
    items += [_monitor(model, slot) for slot, model in enumerate(models)]
    federated = _base(
        "federated",
        "Vertical federated training between the lender and the partner platform (quarterly).",
        "federated_deployed",
        ["federated"],
        {"job_id": "scheduled"},
    )
    federated["schedules"] = _schedule(f"0 {6 + (len(models) - 1) // 6}", "1 */3 *")
    items.append(federated)
    if portfolio_dir is not None:
        for item in items:
            item["job_variables"] = {"env": {"ORCHARD_PORTFOLIO": portfolio_dir}}
    return {
        "name": f"orchard-{portfolio.name}" if portfolio_dir is not None else "orchard",
        "prefect-version": "3.9.1",
        "build": None,
        "push": None,
        "pull": [
            {"prefect.deployments.steps.set_working_directory": {"directory": "{{ $ORCHARD_REPO_DIR }}"}}
        ],
        "deployments": items,
    }


def write_deployments(portfolio: Portfolio, target: Path, portfolio_dir: str | None = None) -> Path:
    """Write the portfolio's prefect.yaml atomically."""
    document = deployments(portfolio, portfolio_dir)
    write_text(HEADER + yaml.safe_dump(document, sort_keys=False, width=120), target)
    return target
