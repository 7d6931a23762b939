"""Prefect flow: a joint (vertical federated) training job between the lender and the platform, recorded."""

from __future__ import annotations

from concurrent.futures import Executor
from pathlib import Path
from typing import Any

from prefect import flow, task
from prefect.cache_policies import NONE

from orchard.atomic import write_json
from orchard.federated.data import VerticalSplit, write_vertical_split
from orchard.federated.job import run_joint_job
from orchard.federated.lifecycle import joint_month
from orchard.federated.paillier_lr import LRConfig
from orchard.lifecycle.ledger import ModelMonth
from orchard.settings import Settings
from orchard.worker import timed


@task
def split_parties(settings: Settings) -> VerticalSplit:
    """Write each party's own table from the simulator's landing files."""
    return write_vertical_split(settings, settings.federated_dir / "split")


@task
def joint_training(settings: Settings, split: VerticalSplit, job_id: str, config: LRConfig) -> dict[str, Any]:
    """Run the two party processes through PSI and hetero-LR training; the guest registers the model."""
    return run_joint_job(settings, split, job_id, config)


@task(name="joint model", task_run_name="joint model {month}", cache_policy=NONE)
def joint_model_month(
    settings: Settings, month: str, lane: Executor | None = None
) -> tuple[ModelMonth | None, float]:
    """The joint model's month in the lifecycle (monitoring at both parties, then a fit or retrain if due): its
    record (None: the portfolio has no joint model) and the seconds it took.

    With a lane (a worker process: the lifecycle's Tools.lane) the month runs there, so the lifecycle's own
    process goes on with the other models meanwhile: the joint month is mostly waiting on the host process and
    gmpy2 arithmetic that holds the GIL, work a second core takes.
    """
    if lane is None:
        return timed(joint_month, settings, month)
    return lane.submit(timed, joint_month, settings, month).result()


@task
def record_job(settings: Settings, record: dict[str, Any]) -> Path:
    """Write the job's record (model version, metrics, intersection size, bytes, timings)."""
    return write_json(record, settings.federated_dir / "jobs" / f"{record['job_id']}.json")


@flow(name="federated-joint-training")
def federated_training(settings: Settings, job_id: str, epochs: int = 5) -> dict[str, Any]:
    """Split the data per party, run the joint job between two processes, record it."""
    split = split_parties(settings)
    record = joint_training(settings, split, job_id, LRConfig(epochs=epochs, seed=settings.seed))
    record_job(settings, record)
    return record
