"""Train a model's candidates on mature labels, evaluate out of time, and register the result."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import pandas as pd

from model_registry.registry import Lineage, ModelVersionRef, register_model
from monitoring.psi import ReferenceProfile
from orchard import __version__
from orchard.atomic import write_json
from orchard.credit.metrics import evaluate
from orchard.credit.model import CreditModel, train_lightgbm
from orchard.credit.scorecard import scorecard_of, train_scorecard
from orchard.lifecycle.datasets import (
    application_frame,
    labelled,
    labelled_vintages,
    mature_vintages,
    split_vintages,
)
from orchard.lifecycle.references import profile_path, reference_columns, save_reference_sample
from orchard.model_specs import ModelSpec
from orchard.months import month_range
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


def train_key(spec: ModelSpec, as_of: str) -> str:
    """Return the idempotency key of a training run: one version per model and month at most."""
    return f"{spec.name}@{as_of}"


def ready_to_train(settings: Settings, spec: ModelSpec, as_of: str) -> bool:
    """Return whether enough vintages have matured to train (and hold some out)."""
    return len(labelled_vintages(settings, as_of)) >= settings.min_mature_vintages


def _evaluation(model: CreditModel, data: pd.DataFrame) -> dict:
    """Return AUC, KS, Gini, bad rate and the bad rate by score decile of a model on labelled rows."""
    return evaluate(data["bad"].to_numpy(), model.predict_pd(data)).to_dict()


def _flat_metrics(evaluations: dict[str, dict]) -> dict[str, float]:
    return {
        f"{sample}_{name}": float(value)
        for sample, result in evaluations.items()
        for name, value in result.items()
        if isinstance(value, int | float) and not isinstance(value, bool)
    }


def train_and_register(settings: Settings, spec: ModelSpec, as_of: str) -> TrainOutcome:
    """Fit LightGBM and the scorecard baseline on mature vintages, evaluate OOT, register LightGBM."""
    months = month_range(settings.start_month, as_of)
    data = application_frame(settings, spec, months, as_of)
    dev_vintages, oot_vintages = split_vintages(mature_vintages(data.frame), settings.gate_window_months)
    dev, oot = labelled(data.frame, dev_vintages), labelled(data.frame, oot_vintages)
    features, categorical = spec.features, list(spec.categorical)

    model = train_lightgbm(dev, "bad", features, categorical, settings.seed)
    baseline = train_scorecard(dev, "bad", features, categorical, settings.seed)
    feature_iv = {
        f: round(float(v), 6) for f, v in scorecard_of(baseline).selection.get("candidate_iv", {}).items()
    }
    evaluations = {
        "train": _evaluation(model, dev),
        "oot": _evaluation(model, oot),
        "baseline_train": _evaluation(baseline, dev),
        "baseline_oot": _evaluation(baseline, oot),
    }
    metrics = _flat_metrics(evaluations)

    # The monitoring reference is the through-the-door population of the development months, scored.
    through_door = data.frame[data.frame["vintage"].isin(dev_vintages)]
    reference = through_door[features].copy()
    reference["score"] = model.score(through_door)
    numeric, cats = reference_columns(spec)
    profile = ReferenceProfile.fit(reference, numeric=numeric, categorical=cats)
    key = train_key(spec, as_of)
    save_reference_sample(settings, spec.name, key, reference)
    write_json(profile.to_dict(), profile_path(settings, spec.name, key))

    lineage = Lineage(
        batch_ids=data.batch_ids,
        data_sha256=data.data_sha256,
        validation_ids=[f"{b}:passed" for b in data.batch_ids],
        feature_service=spec.feature_service,
        code_version=__version__,
        train_window=f"{dev_vintages[0]}..{dev_vintages[-1]}",
        extra={"oot_window": f"{oot_vintages[0]}..{oot_vintages[-1]}", "as_of": as_of},
    )
    ref: ModelVersionRef = register_model(
        settings,
        spec.name,
        model,
        train_key=key,
        metrics=metrics,
        params={
            "kind": model.kind,
            "seed": settings.seed,
            "n_dev": len(dev),
            "n_oot": len(oot),
            "as_of": as_of,
        },
        lineage=lineage,
        input_example=dev[features].head(5),
        artifacts={
            "reference_profile.json": profile.to_dict(),
            "scorecard_baseline_metrics.json": metrics,
            "feature_iv.json": feature_iv,
            "evaluation.json": evaluations,
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
