"""Lifecycle flow (`orchard demo`): month by month through ingest, validate, features, monitor, (re)train."""

from __future__ import annotations

import logging
import time
from dataclasses import asdict

from prefect import flow, task
from prefect.cache_policies import NONE

from flows.automations import breach_metrics, emit_breach
from flows.features import update_features
from flows.ingest import ingest_month
from flows.monitor import monitor_model, publish_month_dashboard
from flows.train import promotion_decision, train_model
from flows.validate import MonthQuarantined, validate_month
from orchard.lifecycle.ledger import MonthRecord, last_retrain_month, load_month, record_month
from orchard.lifecycle.training import ready_to_train
from orchard.model_specs import APPLICATION_PD
from orchard.months import month_range
from orchard.settings import Settings
from orchard.simulate import simulate

progress = logging.getLogger("orchard.progress")


@task(name="simulate", cache_policy=NONE)
def simulate_landing(settings: Settings) -> dict[str, int]:
    """Write the simulator's monthly landing files (identical content on every run)."""
    summary = simulate(settings)
    return {"months": len(summary.months)}


def _timed(record: MonthRecord, stage: str, start: float) -> None:
    record.stage_seconds[stage] = round(time.perf_counter() - start, 4)


def run_month(settings: Settings, month: str, history: list[MonthRecord]) -> MonthRecord:
    """Run one month through every stage; each step is idempotent, the record is written last."""
    spec = APPLICATION_PD
    record = MonthRecord(month=month)

    t = time.perf_counter()
    record.ingested = [r.batch_id for r in ingest_month(settings, month)]
    _timed(record, "ingest", t)

    t = time.perf_counter()
    state = validate_month(settings, month, return_state=True)
    if state.is_failed():
        error = state.result(raise_on_failure=False)
        if not isinstance(error, MonthQuarantined):
            raise error if isinstance(error, BaseException) else RuntimeError(str(error))
        record.quarantined = {v.batch_id: list(v.broken) for v in error.violations}
    _timed(record, "validate", t)

    t = time.perf_counter()
    record.feature_rows = int(update_features(settings, month)["month_rows"])
    _timed(record, "features", t)

    t = time.perf_counter()
    outcome = monitor_model(settings, spec.name, month, last_retrain_month(history))
    _timed(record, "monitor", t)
    if outcome is not None:
        record.champion = outcome.version
        record.score_psi = outcome.score_psi
        top = sorted(outcome.feature_psi.items(), key=lambda kv: -kv[1])[:5]
        record.top_feature_psi = dict(top)
        record.breach, record.reasons = outcome.breach, outcome.reasons

    if outcome is not None and outcome.retrain:
        # the same event a deployed monitor emits; in production the automation runs the retraining deployment,
        # here (embedded) the policy acts in-flow below
        emit_breach(spec.name, month, outcome.version, outcome.reasons, breach_metrics(outcome))
    should_train = (outcome is None and ready_to_train(settings, spec, month)) or (
        outcome is not None and outcome.retrain
    )
    if should_train:
        t = time.perf_counter()
        trained = train_model(settings, spec.name, month)
        record.trained = asdict(trained)
        _timed(record, "train", t)
        t = time.perf_counter()
        record.promotion = asdict(promotion_decision(settings, trained, month))
        _timed(record, "promote", t)

    if outcome is not None:
        t = time.perf_counter()
        publish_month_dashboard(settings, spec.name, month, outcome)
        _timed(record, "dashboard", t)

    record_month(settings, record)
    _report(record)
    return record


def _report(record: MonthRecord) -> None:
    parts = [record.month, f"batches {len(record.ingested)}"]
    for batch, broken in record.quarantined.items():
        parts.append(f"QUARANTINED {batch}: " + "; ".join(b.split(",")[0] for b in broken))
    if record.score_psi is not None:
        parts.append(
            f"champion v{record.champion} score PSI {record.score_psi:.3f}"
            + (" BREACH" if record.breach else "")
        )
    if record.trained:
        parts.append(
            f"trained v{record.trained['version']} (oot AUC {record.trained['metrics']['oot_auc']:.3f})"
        )
    if record.promotion:
        reason = record.promotion["reason"].split("; ")[0]
        parts.append(f"{record.promotion['action']}: {reason}")
    progress.info(" | ".join(parts))


@flow(name="lifecycle", flow_run_name="lifecycle {settings.start_month}..{until}", validate_parameters=False)
def lifecycle_flow(settings: Settings, until: str, simulated: bool = True) -> list[dict]:
    """Live through every month up to `until`; months already done are read back, not redone."""
    if simulated:
        simulate_landing(settings)
    history: list[MonthRecord] = []
    for month in month_range(settings.start_month, until):
        done = load_month(settings, month)
        if done is not None:
            history.append(done)
            continue
        history.append(run_month(settings, month, history))
    return [asdict(r) for r in history]
