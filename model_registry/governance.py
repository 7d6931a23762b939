"""Governance of the champion: approved promotions, overrides, rollbacks, and the production history.

Every request to move `champion` is recorded in the append-only `approvals` table, granted or refused:
- a person's promotion needs the version's recorded gate result to have passed, against the champion in force
  (a gate compared with an older champion is stale) — or an override with a reason, recorded as an override;
- a policy's (automatic) promotion also needs the gate's "beats the champion by the margin" check, and a policy
  never overrides;
- a rollback restores the champion in force before the current one, walking back through earlier rollbacks.
The alias move, its `alias_events` row and the approval row happen under the model's database lock
(`records.locked`), so concurrent requests are serialised: each sees the champion left by the one before it.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from typing import Any, Literal

from mlflow import MlflowClient
from mlflow.exceptions import MlflowException
from sqlalchemy.engine import Connection

from model_registry import history as records
from model_registry.gates import auto_promotable
from model_registry.history import CHAMPION_ALIAS, AliasEvent, Approval, recorded_champion
from model_registry.identity import Identity, current_identity, four_eyes_on, may_override
from model_registry.registry import TRAINED_BY_TAG, _alias_version, _point_alias, get_version
from model_registry.tracking import mlflow_client, read_run_json
from orchard.errors import OrchardError
from orchard.months import parse_month
from orchard.settings import Settings

log = logging.getLogger(__name__)

GATE_ARTIFACT = "gate_result.json"
GATE_PASSED_TAG = "orchard.gate.passed"


# --- the recorded gate of a version -------------------------------------------------------------------------


def recorded_gate(settings: Settings, model: str, version: int) -> dict[str, Any] | None:
    """Return the gate result logged in a version's run (gate_result.json), or None if there is none.

    Only the artifact counts: the version's gate tags are a summary anyone with edit rights can write, so a
    `orchard.gate.passed` tag without its gate_result.json is no gate at all.
    """
    client = mlflow_client(settings)
    found = get_version(client, model, version)
    if not found.run_id:
        return None
    try:
        return read_run_json(client, found.run_id, GATE_ARTIFACT)
    except (MlflowException, OSError, ValueError) as exc:
        if GATE_PASSED_TAG in found.tags:
            log.warning("%s v%s carries gate tags but no readable %s: %s", model, version, GATE_ARTIFACT, exc)
        return None


def gate_refusal(gate: dict[str, Any] | None, champion: int | None, mode: str) -> str | None:
    """Return why a gate does not allow promoting over the given champion (None: it allows it); pure."""
    if gate is None:
        return "it has no recorded gate result"
    if not gate.get("passed"):
        reasons = gate.get("reasons") or ["(no reason recorded)"]
        return f"its gate failed: {reasons[0]}"
    if not gate.get("checks"):
        return "its gate result ran no checks, so it proves nothing"
    figures = gate.get("figures") or {}
    if "champion_version" in figures and figures["champion_version"] != champion:
        compared = "no champion" if figures["champion_version"] is None else f"v{figures['champion_version']}"
        now = "no champion" if champion is None else f"v{champion}"
        return f"its gate compared it with {compared} but the champion is now {now}: re-run the gate"
    if mode == "policy" and not auto_promotable(gate):
        if figures.get("improvement_by") == "calibration":  # a recalibration: its gain is calibration
            return "it is not better calibrated than the champion, so a person must approve it"
        return "it does not beat the champion by the margin, so a person must approve it"
    return None


# --- pure helpers over the history --------------------------------------------------------------------------


def champion_lineage(recorded: list[AliasEvent]) -> list[int]:
    """Return the chain of champions a rollback walks back through, oldest first; pure.

    A promotion pushes its version; a rollback to a version in the chain cuts the chain back to it, so a
    second rollback restores the champion before that one, never the version just rolled back.
    """
    chain: list[int] = []
    for event in recorded:
        if event.alias != CHAMPION_ALIAS:
            continue
        if event.action == "rollback" and event.version in chain:
            del chain[len(chain) - chain[::-1].index(event.version) :]
        elif not chain or chain[-1] != event.version:
            chain.append(event.version)
    return chain


def _check_text(kind: str, value: str | None) -> str:
    if not isinstance(value, str) or not value.strip():
        raise OrchardError(f"a {kind} is required (non-empty text)")
    return value.strip()


def _effective_month(
    settings: Settings, recorded: list[AliasEvent], effective_month: str | None, default_month: str | None
) -> str:
    """Return the business month a decision takes effect in; never earlier than the model's last decision.

    Without a month, the later of the model's last decision and `default_month` (e.g. the last month the
    lifecycle finished), else the settings' first month.
    """
    last = max((e.effective_month for e in recorded), default=None)
    if effective_month is None:
        candidates = [m for m in (last, default_month) if m is not None]
        return max(candidates) if candidates else settings.start_month
    month = parse_month(effective_month)
    this_month = datetime.now(UTC).strftime("%Y-%m")
    if month > this_month:
        raise OrchardError(
            f"business month {month} is in the future (this is {this_month}): a decision takes effect in a month "
            "that has begun, or it would push every later decision after it"
        )
    if last is not None and month < last:
        raise OrchardError(
            f"business month {month} is before the model's last recorded decision ({last}): "
            "the history is append-only and cannot be back-dated"
        )
    return month


# --- moving the champion ------------------------------------------------------------------------------------


def _repair_alias(client: MlflowClient, model: str, recorded: list[AliasEvent]) -> int | None:
    """Point the champion alias back at the recorded champion if it drifted; return the recorded champion.

    A crash between the alias move and the commit of its record, or a move made outside Orchard, leaves the
    alias away from the record: the record is the truth, so the alias is put back (and the repair logged).
    """
    champion = recorded_champion(recorded)
    alias = _alias_version(client, model, CHAMPION_ALIAS)
    if alias != champion:
        log.warning(
            "%s: champion alias is %s but the governance record says %s: repairing the alias from the record",
            model,
            "unset" if alias is None else f"v{alias}",
            "none" if champion is None else f"v{champion}",
        )
        if champion is None:
            client.delete_registered_model_alias(model, CHAMPION_ALIAS)
        else:
            _point_alias(client, model, CHAMPION_ALIAS, champion)
    return champion


def _record_and_move(
    conn: Connection,
    client: MlflowClient,
    *,
    common: dict[str, Any],
    previous: int | None,
    event_reason: str,
    override_reason: str | None,
) -> Approval:
    """Append the alias event and its approval, then point champion at the version, all before the commit.

    The records are written first and the alias moved last inside the same transaction: if the move fails the
    records roll back; if the process dies after the move but before the commit, the alias is ahead of the
    record, serving keeps the recorded champion and the next governance call repairs the alias.
    """
    event = records.append_event(
        conn,
        model=common["model"],
        alias=CHAMPION_ALIAS,
        version=common["version"],
        previous_version=previous,
        action=common["action"],
        reason=event_reason,
        approver=common["approver"],
        gate=common["gate"],
        effective_month=common["effective_month"],
        identity_source=common["identity_source"],
    )
    approval = records.append_approval(
        conn, **common, outcome="approved", override_reason=override_reason, refusal=None, event_id=event.id
    )
    _point_alias(client, common["model"], CHAMPION_ALIAS, common["version"])
    return approval


def _replayed(
    conn: Connection, model: str, action: str, version: int, month: str, mode: str
) -> Approval | None:
    """Return a policy request already recorded for the same decision (a rerun of the lifecycle)."""
    for approval in reversed(records.approvals_in(conn, model)):
        if (approval.action, approval.version, approval.effective_month, approval.mode) == (
            action,
            version,
            month,
            mode,
        ):
            return approval
    return None


def _acting(settings: Settings, approver: str | None, mode: str) -> tuple[str, str]:
    """Return the recorded approver and how it was established; a person must be who they claim to be."""
    identity = current_identity(settings)
    if mode == "policy":
        return settings.governance.policy_approver, f"policy run by {identity.source}:{identity.name}"
    if approver is not None and _check_text("approver", approver) != identity.name:
        raise OrchardError(
            f"approver {approver!r} is not the authenticated identity {identity.name!r} ({identity.source}): "
            "approvals are recorded under who is signed in, never a typed name"
        )
    return identity.name, identity.source


def trainers_of(client: MlflowClient, model: str, version: int) -> set[str]:
    """Return who trained a version: the MLflow run's user and the identity Orchard tagged it with."""
    found = get_version(client, model, version)
    names = {found.tags.get(TRAINED_BY_TAG, "")}
    if found.run_id:
        names.add(client.get_run(found.run_id).info.user_id or "")
    return {n for n in names if n}


def _person_refusal(
    settings: Settings, client: MlflowClient, model: str, version: int, approver: str, override: str | None
) -> str | None:
    """Return why this person may not make this request (four-eyes, override role), or None."""
    if four_eyes_on(settings) and approver in trainers_of(client, model, version):
        return f"four-eyes rule: {approver} trained {model} v{version} and cannot also approve it"
    if override is not None and not may_override(settings.governance, Identity(approver, "")):
        return f"an override needs the override role, which {approver} does not hold"
    return None


def request_promotion(
    settings: Settings,
    model: str,
    version: int,
    *,
    reason: str,
    approver: str | None = None,
    mode: Literal["person", "policy"] = "person",
    override_reason: str | None = None,
    gate: dict[str, Any] | None = None,
    effective_month: str | None = None,
    default_month: str | None = None,
) -> Approval:
    """Record a request to make a version champion and carry it out if allowed; return the approval record.

    The approver is the authenticated identity (a given approver must match it); a policy records the policy
    approver. The gate is the version's recorded gate result unless given. The outcome is 'approved' (alias
    moved), 'refused' (alias untouched, refusal says why) or 'unchanged' (already champion). A policy request
    that repeats one already recorded for the same version and business month returns that record (a rerun).
    """
    reason = _check_text("reason", reason)
    if mode not in records.MODES:
        raise OrchardError(f"unknown approval mode {mode!r}: expected one of {', '.join(records.MODES)}")
    if override_reason is not None:
        override_reason = _check_text("override reason", override_reason)
        if mode == "policy":
            raise OrchardError("a policy cannot override a gate: only a person can, with a reason")
    approver, source = _acting(settings, approver, mode)
    client = mlflow_client(settings)
    get_version(client, model, version)
    if gate is None:
        gate = recorded_gate(settings, model, version)

    with records.locked(settings, model) as conn:
        recorded = records.events_in(conn, model)
        month = _effective_month(settings, recorded, effective_month, default_month)
        if mode == "policy" and (earlier := _replayed(conn, model, "promote", version, month, mode)):
            log.info(
                "%s v%s: policy promotion in %s already recorded (%s)", model, version, month, earlier.outcome
            )
            return earlier
        current = _repair_alias(client, model, recorded)
        common: dict[str, Any] = {
            "model": model,
            "action": "promote",
            "version": version,
            "champion_before": current,
            "mode": mode,
            "approver": approver,
            "reason": reason,
            "gate": gate,
            "effective_month": month,
            "identity_source": source,
        }
        if current == version:
            return records.append_approval(
                conn,
                **common,
                outcome="unchanged",
                override_reason=None,
                refusal=f"v{version} is already the champion",
                event_id=None,
            )
        refusal = gate_refusal(gate, current, mode)
        person = None
        if mode == "person":
            person = _person_refusal(
                settings, client, model, version, approver, override_reason if refusal else None
            )
        if person is not None or (refusal is not None and override_reason is None):
            return records.append_approval(
                conn,
                **common,
                outcome="refused",
                override_reason=None,
                refusal=f"cannot promote {model} v{version}: {person or refusal}",
                event_id=None,
            )
        used_override = override_reason if refusal is not None else None
        event_reason = reason if used_override is None else f"{reason} [override: {used_override}; {refusal}]"
        return _record_and_move(
            conn,
            client,
            common=common,
            previous=current,
            event_reason=event_reason,
            override_reason=used_override,
        )


def request_rollback(
    settings: Settings,
    model: str,
    *,
    reason: str,
    approver: str | None = None,
    effective_month: str | None = None,
    default_month: str | None = None,
) -> Approval:
    """Restore the champion in force before the current one, recording the rollback; return the approval record."""
    reason = _check_text("reason", reason)
    approver, source = _acting(settings, approver, "person")
    client = mlflow_client(settings)
    with records.locked(settings, model) as conn:
        recorded = records.events_in(conn, model)
        month = _effective_month(settings, recorded, effective_month, default_month)
        chain = champion_lineage(recorded)
        if len(chain) < 2:
            raise OrchardError(
                f"{model} has no earlier champion to roll back to "
                f"({'no champion yet' if not chain else f'v{chain[-1]} is its only champion'})"
            )
        current = _repair_alias(client, model, recorded)
        target = chain[-2]
        get_version(client, model, target)
        common: dict[str, Any] = {
            "model": model,
            "action": "rollback",
            "version": target,
            "champion_before": current,
            "mode": "person",
            "approver": approver,
            "reason": reason,
            "gate": None,
            "effective_month": month,
            "identity_source": source,
        }
        return _record_and_move(
            conn, client, common=common, previous=current, event_reason=reason, override_reason=None
        )


def promote_command(
    settings: Settings,
    model: str,
    version: int,
    approver: str | None,
    reason: str,
    override_reason: str | None = None,
    effective_month: str | None = None,
    default_month: str | None = None,
) -> str:
    """Promote a version to champion as a person (`orchard promote`); raise OrchardError if refused."""
    approval = request_promotion(
        settings,
        model,
        int(version),
        approver=approver,
        reason=reason,
        mode="person",
        override_reason=override_reason,
        effective_month=effective_month,
        default_month=default_month,
    )
    if approval.outcome == "refused":
        raise OrchardError(
            f"{approval.refusal} (request #{approval.id} recorded as refused; "
            "an identity with the override role may pass --override with a reason)"
        )
    if approval.outcome == "unchanged":
        return f"{model} v{version} is already the champion; request #{approval.id} recorded, nothing moved"
    before = "no champion" if approval.champion_before is None else f"v{approval.champion_before}"
    text = (
        f"{model} champion: {before} -> v{version} (business month {approval.effective_month}), approved by "
        f"{approval.approver}: {approval.reason} [approval #{approval.id}, event #{approval.event_id}]"
    )
    if approval.override_reason:
        text += f"\nOVERRIDE recorded: {approval.override_reason}"
    elif override_reason:
        text += "\n(the gate passed: no override was needed, none recorded)"
    return text


def rollback_command(
    settings: Settings, model: str, approver: str | None, reason: str, default_month: str | None = None
) -> str:
    """Roll the champion back to the previous one (`orchard rollback`); raise OrchardError if refused."""
    approval = request_rollback(
        settings, model, approver=approver, reason=reason, default_month=default_month
    )
    if approval.outcome == "refused":
        raise OrchardError(f"{approval.refusal} (request #{approval.id} recorded as refused)")
    return (
        f"{model} champion rolled back: v{approval.champion_before} -> v{approval.version} "
        f"(business month {approval.effective_month}), by {approval.approver}: {approval.reason} "
        f"[approval #{approval.id}, event #{approval.event_id}]"
    )


# --- the production history ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class HistoryCheck:
    """Whether the recorded history agrees with the MLflow alias, and what disagrees if not."""

    ok: bool
    alias_version: int | None
    history_version: int | None
    problems: list[str] = field(default_factory=list)


def check_history(recorded: list[AliasEvent], alias_version: int | None) -> HistoryCheck:
    """Compare the champion events with the alias: last event = alias, unbroken chain, same order by month; pure."""
    champions = [e for e in recorded if e.alias == CHAMPION_ALIAS]
    problems: list[str] = []
    history_version = champions[-1].version if champions else None
    if history_version != alias_version:
        problems.append(
            f"MLflow alias champion is {'unset' if alias_version is None else f'v{alias_version}'} but the last "
            f"recorded champion event says {'none' if history_version is None else f'v{history_version}'}"
        )
    for before, after in zip([None, *champions], champions, strict=False):
        expected = None if before is None else before.version
        if after.previous_version != expected:
            problems.append(
                f"event #{after.id} moved champion from v{after.previous_version} but the history had "
                f"{'none' if expected is None else f'v{expected}'}: the alias moved outside Orchard"
            )
    if champions:
        by_month = records.event_in_force_by_month(champions, max(e.effective_month for e in champions))
        if by_month is not None and by_month.id != champions[-1].id:
            problems.append(
                f"by business month the champion ends as v{by_month.version} (event #{by_month.id}) "
                f"but by recorded order as v{champions[-1].version}: a decision was back-dated"
            )
    return HistoryCheck(not problems, alias_version, history_version, problems)


def verify_history(settings: Settings, model: str) -> HistoryCheck:
    """Check that the model's recorded champion history is consistent with its MLflow champion alias."""
    return check_history(
        records.events(settings, model), _alias_version(mlflow_client(settings), model, CHAMPION_ALIAS)
    )


Kind = Literal["now", "month", "time"]


def parse_moment(at: str | None) -> tuple[Kind, str | datetime | None]:
    """Parse --at: None (now), 'YYYY-MM' (business month), a date (its end, UTC) or an ISO datetime; pure."""
    if at is None:
        return "now", None
    text = at.strip()
    if len(text) == 7:
        return "month", parse_month(text)
    try:
        if len(text) == 10:
            day = date.fromisoformat(text)
            # A date means the state at the end of that day: every change recorded that day counts.
            return "time", datetime.combine(day + timedelta(days=1), time.min, UTC) - timedelta(
                microseconds=1
            )
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError as exc:
        raise OrchardError(
            f"invalid moment {at!r}: expected a business month YYYY-MM, a date YYYY-MM-DD or an ISO datetime"
        ) from exc
    return "time", moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


@dataclass(frozen=True)
class ChampionHistory:
    """Which version was champion at a moment, the decision that made it so, and the whole record."""

    model: str
    at: str | None
    kind: Kind
    champion: int | None
    decided_by: AliasEvent | None
    approval: Approval | None
    events: list[AliasEvent]
    approvals: list[Approval]
    check: HistoryCheck

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-ready dict of the answer."""
        return {
            "model": self.model,
            "at": self.at,
            "kind": self.kind,
            "champion": self.champion,
            "decided_by": None if self.decided_by is None else self.decided_by.to_dict(),
            "approval": None if self.approval is None else self.approval.to_dict(),
            "events": [e.to_dict() for e in self.events],
            "approvals": [a.to_dict() for a in self.approvals],
            "check": {
                "ok": self.check.ok,
                "alias_version": self.check.alias_version,
                "history_version": self.check.history_version,
                "problems": self.check.problems,
            },
        }


def history(settings: Settings, model: str, at: str | None = None) -> ChampionHistory:
    """Answer which version was champion at a moment (now, a business month, a date or datetime) and why."""
    kind, moment = parse_moment(at)
    recorded = records.events(settings, model)
    approvals = records.approvals_of(settings, model)
    champions = [e for e in recorded if e.alias == CHAMPION_ALIAS]
    if kind == "month":
        decided = records.event_in_force_by_month(champions, str(moment))
    elif kind == "time" and isinstance(moment, datetime):
        decided = records.event_in_force_at(champions, moment)
    else:
        decided = champions[-1] if champions else None
    approval = next((a for a in approvals if decided is not None and a.event_id == decided.id), None)
    check = check_history(recorded, _alias_version(mlflow_client(settings), model, CHAMPION_ALIAS))
    return ChampionHistory(
        model,
        at,
        kind,
        None if decided is None else decided.version,
        decided,
        approval,
        recorded,
        approvals,
        check,
    )


def _short(text: str, width: int) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"


def render_history(answer: ChampionHistory) -> str:
    """Render a history answer as plain text: the answer, the events, the requests, the consistency check."""
    where = {"now": "now", "month": f"at the end of business month {answer.at}", "time": f"at {answer.at}"}
    lines = [f"{answer.model}: production history of the champion"]
    if answer.decided_by is None:
        lines.append(f"Champion {where[answer.kind]}: none (no champion had been recorded by then)")
    else:
        e = answer.decided_by
        lines.append(
            f"Champion {where[answer.kind]}: v{e.version}, since business month {e.effective_month} "
            f"(recorded {e.recorded_at:%Y-%m-%d %H:%M:%S} UTC) by {e.action} of {e.approver}: {e.reason}"
        )
        if e.gate:
            gate_reasons = e.gate.get("reasons") or []
            lines.append(
                f"  gate: {'passed' if e.gate.get('passed') else 'FAILED'}"
                + (f" - {gate_reasons[0]}" if gate_reasons else "")
            )
        if answer.approval is not None and answer.approval.override_reason:
            lines.append(f"  OVERRIDE by {answer.approval.approver}: {answer.approval.override_reason}")
    lines += [
        "",
        "Alias events (append-only):",
        f"  {'#':>4}  {'recorded (UTC)':19}  {'month':7}  {'alias':10}  {'action':14}  {'ver':>4}  "
        f"{'from':>4}  {'approver':16}  reason",
    ]
    for e in answer.events:
        previous = "-" if e.previous_version is None else str(e.previous_version)
        lines.append(
            f"  {e.id:>4}  {e.recorded_at:%Y-%m-%d %H:%M:%S}  {e.effective_month:7}  {e.alias:10}  {e.action:14}  "
            f"{e.version:>4}  {previous:>4}  {_short(e.approver, 16):16}  {_short(e.reason, 100)}"
        )
    if answer.approvals:
        lines += ["", "Champion requests (approvals, append-only):"]
        for a in answer.approvals:
            extra = (
                a.refusal
                if a.outcome != "approved"
                else (f"OVERRIDE: {a.override_reason}" if a.override_reason else f"event #{a.event_id}")
            )
            lines.append(
                f"  {a.id:>4}  {a.recorded_at:%Y-%m-%d %H:%M:%S}  {a.effective_month:7}  {a.action:8}  v{a.version:<3}  "
                f"{a.outcome:9}  {a.mode:6}  {_short(a.approver, 16):16}  {_short(a.reason, 60)}  ({extra})"
            )
    lines.append("")
    if answer.check.ok:
        alias = answer.check.alias_version
        lines.append(
            f"Consistent: MLflow alias champion = {'unset' if alias is None else f'v{alias}'} "
            "= last recorded champion event"
        )
    else:
        lines += ["INCONSISTENT history:", *(f"  - {p}" for p in answer.check.problems)]
    return "\n".join(lines)


def history_command(settings: Settings, model: str, at: str | None = None) -> str:
    """Answer `orchard history MODEL [--at DATE]`: the champion at that moment, why, and the full record."""
    return render_history(history(settings, model, at))
