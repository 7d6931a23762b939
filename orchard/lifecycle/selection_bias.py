"""What training on booked loans costs, measured against the simulator's truth, and what reject inference recovers.

A lender learns outcomes only for the applications it booked; the simulator also knows what every declined
application would have done if booked (its counterfactual statements, orchard.simulate.run.counterfactual_path),
labelled here with the model's own label rule. On the decision model's out-of-time vintages (the last
`oot_months` mature ones, as in training), the report sets side by side, per fit:

- booked only: what Orchard trains (and what its gates judge, on booked loans alone);
- parcelling at each factor: the booked fit, then the declined cases of the development vintages parcelled
  (orchard.credit.reject_inference) and the model fitted again;
- all applicants: the fit a lender can never make, on every development application with its true outcome.

Each is evaluated on the booked, the declined and all applications of the out-of-time vintages: AUC, the mean
predicted PD against the observed (true) bad rate. The development sample and the fitting code are those of
training (split_test, fit_candidates); only the label source differs.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass

import numpy as np
import pandas as pd

from orchard.atomic import write_json
from orchard.credit.metrics import auc
from orchard.credit.model import CreditModel
from orchard.errors import OrchardError
from orchard.lake import silver_months
from orchard.lifecycle.datasets import declined, labelled, mature_vintages, model_frame, split_vintages
from orchard.lifecycle.lender import decision_log
from orchard.lifecycle.tools import Tools
from orchard.lifecycle.training import fit_candidates, fit_with_rejects, split_test
from orchard.model_specs import ModelSpec, model_spec
from orchard.months import month_range
from orchard.populations import strategy_labels
from orchard.settings import Settings
from orchard.simulate.run import counterfactual_path

log = logging.getLogger(__name__)

FACTORS = (1.0, 1.5, 2.0)
"""Parcelling factors the report tries (besides the model's own, when it declares reject_inference)."""
HOLDOUT_VINTAGES = 6
"""Mature vintages held out by default (at least the model's oot_months): half a year of decisions, so that the
AUC of the declined, and the differences between fits, are larger than their standard errors."""
MIN_CASES = 30
"""Fewer cases, or fewer of either outcome, in a sample: its AUC is not reported."""


@dataclass(frozen=True)
class SampleFit:
    """One fit judged on one out-of-time sample."""

    rows: int
    bads: int
    auc: float | None
    auc_se: float | None
    """The AUC's standard error (Hanley and McNeil, 1982)."""
    expected_bad_rate: float
    observed_bad_rate: float


@dataclass(frozen=True)
class VariantResult:
    """One way of training, judged on the booked, the declined and all out-of-time applications."""

    name: str
    trained_on: int
    booked: SampleFit
    declined: SampleFit
    all: SampleFit


def true_outcomes(settings: Settings, spec: ModelSpec, cases: pd.DataFrame, as_of: str) -> pd.DataFrame:
    """Return (key, mature, bad) of declined cases by their counterfactual statements, with the model's label rule.

    Each declined application is taken as booked when it was decided; its statements are those the simulator
    drew for it (simulator/counterfactual/), observable up to `as_of` as real ones are.
    """
    paths = [counterfactual_path(settings, m) for m in month_range(settings.start_month, as_of)]
    missing = [p.name for p in paths if not p.exists()]
    if missing:
        raise OrchardError(
            f"no counterfactual statements for {', '.join(missing)} under {paths[0].parent}: the selection-bias "
            "report needs the simulator's truth (a simulated portfolio run by `orchard demo`)"
        )
    statements = pd.concat([pd.read_parquet(p) for p in paths], ignore_index=True)
    apps = pd.DataFrame(
        {
            "application_id": cases[spec.key].to_numpy(),
            "user_id": cases[spec.entity].to_numpy(),
            "event_ts": cases["event_timestamp"].to_numpy(),
            "decision": "approved",
        }
    )
    labels = strategy_labels(spec, apps, statements, as_of)
    return labels.rename(columns={"application_id": spec.key})[[spec.key, "mature", "bad"]]


def auc_standard_error(value: float, bads: int, goods: int) -> float:
    """Return the standard error of an AUC from its value and the class sizes (Hanley and McNeil, 1982)."""
    q1, q2 = value / (2 - value), 2 * value**2 / (1 + value)
    variance = (value * (1 - value) + (bads - 1) * (q1 - value**2) + (goods - 1) * (q2 - value**2)) / (
        bads * goods
    )
    return float(np.sqrt(max(variance, 0.0)))


def _sample(y: np.ndarray, pd_values: np.ndarray) -> SampleFit:
    bads = int(y.sum())
    enough = len(y) >= MIN_CASES and min(bads, len(y) - bads) >= 5
    value = auc(y, pd_values) if enough else None
    return SampleFit(
        rows=len(y),
        bads=bads,
        auc=None if value is None else round(value, 4),
        auc_se=None if value is None else round(auc_standard_error(value, bads, len(y) - bads), 4),
        expected_bad_rate=round(float(pd_values.mean()), 4) if len(y) else float("nan"),
        observed_bad_rate=round(float(y.mean()), 4) if len(y) else float("nan"),
    )


def _judge(
    name: str, model: CreditModel, trained_on: int, booked: pd.DataFrame, rejected: pd.DataFrame
) -> VariantResult:
    pd_booked, pd_declined = model.predict_pd(booked), model.predict_pd(rejected)
    y_booked, y_declined = booked["bad"].to_numpy(dtype=int), rejected["bad"].to_numpy(dtype=int)
    return VariantResult(
        name=name,
        trained_on=trained_on,
        booked=_sample(y_booked, pd_booked),
        declined=_sample(y_declined, pd_declined),
        all=_sample(np.concatenate([y_booked, y_declined]), np.concatenate([pd_booked, pd_declined])),
    )


def _with_truth(settings: Settings, spec: ModelSpec, rows: pd.DataFrame, as_of: str) -> pd.DataFrame:
    """Return the declined rows whose true outcome is mature at as_of, labelled with it."""
    truth = true_outcomes(settings, spec, rows, as_of)
    out = rows.drop(columns=["mature", "bad"]).merge(truth, on=spec.key, how="inner")
    out = out[out["mature"].astype(bool)].copy()
    out["bad"] = out["bad"].astype(int)
    return out


def selection_bias(
    settings: Settings,
    model: str | None = None,
    as_of: str | None = None,
    holdout: int | None = None,
    tools: Tools | None = None,
) -> dict:
    """Measure booked-only training, parcelling and the all-applicant fit against the truth; write and return it.

    The last `holdout` mature vintages (default: HOLDOUT_VINTAGES, at least the model's oot_months) are judged on.
    """
    portfolio = settings.portfolio_def
    if not portfolio.simulated:
        raise OrchardError(
            f"portfolio {portfolio.name} is not simulated: only the simulator knows declined outcomes"
        )
    name = model or (portfolio.decision.pd_model if portfolio.decision else None)
    if name is None:
        raise OrchardError(f"portfolio {portfolio.name} names no decision model: give --model")
    spec = model_spec(portfolio, name)
    if spec.trainable is None:
        raise OrchardError(
            f"model {name} learns from every case (no population 'trainable'): nothing is declined"
        )
    done = silver_months(settings, spec.source)
    if not done:
        raise OrchardError(f"no validated {spec.source} batch in {settings.home}: run the demo first")
    as_of = as_of or done[-1]
    tools = tools or Tools()
    data = model_frame(settings, spec, month_range(settings.start_month, as_of), as_of, tools=tools)
    vintages = mature_vintages(data.frame)
    held = holdout or max(spec.policy.oot_months, HOLDOUT_VINTAGES)
    if held < 1 or len(vintages) < held + 2:
        raise OrchardError(
            f"{name}: {len(vintages)} mature vintage(s) at {as_of}, too few to hold out {held} and train on the rest"
        )
    dev_vintages, oot_vintages = split_vintages(vintages, held)
    dev = labelled(data.frame, dev_vintages)
    train, test = split_test(dev, spec.key, settings.seed)
    dev_declined = declined(data.frame, dev_vintages)
    oot_booked = labelled(data.frame, oot_vintages)
    # the counterfactual statements are read and labelled once, for the declined of both windows
    truth = _with_truth(settings, spec, declined(data.frame, vintages), as_of)
    oot_declined = truth[truth["vintage"].isin(oot_vintages)]
    seed = settings.seed

    results = [
        _judge(
            "booked only",
            fit_candidates(spec, train, test, seed).chosen,
            len(train),
            oot_booked,
            oot_declined,
        )
    ]
    factors = sorted({*FACTORS, *([spec.reject_inference.factor] if spec.reject_inference else [])})
    for factor in factors:
        fitted, rows = fit_with_rejects(spec, train, test, dev_declined, seed, factor)
        results.append(_judge(f"parcelling x{factor:g}", fitted.chosen, len(rows), oot_booked, oot_declined))
    dev_truth = truth[truth["vintage"].isin(dev_vintages)]
    truth_train = pd.concat([train, dev_truth[train.columns]], ignore_index=True)
    oracle = fit_candidates(spec, truth_train, test, seed).chosen
    results.append(_judge("all applicants (truth)", oracle, len(truth_train), oot_booked, oot_declined))

    log_rows = decision_log(settings, month_range(settings.start_month, as_of))
    approvals = (
        log_rows.groupby("month")
        .agg(
            applications=("approved", "size"),
            approved=("approved", "mean"),
            policy=("policy", lambda p: ", ".join(sorted(set(p)))),
        )
        .round(4)
        .reset_index()
        .to_dict("records")
        if not log_rows.empty
        else []
    )
    report = {
        "model": name,
        "as_of": as_of,
        "lender": settings.simulation.lender,
        "development_vintages": f"{dev_vintages[0]}..{dev_vintages[-1]}",
        "oot_vintages": f"{oot_vintages[0]}..{oot_vintages[-1]}",
        "development_declined": len(dev_declined),
        "variants": [asdict(r) for r in results],
        "approvals": approvals,
    }
    write_json(report, settings.reports_dir / f"selection_bias_{name}.json")
    return report


def _cell(fit: dict) -> str:
    shown = "-" if fit["auc"] is None else f"{fit['auc']:.3f} ± {fit['auc_se']:.3f}"
    return f"{shown} | {fit['expected_bad_rate']:.3f} / {fit['observed_bad_rate']:.3f}"


def render(report: dict) -> list[str]:
    """Return the report as a markdown table and the lines around it."""
    lines = [
        f"Selection bias of {report['model']} (lender: {report['lender']}), trained on "
        f"{report['development_vintages']}, judged on {report['oot_vintages']} as of {report['as_of']}",
        "",
        "| training | rows | booked AUC | booked expected / observed | declined AUC | declined expected / true "
        "| all AUC | all expected / true |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for v in report["variants"]:
        lines.append(
            f"| {v['name']} | {v['trained_on']} | {_cell(v['booked'])} | {_cell(v['declined'])} | {_cell(v['all'])} |"
        )
    first = report["variants"][0]
    lines.append("")
    lines.append(
        f"out-of-time: {first['booked']['rows']} booked ({first['booked']['bads']} bad), {first['declined']['rows']} "
        f"declined applications with a mature true outcome ({first['declined']['bads']} bad); AUC ± its standard "
        f"error; {report['development_declined']} declined development cases parcelled"
    )
    return lines
