"""Train a model's candidates on mature labels, evaluate out of time, and register the result."""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from model_registry.registry import Lineage, ModelVersionRef, register_model
from orchard import __version__
from orchard.atomic import write_json
from orchard.credit.expected_loss import LossForecastModel, loss_by_vintage, loss_parameters
from orchard.credit.lightgbm_dask import ClusterFit
from orchard.credit.metrics import EvaluationResult, evaluate, score_psi
from orchard.credit.model import CreditModel, train_lightgbm
from orchard.credit.psi import ReferenceProfile
from orchard.credit.reject_inference import with_parcelled_rejects
from orchard.credit.scorecard import scorecard_of, train_scorecard
from orchard.credit.selection import SelectionConfig
from orchard.credit.stratification import PrecreditModel, tier_counts
from orchard.errors import OrchardError
from orchard.lifecycle.datasets import (
    ModelFrame,
    declined,
    fit_frame,
    labelled,
    mature_vintages,
    ready_vintages,
    split_vintages,
)
from orchard.lifecycle.references import profile_path, reference_columns, save_reference_sample
from orchard.lifecycle.tools import Tools
from orchard.model_specs import ModelSpec, model_spec
from orchard.months import month_index, month_range, timestamp_months
from orchard.populations import realised_charge_offs, strategy_label
from orchard.settings import Settings

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TrainOutcome:
    """A trained and registered version, with its out-of-time evaluation."""

    model: str
    version: int
    train_key: str
    as_of: str
    train_window: str
    oot_window: str
    metrics: dict[str, float] = field(default_factory=dict)
    feature_iv: dict[str, float] = field(default_factory=dict)
    method: str = "fit"
    """How the version was made: `fit` (trained on mature labels) or `recalibration` (a champion re-mapped)."""


def train_key(spec: ModelSpec, as_of: str) -> str:
    """Return the idempotency key of a training run: one version per model and month at most."""
    return f"{spec.name}@{as_of}"


def _risk_model(settings: Settings, spec: ModelSpec) -> ModelSpec:
    """Return the model a tiers model takes its risk axis from (its labels and monotone risk drivers)."""
    if spec.risk_model is None:
        raise OrchardError(f"model {spec.name} of kind tiers names no risk_model")
    return model_spec(settings.portfolio_def, spec.risk_model)


def _needs(settings: Settings, spec: ModelSpec) -> list[ModelSpec]:
    """Return the specs whose labels a model learns from (a tiers model also learns its risk axis)."""
    return [spec, _risk_model(settings, spec)] if spec.kind == "tiers" else [spec]


def ready_to_train(settings: Settings, spec: ModelSpec, as_of: str) -> bool:
    """Return whether enough vintages have matured, with both classes, to train (and hold some out)."""
    return all(ready_vintages(settings, need, as_of) for need in _needs(settings, spec))


@dataclass(frozen=True)
class Fitted:
    """The model to register, plus what its kind adds to the metrics and artifacts."""

    model: Any
    metrics: dict[str, float] = field(default_factory=dict)
    artifacts: dict[str, Any] = field(default_factory=dict)


def _precredit(
    settings: Settings,
    spec: ModelSpec,
    response: CreditModel,
    dev: pd.DataFrame,
    oot: pd.DataFrame,
    as_of: str,
    tools: Tools,
) -> Fitted:
    """Add the pre-credit risk axis (the risk model's labels on the customer's features) and the tier cuts."""
    risk_spec = _risk_model(settings, spec)
    apps = fit_frame(settings, risk_spec, as_of, tools=tools).frame
    booked = labelled(apps, mature_vintages(apps))
    features = list(spec.feast_features)
    categorical = [c for c in spec.categorical if c in features]
    increasing = tuple(c for c in risk_spec.increasing if c in features)
    risk = train_lightgbm(
        booked,
        "bad",
        features,
        categorical,
        settings.seed,
        f"{spec.name}_risk",
        increasing,
        tools.cluster_fit(settings),
    )
    cut = float(pd.Series(response.predict_pd(dev)).median())
    model = PrecreditModel(
        spec.name, response, risk, response_cut=cut, max_pd=settings.serving.approve_max_pd
    )
    table = (
        oot.assign(tier=model.tier(oot), risk_pd=model.risk_pd(oot))
        .groupby("tier")
        .agg(offers=("bad", "size"), responded_approved=("bad", "mean"), mean_risk_pd=("risk_pd", "mean"))
        .round(6)
    )
    counts = tier_counts(model.tier(oot))
    metrics = {f"oot_tier_{t}_share": round(n / max(len(oot), 1), 6) for t, n in counts.items()}
    metrics["risk_n_train"] = float(len(booked))
    return Fitted(
        model,
        metrics,
        {
            "tiers_oot.json": {
                "response_cut": cut,
                "max_pd": settings.serving.approve_max_pd,
                "by_tier": table.reset_index().to_dict("records"),
            }
        },
    )


def _loss_forecast(
    settings: Settings,
    spec: ModelSpec,
    pd_model: CreditModel,
    data: ModelFrame,
    dev: pd.DataFrame,
    oot: pd.DataFrame,
    as_of: str,
) -> Fitted:
    """Estimate LGD and EAD on the development charge-offs; set EL beside realised losses by vintage.

    The charge-offs are read from the statements and collections since the frame's first vintage up to `as_of`
    (the frame's loans were booked in it; nothing later is known at `as_of`).
    """
    months = month_range(str(data.frame["vintage"].min()), as_of)
    losses = realised_charge_offs(settings, months)
    lgd, ead, n_used = loss_parameters(dev, losses)
    model = LossForecastModel(spec.name, pd_model, lgd=lgd, ead_ratio=ead)
    booked = data.frame[data.frame["eligible"].astype(bool)].copy()
    booked["obs_index"] = timestamp_months(booked["event_timestamp"])
    table = loss_by_vintage(
        booked, model.expected_loss(booked), losses, month_index(as_of), strategy_label(spec).window_months
    )
    in_oot = table["vintage"].isin(set(oot["vintage"]))
    ratio = float(
        table.loc[in_oot, "expected_loss"].sum() / max(table.loc[in_oot, "realised_loss"].sum(), 1.0)
    )
    metrics = {
        "lgd": round(lgd, 6),
        "ead_ratio": round(ead, 6),
        "chargeoffs_used": float(n_used),
        "oot_expected_to_realised_loss": round(ratio, 6),
    }
    return Fitted(model, metrics, {"loss_by_vintage.json": table.round(2).to_dict("records")})


def frame_lineage(spec: ModelSpec, data: ModelFrame, train_window: str, extra: dict[str, Any]) -> Lineage:
    """Return the lineage of a version made from a model frame: its batches (validated), data hash, service, code."""
    return Lineage(
        batch_ids=data.batch_ids,
        data_sha256=data.data_sha256,
        validation_ids=[f"{b}:passed" for b in data.batch_ids],
        feature_service=spec.feature_service,
        code_version=__version__,
        train_window=train_window,
        extra=extra,
    )


def save_reference(
    settings: Settings, spec: ModelSpec, key: str, model: Any, through_door: pd.DataFrame
) -> ReferenceProfile:
    """Score a version's monitoring reference (its through-the-door cases) and keep the sample and frozen bins."""
    reference = through_door[spec.features].copy()
    reference["score"] = model.score(through_door)
    numeric, cats = reference_columns(spec, list(model.features))
    profile = ReferenceProfile.fit(reference, numeric=numeric, categorical=cats)
    save_reference_sample(settings, spec.name, key, reference)
    write_json(profile.to_dict(), profile_path(settings, spec.name, key))
    return profile


TEST_SHARE = 0.2


def split_test(
    dev: pd.DataFrame, key: str, seed: int, share: float = TEST_SHARE
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Split the development rows into (train, test) at random by a seeded hash of the case key (stable)."""
    salt = str(seed).encode()
    draw = dev[key].map(
        lambda k: int.from_bytes(hashlib.blake2b(str(k).encode(), key=salt, digest_size=8).digest())
    )
    in_test = (draw.to_numpy(dtype="uint64") % 1000) < int(share * 1000)
    return dev[~in_test], dev[in_test]


def evaluate_samples(model: CreditModel, samples: dict[str, pd.DataFrame]) -> dict[str, EvaluationResult]:
    """Return AUC, KS, Gini, bad rate and the bad rate by score decile of a model on each labelled sample."""
    return {name: evaluate(rows["bad"].to_numpy(), model.predict_pd(rows)) for name, rows in samples.items()}


def _flat_metrics(evaluations: dict[str, dict]) -> dict[str, float]:
    return {
        f"{sample}_{name}": float(value)
        for sample, result in evaluations.items()
        for name, value in result.items()
        if isinstance(value, int | float) and not isinstance(value, bool)
    }


def choose_algorithm(
    rule: str, lightgbm: CreditModel, scorecard: CreditModel, test: pd.DataFrame
) -> tuple[CreditModel, CreditModel, str]:
    """Return (registered, baseline, why) by the model's `algorithm`: a fixed learner, or the better test AUC.

    `best` compares the two fits on the development test sample only (a tie keeps LightGBM): the out-of-time
    window stays unseen until the gate judges the registered model on it.
    """
    if rule == "lightgbm":
        return lightgbm, scorecard, "algorithm lightgbm (fixed)"
    if rule == "scorecard":
        return scorecard, lightgbm, "algorithm scorecard (fixed)"
    aucs = {m.kind: evaluate(test["bad"], m.predict_pd(test)).auc for m in (lightgbm, scorecard)}
    shown = ", ".join(f"{k} {v:.4f}" for k, v in aucs.items())
    if aucs[scorecard.kind] > aucs[lightgbm.kind]:
        return scorecard, lightgbm, f"algorithm best: scorecard on the development test AUC ({shown})"
    return lightgbm, scorecard, f"algorithm best: lightgbm on the development test AUC ({shown})"


@dataclass(frozen=True)
class Candidates:
    """A model's two fits on one training sample, and which one its `algorithm` registers."""

    lightgbm: CreditModel
    scorecard: CreditModel
    chosen: CreditModel
    baseline: CreditModel
    reason: str


def fit_candidates(
    spec: ModelSpec,
    train: pd.DataFrame,
    test: pd.DataFrame,
    seed: int,
    names: tuple[str, str] | None = None,
    cluster: ClusterFit | None = None,
) -> Candidates:
    """Fit LightGBM and the WOE scorecard on `train` (label `bad`) and choose one by the model's `algorithm`.

    LightGBM is constrained by `increasing`; the scorecard bins by `trends` and selects by `selection`. `names`
    (LightGBM's, the scorecard's) default to the model's name. The embedded lifecycle, the deployed training flow
    and `orchard byod` all fit here; with a `cluster`, a large LightGBM fit runs on it
    (orchard.credit.lightgbm_dask).
    """
    features, categorical = spec.features, list(spec.categorical)
    lightgbm_name, scorecard_name = names or (spec.name, spec.name)
    lightgbm = train_lightgbm(
        train, "bad", features, categorical, seed, lightgbm_name, spec.increasing, cluster
    )
    selection = SelectionConfig(**spec.selection.model_dump()) if spec.selection is not None else None
    scorecard = train_scorecard(
        train, "bad", features, categorical, seed, scorecard_name, monotone=spec.trends, selection=selection
    )
    chosen, baseline, reason = choose_algorithm(spec.algorithm, lightgbm, scorecard, test)
    return Candidates(lightgbm, scorecard, chosen, baseline, reason)


def fit_with_rejects(
    spec: ModelSpec,
    train: pd.DataFrame,
    test: pd.DataFrame,
    rejects: pd.DataFrame,
    seed: int,
    factor: float,
    cluster: ClusterFit | None = None,
) -> tuple[Candidates, pd.DataFrame]:
    """Fit on the booked rows, parcel the declined ones with that fit, fit again on both; return the second fit
    and its training rows (orchard.credit.reject_inference)."""
    booked_only = fit_candidates(spec, train, test, seed, cluster=cluster)
    reject_pd = booked_only.chosen.predict_pd(rejects) if len(rejects) else np.empty(0)
    augmented = with_parcelled_rejects(train, rejects, reject_pd, factor, seed)
    return fit_candidates(spec, augmented, test, seed, cluster=cluster), augmented


def train_and_register(
    settings: Settings, spec: ModelSpec, as_of: str, tools: Tools | None = None
) -> TrainOutcome:
    """Fit LightGBM and the scorecard baseline on mature vintages, evaluate OOT, register LightGBM.

    A pre-credit response model is registered with its risk axis and tier cuts; a loss forecast with its LGD
    and EAD (see Fitted).
    """
    tools = tools or Tools()
    data = fit_frame(settings, spec, as_of, tools=tools)
    dev_vintages, oot_vintages = split_vintages(mature_vintages(data.frame), spec.policy.oot_months)
    dev, oot = labelled(data.frame, dev_vintages), labelled(data.frame, oot_vintages)
    train, test = split_test(dev, spec.key, settings.seed)
    features = spec.features
    inferred = 0
    cluster = tools.cluster_fit(settings)
    if spec.reject_inference is None:
        candidates = fit_candidates(spec, train, test, settings.seed, cluster=cluster)
    else:
        rejects = declined(data.frame, dev_vintages)
        factor = spec.reject_inference.factor
        candidates, train = fit_with_rejects(spec, train, test, rejects, settings.seed, factor, cluster)
        inferred = len(rejects)
        log.info("%s: %d declined cases parcelled into training (factor %.2f)", spec.name, inferred, factor)
    core, baseline, scorecard = candidates.chosen, candidates.baseline, candidates.scorecard
    log.info("%s: %s", spec.name, candidates.reason)
    if spec.kind == "tiers":
        fitted = _precredit(settings, spec, core, train, oot, as_of, tools)
    elif spec.kind == "expected_loss":
        fitted = _loss_forecast(settings, spec, core, data, dev, oot, as_of)
    else:
        fitted = Fitted(core)
    model = fitted.model
    feature_iv = {
        f: round(float(v), 6) for f, v in scorecard_of(scorecard).selection.get("candidate_iv", {}).items()
    }
    samples = {"train": train, "test": test, "oot": oot}
    evaluations = {
        **{name: r.to_dict() for name, r in evaluate_samples(model, samples).items()},
        **{f"baseline_{name}": r.to_dict() for name, r in evaluate_samples(baseline, samples).items()},
    }
    metrics = {**_flat_metrics(evaluations), **fitted.metrics}
    metrics["score_psi_dev_oot"] = round(score_psi(model.score(dev), model.score(oot)), 6)

    # The monitoring reference is the through-the-door population of the development months, scored.
    key = train_key(spec, as_of)
    profile = save_reference(settings, spec, key, model, data.frame[data.frame["vintage"].isin(dev_vintages)])

    lineage = frame_lineage(
        spec,
        data,
        f"{dev_vintages[0]}..{dev_vintages[-1]}",
        {"oot_window": f"{oot_vintages[0]}..{oot_vintages[-1]}", "as_of": as_of},
    )
    ref: ModelVersionRef = register_model(
        settings,
        spec.name,
        model,
        train_key=key,
        metrics=metrics,
        params={
            "kind": model.kind,
            "algorithm": spec.algorithm,
            "baseline": baseline.kind,
            "algorithm_choice": candidates.reason[:250],
            # where LightGBM was fitted: in this process, or by its Dask estimator on the cluster
            "lightgbm_engine": candidates.lightgbm.params.get("engine", "process"),
            "seed": settings.seed,
            "n_train": len(train),
            "n_test": len(test),
            "n_oot": len(oot),
            "n_rejects_inferred": inferred,
            "as_of": as_of,
        },
        lineage=lineage,
        input_example=train[features].head(5),
        artifacts={
            "reference_profile.json": profile.to_dict(),
            "scorecard_baseline.json": scorecard_of(scorecard).to_dict(),
            "feature_iv.json": feature_iv,
            "evaluation.json": evaluations,
            **fitted.artifacts,
        },
    )
    log.info("registered %s v%s (oot auc %.3f)", spec.name, ref.version, metrics["oot_auc"])
    return TrainOutcome(
        model=spec.name,
        version=ref.version,
        train_key=key,
        as_of=as_of,
        train_window=lineage.train_window,
        oot_window=lineage.extra["oot_window"],
        metrics=metrics,
        feature_iv=feature_iv,
    )
