"""What a month means for the stage models beyond monitoring: campaign tiers and the vintage's expected loss."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from model_registry.registry import champion_version, load_model
from orchard.credit.expected_loss import loss_by_vintage
from orchard.credit.stratification import tier_counts
from orchard.labels import APPLICATION_COLUMNS, booked_loans
from orchard.lake import read_silver
from orchard.lifecycle.tools import Tools
from orchard.model_specs import ModelSpec
from orchard.months import month_index
from orchard.populations import realised_charge_offs, strategy_label
from orchard.serving.batch import score_month, scores_path
from orchard.serving.scoring import ServedModel
from orchard.settings import Settings


def _month_scores(
    settings: Settings, spec: ModelSpec, month: str, tools: Tools
) -> tuple[Any, pd.DataFrame] | None:
    """Return the champion and its scores of the month (read back when monitoring wrote them with it).

    The champion is the model object of the spec's kind (load_model unpickles it: its class is not known here).
    """
    version = champion_version(settings, spec.name)
    if version is None:
        return None
    model = load_model(settings, spec.name, version, tools.models)
    path = scores_path(settings, spec.name, month)
    scores = pd.read_parquet(path) if path.exists() else pd.DataFrame()
    if scores.empty or int(scores["model_version"].iloc[0]) != version:
        scores = score_month(settings, spec, month, ServedModel.build(spec.name, version, model), tools=tools)
    return model, scores


def month_tiers(
    settings: Settings, spec: ModelSpec, month: str, tools: Tools | None = None
) -> dict[str, int] | None:
    """Return how many of the month's cases (offers) fall in each tier A-D (None without a champion)."""
    found = _month_scores(settings, spec, month, tools or Tools())
    if found is None:
        return None
    model, scores = found
    return tier_counts(model.tier(scores))


def month_expected_loss(
    settings: Settings, spec: ModelSpec, month: str, tools: Tools | None = None
) -> dict[str, float] | None:
    """Return the month's booked vintage: loans, principal and expected loss (None without a champion)."""
    found = _month_scores(settings, spec, month, tools or Tools())
    if found is None:
        return None
    model, scores = found
    decisions = read_silver(settings, "applications", [month], columns=["application_id", "decision"])
    booked = scores.merge(decisions, on="application_id")
    booked = booked[booked["decision"] == "approved"]
    return {
        "loans": float(len(booked)),
        "principal": round(float(booked["requested_amount"].sum()), 2),
        "expected_loss": round(float(model.expected_loss(booked).sum()), 2),
    }


def vintage_losses(
    settings: Settings, spec: ModelSpec, expected: dict[str, dict[str, float]], as_of: str
) -> list[dict]:
    """Return, per booked vintage with a forecast, its expected loss beside the net charge-offs realised so far.

    A vintage is mature once its whole loss window has passed by `as_of` (only then is the comparison final).
    """
    booked = booked_loans(read_silver(settings, "applications", columns=list(APPLICATION_COLUMNS)))
    losses = realised_charge_offs(settings)
    table = loss_by_vintage(
        booked, np.zeros(len(booked)), losses, month_index(as_of), strategy_label(spec).window_months
    )
    rows = []
    for row in table.to_dict("records"):
        if row["vintage"] in expected:
            rows.append(
                {
                    "vintage": row["vintage"],
                    "loans": int(row["loans"]),
                    "expected_loss": expected[row["vintage"]]["expected_loss"],
                    "realised_loss": round(float(row["realised_loss"]), 2),
                    "mature": bool(row["mature"]),
                }
            )
    return rows
