"""Entry point for the Feast CLI only: exposes Orchard's definitions as module-level objects.

The Feast CLI discovers objects by importing every module of this folder, so this module (and only this
one) builds them at import time, for the settings of the environment (ORCHARD_HOME, default ../.orchard).
Orchard's code never imports it; it calls feature_repo.definitions.definitions(settings) instead.
"""

from __future__ import annotations

from pathlib import Path

from feature_repo.definitions import definitions
from orchard.settings import Settings

_settings = Settings()
if not _settings.home.is_absolute():
    # the CLI's relative state folder is the repository root's, as in feature_store.yaml
    _settings = _settings.model_copy(update={"home": Path(__file__).resolve().parents[1] / _settings.home})

for _obj in definitions(_settings):
    globals()[f"{type(_obj).__name__.lower()}_{_obj.name}"] = _obj
