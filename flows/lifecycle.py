"""Lifecycle flow (`orchard demo`): month by month through ingest, validate, features, monitor, (re)train."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import wait as wait_all
from dataclasses import asdict, dataclass

from prefect import flow, task
from prefect.cache_policies import NONE
from prefect.futures import wait

from flows.automations import breach_metrics, emit_breach
from flows.features import update_features
from flows.federated import joint_model_month
from flows.ingest import ingest_month
from flows.monitor import campaign_tiers, monitor_model, vintage_expected_loss
from flows.train import promotion_decision, train_model
from flows.validate import MonthQuarantined, validate_month
from orchard.lake import silver_months
from orchard.lifecycle.datasets import join_month_cases
from orchard.lifecycle.ledger import ModelMonth, MonthRecord, load_month, record_month
from orchard.lifecycle.lender import ChampionLender
from orchard.lifecycle.monitoring import MonitorOutcome, kind_series, publish_dashboard
from orchard.lifecycle.promotion import PromotionOutcome
from orchard.lifecycle.retraining import monitored_models
from orchard.lifecycle.tools import Tools
from orchard.lifecycle.training import TrainOutcome
from orchard.lifecycle.warmup import LANE_LIBRARIES, import_libraries
from orchard.model_specs import ModelSpec, model_specs, primary_model
from orchard.months import month_range
from orchard.settings import Settings
from orchard.simulate.lender import LegacyLender
from orchard.simulate.run import SimulationRun

progress = logging.getLogger("orchard.progress")


@task(name="simulate", task_run_name="simulate {month}", cache_policy=NONE)
def simulate_month(simulation: SimulationRun, month: str) -> int:
    """Write the simulator's landing files of a month, its applications decided by the simulated lender."""
    simulation.write_through(month)
    return sum(rows.get(month, 0) for rows in simulation.rows.values())


def _timed(record: MonthRecord, stage: str, start: float) -> None:
    record.stage_seconds[stage] = round(time.perf_counter() - start, 4)


@dataclass(frozen=True)
class ModelStep:
    """One model's month: its monitoring outcome and, if it was (re)trained, the version and the decision."""

    outcome: MonitorOutcome | None
    trained: TrainOutcome | None = None
    promotion: PromotionOutcome | None = None
    skipped: str | None = None


def _model_step(
    settings: Settings, spec: ModelSpec, month: str, record: MonthRecord, tools: Tools
) -> ModelStep:
    """Monitor a model's champion, then train and gate a version when the retraining policy says so.

    The policy reads the recorded history before the month (the champion in force when it began, the last
    training), so a month redone after an interruption decides exactly as the first attempt did.
    """
    primary = spec.name == primary_model(settings.portfolio_def)
    if month not in silver_months(settings, spec.source):
        return ModelStep(
            None, skipped=f"no validated {spec.source} batch of {month}: nothing to score or learn"
        )
    t = time.perf_counter()
    step = monitor_model(settings, spec.name, month, always_report=primary, tools=tools)
    outcome, decision = step.outcome, step.decision
    if outcome is not None and decision.retrain:
        # the same event a deployed monitor emits; in production the automation runs the retraining deployment,
        # here (embedded) the policy acts in-flow below
        emit_breach(spec.name, month, outcome.version, outcome.reasons, breach_metrics(outcome))
    _timed(record, f"monitor {spec.name}", t)
    if not decision.train:
        return ModelStep(outcome)
    t = time.perf_counter()
    trained = train_model(settings, spec.name, month, tools, decision.action)
    _timed(record, f"train {spec.name}", t)
    t = time.perf_counter()
    promotion = promotion_decision(settings, trained, month, decision.approval, tools)
    _timed(record, f"promote {spec.name}", t)
    return ModelStep(outcome, trained, promotion)


def _model_month(
    settings: Settings, spec: ModelSpec, step: ModelStep, month: str, record: MonthRecord, tools: Tools
) -> ModelMonth:
    """Return a model's month record (monitoring, training, promotion, and what its kind adds); a monitored
    model's dashboard snapshot is left to the run's lane (its last step: nothing in the month reads it)."""
    outcome = step.outcome
    top = sorted(outcome.feature_psi.items(), key=lambda kv: -kv[1])[:5] if outcome else []
    entry = ModelMonth(
        champion=None if outcome is None else outcome.version,
        score_psi=None if outcome is None else outcome.score_psi,
        top_feature_psi=dict(top),
        breach=bool(outcome and outcome.breach),
        reasons=[step.skipped] if step.skipped else [] if outcome is None else list(outcome.reasons),
        trained=None if step.trained is None else asdict(step.trained),
        promotion=None if step.promotion is None else asdict(step.promotion),
    )
    if step.skipped:
        return entry
    t = time.perf_counter()
    if spec.kind == "tiers":
        entry.tiers = campaign_tiers(settings, spec.name, month, tools)
        _timed(record, f"tiers {spec.name}", t)
    if spec.kind == "expected_loss":
        entry.expected_loss = vintage_expected_loss(settings, spec.name, month, tools)
        _timed(record, f"expected loss {spec.name}", t)
    if outcome is not None:
        extra = {s.group: values for s in kind_series(spec) if (values := getattr(entry, s.group))}
        tools.behind(f"dashboard {spec.name}", publish_dashboard, settings, spec, month, outcome, extra)
    return entry


def run_month(settings: Settings, month: str, tools: Tools) -> Callable[[], MonthRecord]:
    """Run one month through every stage; each step is idempotent. Return the month's finish: the call that
    waits for what the month left in the lane, then writes its record (last) and returns it.

    `tools` (the Feast store, joins, loaded models, the lane) is the run's. Work that nothing later in the run
    reads runs in the run's lane (a second process, Tools.lane) beside the other steps, this month's and the
    next's: the joint model's month (it reads only the validated batches up to the month), each model's dashboard
    snapshot and drift report (its last steps). Their stage times are their own, and overlap.
    """
    record = MonthRecord(month=month)

    t = time.perf_counter()
    record.ingested = [r.batch_id for r in ingest_month(settings, month)]
    _timed(record, "ingest", t)

    t = time.perf_counter()
    state = validate_month(settings, month, tools, return_state=True)
    if state.is_failed():
        error = state.result(raise_on_failure=False)
        if not isinstance(error, MonthQuarantined):
            raise error if isinstance(error, BaseException) else RuntimeError(str(error))
        record.quarantined = {v.batch_id: list(v.broken) for v in error.violations}
        passed = error.passed
    else:
        passed = state.result()
    record.warned = {o.batch_id: list(o.warnings) for o in passed if o.warnings}
    _timed(record, "validate", t)

    joint = settings.portfolio_def.joint
    joint_run = None if joint is None else joint_model_month.submit(settings, month, tools.lane())
    try:
        t = time.perf_counter()
        record.feature_rows = int(update_features(settings, month, tools)["month_rows"])
        _timed(record, "features", t)
        t = time.perf_counter()
        join_month_cases(settings, monitored_models(settings, month), month, tools)
        _timed(record, "join", t)

        for spec in model_specs(settings.portfolio_def).values():
            step = _model_step(settings, spec, month, record, tools)
            record.models[spec.name] = asdict(_model_month(settings, spec, step, month, record, tools))
    except BaseException:  # never leave the month's work running in the lane behind a failed stage
        if joint_run is not None:
            wait([joint_run])
        raise  # (the tools wait for the reports and dashboards as they close)
    behind = tools.hand_over()  # the drift reports and dashboard snapshots

    def finish() -> MonthRecord:
        wait_all(behind.values())
        for stage, report in behind.items():
            _, record.stage_seconds[stage] = report.result()
        if joint is not None and joint_run is not None:
            joint_entry, record.stage_seconds[f"joint {joint.model}"] = joint_run.result()
            if joint_entry is not None:
                record.models[joint.model] = asdict(joint_entry)
        record_month(settings, record)
        _report(record)
        return record

    return finish


def _report(record: MonthRecord) -> None:
    parts = [record.month, f"batches {len(record.ingested)}"]
    # one line per month: each broken or warning expectation named once (its details are in the record)
    for batch, broken in record.quarantined.items():
        parts.append(f"QUARANTINED {batch}: " + "; ".join(dict.fromkeys(b.split(",")[0] for b in broken)))
    for batch, warnings in record.warned.items():
        parts.append(f"warned {batch}: " + "; ".join(dict.fromkeys(w.split(":")[0] for w in warnings)))
    for name in record.models:
        entry = record.model(name)
        if entry.score_psi is not None:
            parts.append(
                f"{name} v{entry.champion} PSI {entry.score_psi:.3f}" + (" BREACH" if entry.breach else "")
            )
        if entry.trained and entry.promotion:
            metrics = entry.trained["metrics"]
            made = (
                f"recalibrated, held-out early bad rate {metrics['holdout_early_bad_rate']:.3f} "
                f"expected {metrics['holdout_challenger_expected_early_bad_rate']:.3f}"
                if entry.trained.get("method") == "recalibration"
                else f"oot AUC {metrics['oot_auc']:.3f}"
            )
            parts.append(f"{name} v{entry.trained['version']} ({made}) {entry.promotion['action']}")
        if entry.tiers:
            parts.append("tiers " + " ".join(f"{t}:{n}" for t, n in entry.tiers.items()))
    progress.info(" | ".join(parts))


def _after(before: Future[MonthRecord] | None, finish: Callable[[], MonthRecord]) -> MonthRecord:
    """Finish a month once the month before is recorded; a month before that failed fails it too (unrecorded)."""
    if before is not None:
        before.result()
    return finish()


def _read_back(record: MonthRecord) -> Callable[[], MonthRecord]:
    """Return the finish of a month recorded before: its record as read."""
    return lambda: record


@flow(name="lifecycle", flow_run_name="lifecycle {settings.start_month}..{until}", validate_parameters=False)
def lifecycle_flow(settings: Settings, until: str) -> list[dict]:
    """Live through every month up to `until`; months already done are read back, not redone.

    A simulated portfolio (the demo) has each month's landing files written by the simulator just before the
    month runs, so the simulated lender decides its applications with the champion of the month before
    (orchard.lifecycle.lender); months already done are simulated again with the decisions they logged.
    """
    # the tools are opened once for the run and closed at its end; the recorder finishes each month in order (its
    # lane work, then its record) while the next month runs, so a month is recorded only after every month before
    with (
        Tools(lane_process=settings.lane_process) as tools,
        ThreadPoolExecutor(1, "month-records") as recorder,
    ):
        if settings.lane_process:  # the lane starts now, importing what its first tasks need meanwhile
            tools.lane().submit(import_libraries, LANE_LIBRARIES)
        simulation = None
        if settings.portfolio_def.simulated:
            closed = settings.simulation.lender == "champion"
            simulation = SimulationRun(
                settings, ChampionLender(settings, tools) if closed else LegacyLender()
            )
        records: list[Future[MonthRecord]] = []
        for month in month_range(settings.start_month, until):
            if failed := next((f for f in records if f.done() and f.exception() is not None), None):
                failed.result()  # a month before failed while it was finished: stop here
            if simulation is not None:
                simulate_month(simulation, month)
            recorded = load_month(settings, month)
            finish = run_month(settings, month, tools) if recorded is None else _read_back(recorded)
            records.append(recorder.submit(_after, records[-1] if records else None, finish))
        return [asdict(f.result()) for f in records]
