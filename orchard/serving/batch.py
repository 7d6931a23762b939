"""Batch scoring: a month's population scored through the same scoring code as the API, written with the version."""

from __future__ import annotations

import logging
from pathlib import Path

import pandas as pd

from orchard.atomic import write_parquet
from orchard.credit.reason_codes import TOP_REASONS
from orchard.lifecycle.datasets import model_frame
from orchard.lifecycle.tools import Tools
from orchard.model_specs import ModelSpec
from orchard.months import parse_month
from orchard.partitions import map_entity_partitions
from orchard.serving.scoring import ServedModel, score_frame
from orchard.settings import Settings

log = logging.getLogger(__name__)

KEYS = ("application_id", "user_id")


def scores_path(settings: Settings, model: str, month: str) -> Path:
    """Return where a month's batch scores of a model live (read by monitoring)."""
    return settings.scores_dir / model / f"{month}.parquet"


def batch_scores(
    served: ServedModel, frame: pd.DataFrame, keys: tuple[str, ...] = KEYS, *, with_reasons: bool = True
) -> pd.DataFrame:
    """Return keys, features, pd, score, band, top reason codes and the model version of every row."""
    scored = score_frame(served, frame, with_reasons=with_reasons)
    present = [k for k in dict.fromkeys(keys) if k in frame.columns]
    out = frame[[*present, *served.features]].reset_index(drop=True).copy()
    out["pd"] = scored.pd
    out["score"] = scored.score
    out["band"] = scored.band.astype(str)
    for i in range(TOP_REASONS):
        out[f"reason_code_{i + 1}"] = [r[i]["code"] if len(r) > i else None for r in scored.reasons]
    out["model"] = served.name
    out["model_version"] = served.version
    return out


def _score_part(
    frame: pd.DataFrame, served: ServedModel, keys: tuple[str, ...], with_reasons: bool
) -> pd.DataFrame:
    """batch_scores of one entity partition (a Dask task)."""
    return batch_scores(served, frame, keys, with_reasons=with_reasons)


def score_month(
    settings: Settings,
    spec: ModelSpec,
    month: str,
    served: ServedModel,
    *,
    with_reasons: bool = True,
    tools: Tools | None = None,
) -> pd.DataFrame:
    """Score a month's cases (point-in-time features) with a served model; write them atomically."""
    month = parse_month(month)
    tools = tools or Tools()
    frame = model_frame(settings, spec, [month], month, with_labels=False, tools=tools).frame
    keys = (spec.key, spec.entity, *KEYS)
    cluster = tools.cluster(settings)
    if cluster is None:
        scores = batch_scores(served, frame, keys, with_reasons=with_reasons)
    else:  # each entity partition scored by a worker (reason codes are the costly part)
        scores = map_entity_partitions(cluster, _score_part, frame, spec.entity, served, keys, with_reasons)
    write_parquet(scores, scores_path(settings, spec.name, month))
    log.info("scored %d %s cases of %s with v%s", len(scores), spec.name, month, served.version)
    return scores
