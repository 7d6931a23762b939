"""Adapting to a shock before its labels mature: the open breach, what the model could learn from, and the
recalibration challenger (the champion's scores re-mapped to the vintages since the breach on an early label).

The policy (monitoring/policy.py `Adaptation`) decides when; this module measures what it decides on and builds
the version. The map is orchard.credit.recalibration's: a bridge from the early label to the target label fitted
on the latest vintages where both are mature, composed with the early label's line on the vintages since the
breach. The newest of those vintages is held out: the version's gate compares its early-label calibration there
with the champion's (orchard.lifecycle.promotion).
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from model_registry.registry import get_version, load_model, register_model
from model_registry.tracking import mlflow_client, read_run_json
from monitoring.policy import Adaptation
from orchard.atomic import write_json
from orchard.credit.metrics import evaluate
from orchard.credit.recalibration import MIN_EVENTS, Recalibration, fit_recalibration, logit, recalibrated
from orchard.errors import OrchardError
from orchard.lifecycle.datasets import (
    fit_months,
    labelled,
    mature_vintages,
    model_frame,
    population_vintages,
    vintage_cases,
)
from orchard.lifecycle.tools import Tools
from orchard.lifecycle.training import TrainOutcome, frame_lineage, save_reference, train_key
from orchard.model_specs import ModelSpec
from orchard.months import month_range
from orchard.settings import Settings

log = logging.getLogger(__name__)

BRIDGE_VINTAGES = 3
"""The latest vintages with both labels mature that the early-to-target bridge is fitted on."""
INHERITED_ARTIFACTS = ("scorecard_baseline.json", "feature_iv.json")
"""What a recalibrated version's run copies from its champion's (the same features, bins and baseline)."""


def _breaches_path(settings: Settings, spec: ModelSpec):
    return settings.state_dir / "breaches" / f"{spec.name}.json"


def _recorded(settings: Settings, spec: ModelSpec) -> dict[str, bool]:
    path = _breaches_path(settings, spec)
    return json.loads(path.read_text()) if path.exists() else {}


def _breaches(months: dict[str, bool], month: str) -> list[str]:
    return [m for m in sorted(months) if months[m] and m <= month]


def record_breach(settings: Settings, spec: ModelSpec, month: str, breach: bool) -> list[str]:
    """Record whether the month breached; return every breach month recorded up to it, oldest first.

    Both profiles monitor through the same function, so the record is theirs alike; a month redone writes the
    same value again.
    """
    months = _recorded(settings, spec)
    if months.get(month) != breach:
        months[month] = breach
        write_json(dict(sorted(months.items())), _breaches_path(settings, spec))
    return _breaches(months, month)


def open_breach(
    breaches: list[str], mature: list[str], fit_needs: int, after_learnt: bool = False
) -> str | None:
    """Return the first of `breaches` that no fit can learn from yet (None: none).

    A breach is learnt once `fit_needs` vintages since it have mature labels; a later breach whose month is
    among the mature vintages is learnt by that fit too (`after_learnt`: an earlier breach, not listed, is
    learnt). Monitoring may fall below the limits for a while after a shock: its vintages stay unlearnt until
    their labels mature.
    """
    newest = max(mature, default="")
    learnt = [b for b in breaches if len(_since(mature, b)) >= fit_needs]
    for breach in breaches:
        covered = (after_learnt or (learnt and learnt[0] < breach)) and breach <= newest
        if breach in learnt or covered:
            continue
        return breach
    return None


@dataclass(frozen=True)
class Breaches:
    """The open breach of a month, the mature vintages since the first breach not settled, and the newest settled
    breach with the month a fit could first learn it (None: none settled)."""

    mature: list[str]
    open: str | None
    fit_needs: int
    learnt: tuple[str, str] | None = None


def _settled_path(settings: Settings, spec: ModelSpec):
    return settings.state_dir / "breaches" / f"{spec.name}.settled.json"


def _open(settings: Settings, spec: ModelSpec, breaches: list[str], month: str, also: str | None) -> Breaches:
    """Find the open breach among the recorded ones, reading labels only since the first breach not settled.

    A breach once learnt stays learnt (labels only mature), so the breaches before the open one are recorded as
    settled and never read again: the work of a month stays bounded however long the history of breaches.
    `also` is a month whose vintages must be read too (a recalibrated champion's breach).
    """
    path = _settled_path(settings, spec)
    record = json.loads(path.read_text()) if path.exists() else {}
    settled: str = record.get("through", "")
    learnable: dict[str, str] = dict(record.get("learnable", {}))
    pending = [b for b in breaches if b > settled]
    # a fit learns a breach once its development and out-of-time vintages can all come after it
    fit_needs = spec.policy.oot_months + 1
    starts = [m for m in (pending[0] if pending else None, also) if m is not None]
    if not starts:
        return Breaches([], None, fit_needs, _newest(settled, learnable))
    mature = population_vintages(settings, spec, month_range(min(starts), month), month)
    since = open_breach(pending, mature, fit_needs, after_learnt=bool(settled))
    done = [b for b in pending if since is None or b < since]
    if done:
        settled = done[-1]
        learnable |= {b: month for b in done if b not in learnable}
        write_json({"through": settled, "learnable": learnable}, path)
    return Breaches(mature, since, fit_needs, _newest(settled, learnable))


def _newest(settled: str, learnable: dict[str, str]) -> tuple[str, str] | None:
    """Return the newest settled breach and the month a fit could first learn it (None before any)."""
    return (settled, learnable[settled]) if settled in learnable else None


def recorded_open_breach(settings: Settings, spec: ModelSpec, month: str) -> str | None:
    """Return the open breach at `month` from the recorded breaches and the labels mature then."""
    return _open(settings, spec, _breaches(_recorded(settings, spec), month), month, None).open


def _since(vintages: list[str], start: str) -> list[str]:
    return [v for v in vintages if v >= start]


def _classes(frame: pd.DataFrame) -> tuple[int, int]:
    bad = frame["bad"].astype(int)
    return int(bad.sum()), int((1 - bad).sum())


@dataclass(frozen=True)
class Plan:
    """The vintages a recalibration uses: fitted on, held out for the gate, and the bridge's."""

    fit: list[str]
    holdout: str
    bridge: list[str]


def plan_months(settings: Settings, spec: ModelSpec, since: str, month: str) -> list[str]:
    """Return the months a recalibration's plan reads at `month`: from the first period, or with the policy's
    `train_vintages` from the oldest of the fit's window (its bridge vintages are the window's) or the breach."""
    if spec.policy.train_vintages is None:
        return month_range(settings.start_month, month)
    return month_range(min(fit_months(settings, spec, month)[0], since), month)


def plan(target: pd.DataFrame, early: pd.DataFrame, since: str, needed: int) -> Plan | str:
    """Return the recalibration's vintages, or why it cannot be fitted yet (a sentence for the policy's reason).

    `target` and `early` are the model's cases (with `vintage`) labelled on its label and on its early label.
    """
    post = _since(mature_vintages(early), since)
    if len(post) < needed:
        return (
            f"{len(post)} vintage(s) since {since} have mature early labels, a recalibration needs {needed}"
        )
    fit, holdout = post[-needed:-1], post[-1]
    early_mature = set(mature_vintages(early))
    bridge = [v for v in mature_vintages(target) if v in early_mature][-BRIDGE_VINTAGES:]
    if not bridge:
        return "no vintage has both labels mature: there is no bridge from the early label to the label"
    samples = {
        f"the early labels of {fit[0]}..{fit[-1]}": labelled(early, fit),
        f"the labels of the bridge vintages {bridge[0]}..{bridge[-1]}": labelled(target, bridge),
        f"the early labels of the bridge vintages {bridge[0]}..{bridge[-1]}": labelled(early, bridge),
    }
    for name, frame in samples.items():
        events, others = _classes(frame)
        if min(events, others) < MIN_EVENTS:
            return f"{name} hold {events} events and {others} non-events; a recalibration needs {MIN_EVENTS} of each"
    if min(_classes(labelled(early, [holdout]))) == 0:
        return f"the early labels of the held-out {holdout} hold a single class"
    return Plan(fit, holdout, bridge)


def refit_due(
    champion: int,
    trained: str | None,
    answered: str | None,
    mature: list[str],
    fit_needs: int,
    learnt: tuple[str, str] | None,
) -> str | None:
    """Return why the champion must be refitted now (None: it need not be).

    A recalibrated champion, once enough vintages since its breach have mature labels to fit and hold out; a fitted
    one trained (at `trained`) before the newest settled breach could be learnt, from the month it could.
    """
    if answered is not None:
        if len(_since(mature, answered)) >= fit_needs:
            return (
                f"v{champion} is a recalibration: vintages since its breach now have mature labels to fit on"
            )
        return None
    if learnt is not None and trained is not None and trained < learnt[1]:
        return (
            f"v{champion} was fitted at {trained}, before the vintages since the breach of {learnt[0]} could be "
            f"learnt (from {learnt[1]}): a fit on them is due"
        )
    return None


def adaptation(
    settings: Settings,
    spec: ModelSpec,
    champion: Any,
    month: str,
    breach: bool,
    version: int,
    trained: str | None,
) -> Adaptation | None:
    """Return what a model with an early label could learn from at the month (None for a model without one).

    `champion` is the loaded champion (version `version`, trained or recalibrated at `trained`): a recalibrated
    one carries the month its breach began in its params.
    """
    if spec.early_label_rule is None:
        return None
    breaches = record_breach(settings, spec, month, breach)
    answered = (getattr(champion, "params", None) or {}).get("recalibration", {}).get("since")
    needed = spec.policy.recalibration_vintages + 1
    found = _open(settings, spec, breaches, month, answered)
    mature, since, fit_needs = found.mature, found.open, found.fit_needs
    why = refit_due(version, trained, answered, mature, fit_needs, found.learnt)
    refit = why is not None
    if since is None:
        return Adaptation(None, needed=needed, refit_ready=refit, refit_why=why)
    early_cases = vintage_cases(settings, spec.with_early_label(), month_range(since, month), month)
    early = _since(mature_vintages(early_cases), since)
    shortfall = None
    if len(early) >= needed and answered != since:  # enough vintages: can they be fitted on (and bridged)?
        history = plan_months(settings, spec, since, month)
        planned = plan(
            vintage_cases(settings, spec, history, month),
            vintage_cases(settings, spec.with_early_label(), history, month),
            since,
            needed,
        )
        shortfall = planned if isinstance(planned, str) else None
    return Adaptation(
        since,
        early_vintages=len(early),
        mature_vintages=len(_since(mature, since)),
        fit_needs=fit_needs,
        needed=needed,
        refit_ready=refit,
        refit_why=why,
        shortfall=shortfall,
        answered=answered == since,
    )


def _both_labels(target: pd.DataFrame, early: pd.DataFrame, key: str) -> pd.DataFrame:
    """Return the cases labelled on both labels: the target's rows with the early label as `early`."""
    return target.merge(early[[key, "bad"]].rename(columns={"bad": "early"}), on=key, how="inner")


def recalibrate_and_register(
    settings: Settings, spec: ModelSpec, champion: int, month: str, tools: Tools | None = None
) -> TrainOutcome:
    """Re-map the champion's PDs to the vintages since the breach (early labels, bridged); register the version.

    Fitted on the vintages since the breach with mature early labels but the newest, which is held out for the
    gate; the bridge on the latest BRIDGE_VINTAGES vintages with both labels mature.
    """
    tools = tools or Tools()
    since = recorded_open_breach(settings, spec, month)
    if since is None:
        raise OrchardError(f"{spec.name} has no open breach at {month}: there is nothing to recalibrate for")
    months = plan_months(settings, spec, since, month)
    target = model_frame(settings, spec, months, month, tools=tools)
    early = model_frame(settings, spec.with_early_label(), months, month, tools=tools).frame
    found = plan(target.frame, early, since, spec.policy.recalibration_vintages + 1)
    if isinstance(found, str):
        raise OrchardError(f"{spec.name} cannot be recalibrated at {month}: {found}")
    fit_vintages, holdout, bridge_vintages = found.fit, found.holdout, found.bridge
    bridge = _both_labels(labelled(target.frame, bridge_vintages), labelled(early, bridge_vintages), spec.key)
    recent = labelled(early, fit_vintages)
    base = load_model(settings, spec.name, champion, tools.models)
    fitted = fit_recalibration(
        logit(base.predict_pd(bridge)),
        bridge["early"].to_numpy(),
        bridge["bad"].to_numpy(),
        logit(base.predict_pd(recent)),
        recent["bad"].to_numpy(),
    )
    model = recalibrated(base, fitted.map)
    model.params["recalibration"] = {**fitted.to_dict(), "since": since, "from_version": champion}

    held = labelled(early, [holdout])
    implied = {
        "champion": early_pd(fitted, base.predict_pd(held)),
        "challenger": early_pd(fitted, model.predict_pd(held)),
    }
    # the card's figures: the version on the early label (through its bridge), fitted and held out
    evaluations = {
        "recent_early": evaluate(
            recent["bad"].to_numpy(), early_pd(fitted, model.predict_pd(recent))
        ).to_dict(),
        "holdout_early": evaluate(held["bad"].to_numpy(), implied["challenger"]).to_dict(),
    }
    client = mlflow_client(settings)
    champion_run = get_version(client, spec.name, champion).run_id or ""
    inherited = {name: read_run_json(client, champion_run, name) for name in INHERITED_ARTIFACTS}
    metrics: dict[str, float] = {
        "holdout_early_bad_rate": round(float(held["bad"].mean()), 6),
        **{f"holdout_{who}_expected_early_bad_rate": round(float(p.mean()), 6) for who, p in implied.items()},
        "holdout_early_auc": round(evaluate(held["bad"].to_numpy(), implied["challenger"]).auc, 6),
        "recent_n": float(len(recent)),
        "bridge_n": float(len(bridge)),
        "map_intercept": round(fitted.map.intercept, 6),
        "map_slope": round(fitted.map.slope, 6),
    }
    key = train_key(spec, month)
    # the version is monitored against the population it was calibrated for: the cases since the breach
    through_door = target.frame[target.frame["vintage"].isin(fit_vintages)]
    save_reference(settings, spec, key, model, through_door)
    fit_window = f"{fit_vintages[0]}..{fit_vintages[-1]}"
    lineage = frame_lineage(
        spec,
        target,
        fit_window,
        {
            "oot_window": holdout,
            "as_of": month,
            "recalibrated_from": champion,
            "bridge_window": f"{bridge_vintages[0]}..{bridge_vintages[-1]}",
        },
    )
    ref = register_model(
        settings,
        spec.name,
        model,
        train_key=key,
        metrics=metrics,
        params={
            "kind": model.kind,
            "method": "recalibration",
            "recalibrated_from": champion,
            "breach_since": since,
            "early_label": spec.early_label_rule.description[:250] if spec.early_label_rule else "",
            "seed": settings.seed,
            "as_of": month,
        },
        lineage=lineage,
        input_example=recent[spec.features].head(5),
        artifacts={
            "recalibration.json": model.params["recalibration"],
            "evaluation.json": evaluations,
            **inherited,
        },
    )
    log.info(
        "recalibrated %s v%s as v%s on %s (held out %s): log-odds %.3f + %.3f z",
        spec.name,
        champion,
        ref.version,
        fit_window,
        holdout,
        fitted.map.intercept,
        fitted.map.slope,
    )
    return TrainOutcome(
        model=spec.name,
        version=ref.version,
        train_key=key,
        as_of=month,
        train_window=fit_window,
        oot_window=f"{holdout}..{holdout}",
        metrics=metrics,
        method="recalibration",
    )


def early_pd(fitted: Recalibration, target_pd: np.ndarray) -> np.ndarray:
    """Return the early-label probability a target PD stands for, through the recalibration's bridge."""
    return 1.0 / (1.0 + np.exp(-fitted.early_log_odds(logit(target_pd))))
