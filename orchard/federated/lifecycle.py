"""The joint model in the lifecycle: first fit once labels allow, monitored monthly, retrained through the gates.

Every month of a portfolio with `joint` (simulated: the simulator plays the partner platform, whose host process
runs on its own table and home):
1. each party's table as of the month (orchard.federated.data: the lender's booked applications, labelled once
   mature; the platform's monthly snapshots);
2. with a champion, a scoring session for the month's booked applications: the host matches only its rows of the
   month, returns their partial scores and its CSI of its own features over them (noised bin counts, computed at
   the host, nothing per row); the guest computes the score PSI and its own features' CSI against the champion's
   frozen bins, and the portfolio's monitoring policy decides the breach;
3. a first fit once enough vintages are labelled, or a retrain after a breach past the cool-down: a joint job.
   A retrain leaves the champion's host part active; the host scores the out-of-time rows with both parts, the
   gate (model_registry.gates) compares the two models on those rows, the policy promotes or rejects, and the
   host is told which part to keep (`part_decision`).
"""

from __future__ import annotations

import atexit
import json
import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from model_registry.gates import GateInputs, challenger_gate, gate_dict, log_gate_result
from model_registry.governance import request_promotion
from model_registry.model_card import build_model_card, log_model_card
from model_registry.registry import (
    champion_version,
    existing_version,
    load_model,
    record_rejection,
    train_key_of,
    trained_months,
)
from monitoring.policy import Drift, breach_reasons
from orchard.atomic import write_parquet
from orchard.credit.metrics import evaluate
from orchard.credit.psi import SCORE_COLUMN, ReferenceProfile, psi
from orchard.errors import OrchardError
from orchard.federated.channel import Message, PeerClient, load_key
from orchard.federated.data import VerticalSplit, simulator_guest_spec, write_vertical_split
from orchard.federated.guest import HOST_SCORE, joint_score_frame, scoring_session
from orchard.federated.job import (
    PartyHomes,
    job_spec,
    prepare_parties,
    start_host,
    stop_host,
    write_job,
)
from orchard.federated.paillier_lr import MIN_BATCH_ROWS, LRConfig
from orchard.federated.party import party_state_dir, run_guest
from orchard.lifecycle.ledger import ModelMonth
from orchard.lifecycle.monitoring import publish_month, report_vintages, unreported_scores
from orchard.lifecycle.promotion import gate_policy
from orchard.lifecycle.references import profile_path
from orchard.months import add_months, months_between
from orchard.portfolio.spec import TRAIN_LOOKBACK_MONTHS, JointDef, PolicyDef
from orchard.ports import free_port
from orchard.serving.batch import scores_path
from orchard.settings import Settings


@dataclass(frozen=True)
class Link:
    """The guest's way to the running host: the parties' homes and the host's port."""

    homes: PartyHomes
    port: int

    def client(self, session: str) -> PeerClient:
        """Return a channel client for one session."""
        return PeerClient(load_key(self.homes.key_file), "guest", "127.0.0.1", self.port, session=session)


def job_id_of(month: str) -> str:
    """Return the id of the joint job trained at a month (its train key is `federated-<id>`)."""
    return f"joint@{month}"


def joint_month(settings: Settings, month: str) -> ModelMonth | None:
    """Monitor the joint model's champion on the month, then fit or retrain it if the policy says so."""
    joint = settings.portfolio_def.joint
    if joint is None:
        return None
    policy = settings.portfolio_def.policy
    champion = champion_version(settings, joint.model)
    entry = ModelMonth(champion=champion)
    # a month's monitoring needs the platform's snapshots of the month only (and no digest); a job those of its
    # vintages
    split = _split(settings, month, [month], digest=False)
    guest = pd.read_parquet(split.guest_path)
    why = _why_train(settings, joint, policy, champion, month, guest, False)
    if champion is None and why is None:
        entry.reasons.append("no champion yet and too few labelled vintages for a first fit")
        return entry
    values: dict[str, float] = {}
    if champion is not None:
        link = _host(settings, joint, split)
        values = _monitor(settings, joint, policy, champion, month, guest, link, entry)
        why = _why_train(settings, joint, policy, champion, month, guest, entry.breach)
    if why is not None:
        entry.reasons.append(why)
        # the job's vintages, and the month itself for the new version's score stability on its applications
        split = _split(settings, month, [*_job_vintages(joint, guest), month])
        link = _host(settings, joint, split)
        _train_and_gate(settings, joint, policy, champion, month, split, link, guest, entry)
    if values:  # after the month's decision, so that the dashboard counts its alias events
        _publish(settings, joint, policy, month, guest, values)
    return entry


def _split(
    settings: Settings, month: str, host_months: list[str] | None, *, digest: bool = True
) -> VerticalSplit:
    """Write each party's table as of the month from the lake's silver batches (the host's of host_months).

    With the joint model's `train_vintages`, the lender's table holds the applications of that many months and
    a year more (TRAIN_LOOKBACK_MONTHS: the labels of the job's vintages have matured within it) up to the month, not
    of the whole history: what a month's monitoring, its matured vintages and a job read.
    """
    joint = settings.portfolio_def.joint
    window = None if joint is None else joint.train_vintages
    return write_vertical_split(
        settings,
        settings.federated_dir / "split",
        as_of_month=month,
        require_labels=False,
        validated=True,
        host_months=host_months,
        guest_from=None if window is None else add_months(month, 1 - window - TRAIN_LOOKBACK_MONTHS),
        digest=digest,
    )


@dataclass(frozen=True)
class _KeptHost:
    """A platform host process this process started for a host home, and what it was started with."""

    started_with: tuple[str, ...]
    proc: subprocess.Popen[bytes]
    port: int


_kept: dict[Path, _KeptHost] = {}
"""The platform's host process of each host home, kept for the run (see _host)."""


def _host(settings: Settings, joint: JointDef, split: VerticalSplit) -> Link:
    """Return the guest's link to the platform's host process serving the split's host table.

    One process serves the run, month after month: each month's split replaces the table file it was started
    on, and the host reads the file again before its next session opens (HostParty._refresh), instead of a
    process start per month (its imports and health check, about 1.5 s). It is stopped when this process
    exits, and the kernel kills it if this process (or the thread that started it) ends first.
    """
    homes = prepare_parties(settings, split)
    # the simulated platform's CSI noise is keyed by the simulation's seed: a rerun answers the same
    policy = {"noise_seed": settings.seed, **joint.host_policy}
    started_with = (str(homes.host_data.resolve()), str(homes.host_spec), json.dumps(policy, sort_keys=True))
    kept = _kept.get(homes.host_home)
    if kept is not None and kept.started_with == started_with and kept.proc.poll() is None:
        return Link(homes, kept.port)
    if kept is not None:
        stop_host(kept.proc)
    port = free_port()
    proc = start_host(settings, homes, port, policy=policy, die_with_parent=True)
    if not _kept:
        atexit.register(_stop_kept)
    _kept[homes.host_home] = _KeptHost(started_with, proc, port)
    return Link(homes, port)


def _stop_kept() -> None:
    """Stop the host processes this process kept."""
    while _kept:
        stop_host(_kept.popitem()[1].proc)


@dataclass(frozen=True)
class ScoredMonth:
    """A version's scores of a month's rows through one scoring session, and what the session answered."""

    rows: pd.DataFrame  # the matched rows (guest features)
    scored: pd.DataFrame  # key, PD, score points, tier of each matched row
    reply: Message  # the host's answer (CSI fields in a monitoring session)
    reference: dict[str, Any]  # the version's frozen bins (score and guest features)


def _score_month(
    settings: Settings,
    joint: JointDef,
    version: int,
    month: str,
    guest: pd.DataFrame,
    link: Link,
    purpose: str,
    monitor: bool,
) -> ScoredMonth | str:
    """Score the month's booked applications with a version through a session scoped to the month.

    Returns why not (text) when the month has fewer than `min_rows` rows or matched rows.
    """
    spec = simulator_guest_spec()
    rows = guest[guest[spec.vintage_column] == month].reset_index(drop=True)
    if len(rows) < joint.min_rows:
        return f"{len(rows)} booked applications in {month}, fewer than {joint.min_rows}"
    model = load_model(settings, joint.model, version)
    client = link.client(f"{'monitor' if monitor else 'gate'}-{month}-{time.time_ns()}")
    try:
        u, reply = scoring_session(
            client, model.host_part_id, rows[spec.id_column].tolist(), purpose, period=month, monitor=monitor
        )
    finally:
        client.close()
    matched = np.isfinite(u)
    if matched.sum() < joint.min_rows:
        return f"{int(matched.sum())} rows of {month} matched, fewer than {joint.min_rows}"
    rows = rows[matched].reset_index(drop=True)
    key = train_key_of(settings, joint.model, version, {})
    return ScoredMonth(
        rows=rows,
        scored=joint_score_frame(model, rows, u[matched]),
        reply=reply,
        reference=json.loads(profile_path(settings, joint.model, key).read_text()),
    )


def _monitor(
    settings: Settings,
    joint: JointDef,
    policy: PolicyDef,
    version: int,
    month: str,
    guest: pd.DataFrame,
    link: Link,
    entry: ModelMonth,
) -> dict[str, float]:
    """Score the month's rows through a monitoring session, keep the champion's scores, PSI and CSI at each
    party, the breach in `entry`; return the score PSI and every feature's CSI (empty when not monitored)."""
    purpose = f"monitoring {joint.model} v{version} at {month}"
    month_scores = _score_month(settings, joint, version, month, guest, link, purpose, monitor=True)
    if isinstance(month_scores, str):
        entry.reasons.append(f"not monitored: {month_scores}")
        return {}
    # the champion's PDs of the month's vintage: its realised performance once the labels mature
    key = simulator_guest_spec().id_column
    write_parquet(month_scores.scored[[key, "pd"]], scores_path(settings, joint.model, month))
    reference, reply = month_scores.reference, month_scores.reply
    score_psi = psi(ReferenceProfile.from_dict(reference["score"]), month_scores.scored[[SCORE_COLUMN]])
    feature_psi = psi(ReferenceProfile.from_dict(reference["features"]), month_scores.rows)
    host_csi = {f"host:{k}": float(v) for k, v in (reply.fields.get("csi") or {}).items()}
    feature_psi.update(host_csi)
    breach, reasons = breach_reasons(Drift(score_psi[SCORE_COLUMN], feature_psi), policy.monitoring)
    if host_csi:
        reasons.append(
            f"host CSI of {len(host_csi)} features over {reply.fields.get('csi_rows')} rows, computed at the host "
            f"(largest {max(host_csi.values()):.3f})"
        )
    else:
        reasons.append(f"the host gave no CSI: {reply.fields.get('csi_refused', 'no reason given')}")
    entry.score_psi = float(score_psi[SCORE_COLUMN])
    entry.top_feature_psi = dict(sorted(feature_psi.items(), key=lambda kv: -kv[1])[:5])
    entry.breach = breach
    entry.reasons.extend(reasons)
    return {SCORE_COLUMN: float(score_psi[SCORE_COLUMN]), **feature_psi}


def _publish(
    settings: Settings,
    joint: JointDef,
    policy: PolicyDef,
    month: str,
    guest: pd.DataFrame,
    values: dict[str, float],
) -> None:
    """Add the month to the joint model's Evidently dashboard: the score PSI, both parties' CSI (the host's as
    it answered: noised, opaque labels), the drift share, the vintages matured since the last month (realised AUC
    of the champion's stored PDs against the lender's labels) beside their early estimate, the alias events."""
    spec = simulator_guest_spec()
    features = {k: v for k, v in values.items() if k != SCORE_COLUMN}
    drift_share = Drift(values[SCORE_COLUMN], features).drift_share(policy.monitoring.feature_psi_breach)
    labels = pd.DataFrame(
        {
            "application_id": guest[spec.id_column].to_numpy(),
            "vintage": guest[spec.vintage_column].astype(str).to_numpy(),
            "mature": guest[spec.label_column].notna().to_numpy(),
            "bad": guest[spec.label_column].to_numpy(),
        }
    )
    scores = unreported_scores(settings, joint.model, spec.id_column, month)
    matured = report_vintages(settings, joint.model, scores, labels, month)
    publish_month(settings, joint.model, month, values, drift_share, matured)


def _job_vintages(joint: JointDef, guest: pd.DataFrame) -> list[str]:
    """Return the labelled vintages a job fits and tests on: the latest `train_vintages` (all when unset)."""
    spec = simulator_guest_spec()
    months = sorted(guest.loc[guest[spec.label_column].notna(), spec.vintage_column].astype(str).unique())
    return months if joint.train_vintages is None else months[-joint.train_vintages :]


def _why_train(
    settings: Settings,
    joint: JointDef,
    policy: PolicyDef,
    champion: int | None,
    month: str,
    guest: pd.DataFrame,
    breach: bool,
) -> str | None:
    """Return why a joint job runs this month (first fit, or a retrain after a breach), or None."""
    spec = simulator_guest_spec()
    months = _job_vintages(joint, guest)
    vintages = guest.loc[guest[spec.label_column].notna(), spec.vintage_column]
    vintages = vintages[vintages.isin(months)]
    needed = max(policy.min_mature_vintages, policy.oot_months + 1)
    train_rows = int((~vintages.isin(months[-policy.oot_months :])).sum())
    if len(months) < needed or train_rows < MIN_BATCH_ROWS:
        return None  # a job needs its vintages and at least one full batch of training rows
    if champion is None:
        return f"first fit: {len(months)} labelled vintages (>= {needed}), {train_rows} training rows"
    if not breach:
        return None
    last = max(trained_months(settings, joint.model).values(), default=None)
    waited = months_between(last, month) if last else None
    cooldown = policy.monitoring.retrain_cooldown_months
    if waited is not None and waited < cooldown:
        return None
    return f"retrain after the breach ({waited} months since the last fit, cool-down {cooldown})"


def _train_and_gate(
    settings: Settings,
    joint: JointDef,
    policy: PolicyDef,
    champion: int | None,
    month: str,
    split: VerticalSplit,
    link: Link,
    guest: pd.DataFrame,
    entry: ModelMonth,
) -> None:
    """Run the month's joint job, gate the version against the champion, promote or reject, tell the host."""
    job_id = job_id_of(month)
    key = f"federated-{job_id}"
    result_file = party_state_dir(settings, "guest") / "jobs" / f"{job_id}.result.json"
    if existing_version(settings, joint.model, key) is None or not result_file.exists():
        config = LRConfig(epochs=joint.epochs, seed=settings.seed)
        job = job_spec(
            job_id,
            split,
            config,
            joint.model,
            policy.oot_months,
            compare=champion is not None,
            activate=champion is None,
        )
        # the lender is the guest: its side of the job runs here, in the lifecycle's process (the platform's
        # host runs in its own); no second process to start, MLflow already loaded
        job_file, result_file = write_job(settings, job)
        homes = link.homes
        record = run_guest(settings, link.port, homes.guest_data, homes.key_file, job_file, result_file)
    else:  # the month is being redone: the job ran and registered before the interruption
        record = json.loads(result_file.read_text())
    version = int(record["version"])
    profile = profile_path(settings, joint.model, key)
    profile.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(record["reference_file"], profile)  # the frozen bins the monthly monitor reads
    window = pd.read_parquet(record["window_file"])
    recent = _recent_score_psi(settings, joint, version, month, guest, link)
    gate = _gate(settings, joint, policy, champion, version, guest, window, recent, entry.score_psi)
    summary = "; ".join(gate["reasons"])
    approval = request_promotion(
        settings,
        joint.model,
        version,
        approver=settings.governance.policy_approver,
        mode="policy",
        gate=gate,
        effective_month=month,
        reason=f"policy approval at {month}: {summary}",
    )
    promoted = approval.outcome == "approved"
    if not promoted:
        record_rejection(
            settings,
            joint.model,
            version,
            reason=approval.refusal or summary,
            approver=settings.governance.policy_approver,
            gate=gate,
            effective_month=month,
        )
    if champion is not None:
        _tell_host(link, str(record["host_part_id"]), promoted, month)
    _log_card(settings, joint, version, "champion" if promoted else "rejected", window, recent, split)
    metrics = record["metrics"]
    entry.trained = {
        "version": version,
        "method": "federated",
        "job_id": job_id,
        "metrics": {
            "oot_auc": float(metrics["auc_test"]),
            **(
                {"champion_oot_auc": float(champion_auc)}
                if (champion_auc := (gate.get("figures") or {}).get("champion_auc")) is not None
                else {}
            ),
            "n_train": float(metrics["n_train"]),
            "n_test": float(metrics["n_test"]),
        },
    }
    entry.promotion = {
        "model": joint.model,
        "version": version,
        "action": "promote" if promoted else "reject",
        "reason": summary if promoted else approval.refusal or summary,
        "champion_before": champion,
    }


def _gate(
    settings: Settings,
    joint: JointDef,
    policy: PolicyDef,
    champion: int | None,
    version: int,
    guest: pd.DataFrame,
    window: pd.DataFrame,
    score_psi: float | None,
    champion_score_psi: float | None,
) -> dict[str, Any]:
    """Run the challenger gate on the job's out-of-time rows (both models scored on the same rows)."""
    spec = simulator_guest_spec()
    champion_pd = None
    if champion is not None:
        if "champion_u" not in window.columns:
            raise OrchardError(
                f"the joint job of {joint.model} v{version} did not score its window with the champion"
            )
        window = window[np.isfinite(window["champion_u"])].reset_index(drop=True)
        rows = guest.set_index(spec.id_column).loc[window[spec.id_column]].reset_index()
        model = load_model(settings, joint.model, champion)
        champion_pd = model.predict_pd(rows.assign(**{HOST_SCORE: window["champion_u"].to_numpy()}))
    vintages = sorted(window[spec.vintage_column].unique())
    label = f"{vintages[0]}..{vintages[-1]}" if vintages else "empty"
    inputs = GateInputs(
        window=label,
        y=window["bad"].to_numpy(),
        challenger_pd=window["pd"].to_numpy(),
        champion_pd=champion_pd,
        champion_version=champion,
        challenger_version=version,
        score_psi=score_psi,
        champion_score_psi=champion_score_psi,
    )
    gate = challenger_gate(inputs, gate_policy(policy))
    log_gate_result(settings, joint.model, version, gate, label)
    return gate_dict(gate)


def _recent_score_psi(
    settings: Settings, joint: JointDef, version: int, month: str, guest: pd.DataFrame, link: Link
) -> float | None:
    """Return the new version's score PSI: its development bins (out-of-time rows) vs the month's applications.

    The month's rows are scored through a scoring session with the new part (active after a first fit, the
    host's candidate after a retrain); None when the month has too few matched rows (the gate then fails its
    stability check: unproven).
    """
    purpose = f"gate of {joint.model} v{version} at {month}: score stability"
    month_scores = _score_month(settings, joint, version, month, guest, link, purpose, monitor=False)
    if isinstance(month_scores, str):
        return None
    profile = ReferenceProfile.from_dict(month_scores.reference["score"])
    return float(psi(profile, month_scores.scored[[SCORE_COLUMN]])[SCORE_COLUMN])


def _log_card(
    settings: Settings,
    joint: JointDef,
    version: int,
    status: str,
    window: pd.DataFrame,
    score_psi: float | None,
    split: VerticalSplit,
) -> None:
    """Log the joint version's model card (Markdown + HTML) with the status its gate decision gave it."""
    spec = simulator_guest_spec()
    vintages = sorted(window[spec.vintage_column].unique())
    card = build_model_card(
        name=joint.model,
        version=version,
        model=load_model(settings, joint.model, version),
        purpose="pre-credit risk of the partner platform's users, from the lender's and the platform's features "
        "without pooling them (vertical federated LR)",
        population="booked applications matched with the platform's snapshot of their month",
        label="the decision PD model's label (bad), from the lender's loans",
        maturity="the label's window after booking",
        data_window=f"labelled vintages up to {vintages[0] if vintages else '-'}, out-of-time {', '.join(vintages)}",
        lineage={"batch_ids": split.batch_ids, "guest_sha256": split.guest_sha256},
        performance={"out-of-time": evaluate(window["bad"].to_numpy(), window["pd"].to_numpy())},
        stability={} if score_psi is None else {"score: out-of-time vs decision month": score_psi},
        limitations=[
            "the host's weights stay at the platform: the card lists host_partial_score, not its features",
            "simulated data: the platform is the simulator's",
        ],
        approval_status=status,
        approver=settings.governance.policy_approver,
    )
    log_model_card(settings, joint.model, version, card)


def _tell_host(link: Link, part_id: str, promote: bool, month: str) -> None:
    """Tell the host to make the new part active (promoted) or retire it (rejected)."""
    client = link.client(f"decision-{month}-{time.time_ns()}")
    try:
        client.call(
            Message("part_decision", fields={"part_id": part_id, "promote": promote}),
            "the host part's decision",
        )
    finally:
        client.close()
