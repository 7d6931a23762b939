"""The monitoring reference of a trained version: its scored development sample, kept under home."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from orchard.atomic import write_parquet
from orchard.errors import OrchardError
from orchard.model_specs import ModelSpec
from orchard.settings import Settings


def reference_columns(spec: ModelSpec, used: list[str]) -> tuple[list[str], list[str]]:
    """Return (numeric, categorical) columns monitored for a model: the features it uses and its score.

    `used` is the fitted model's own feature list: a scorecard may leave out a feature without information,
    whose drift cannot move the score.
    """
    fitted = set(used)
    kept = [f for f in spec.features if f in fitted]
    categorical = [f for f in kept if f in spec.categorical]
    numeric = [f for f in kept if f not in categorical] + ["score"]
    return numeric, categorical


def reference_path(settings: Settings, model: str, key: str) -> Path:
    """Return where the scored development sample of a training run is kept."""
    safe = key.replace("@", "_").replace("/", "_")
    return settings.references_dir / model / f"{safe}.parquet"


def save_reference_sample(settings: Settings, model: str, key: str, sample: pd.DataFrame) -> Path:
    """Write the scored development sample atomically (Evidently compares each month against it)."""
    return write_parquet(sample.reset_index(drop=True), reference_path(settings, model, key))


def load_reference_sample(settings: Settings, model: str, key: str) -> pd.DataFrame:
    """Read a version's reference sample, or raise a clear error if it is missing."""
    path = reference_path(settings, model, key)
    if not path.exists():
        raise OrchardError(f"reference sample of {model} ({key}) is missing at {path}")
    return pd.read_parquet(path)


def profile_path(settings: Settings, model: str, key: str) -> Path:
    """Return where the frozen PSI bins of a training run are kept (also logged with the model)."""
    return reference_path(settings, model, key).with_suffix(".profile.json")
