"""The champion cache: loaded champions as one immutable snapshot, swapped atomically when an alias moves."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

from model_registry.registry import champion_version, load_model
from orchard.errors import OrchardError
from orchard.serving.scoring import ServedModel
from orchard.settings import Settings

log = logging.getLogger(__name__)

_LOADED_KEEP = 8  # loaded versions kept around, so an alias moving back and forth reloads nothing


@dataclass(frozen=True)
class ModelSet:
    """The champions serving at one moment: a request takes one snapshot and uses only it."""

    models: Mapping[str, ServedModel] = field(default_factory=lambda: MappingProxyType({}))

    def get(self, name: str) -> ServedModel | None:
        """Return the served champion of a model, or None if it has none."""
        return self.models.get(name)

    @property
    def versions(self) -> dict[str, int]:
        """Return the champion version of every served model."""
        return {name: served.version for name, served in self.models.items()}


def load_served(settings: Settings, name: str, version: int) -> ServedModel:
    """Load one registered model version from MLflow and prepare it for scoring."""
    return ServedModel.build(name, version, load_model(settings, name, version))


Resolver = Callable[[Settings, str], int | None]
Loader = Callable[[Settings, str, int], ServedModel]


class ChampionCache:
    """Watch the champion alias of some models; serve their loaded champions as an immutable ModelSet."""

    def __init__(
        self,
        settings: Settings,
        names: Iterable[str],
        poll_seconds: float,
        *,
        resolver: Resolver = champion_version,
        loader: Loader = load_served,
    ) -> None:
        self._settings = settings
        self._names = tuple(names)
        self._poll_seconds = poll_seconds
        self._resolve = resolver
        self._load = loader
        self._current = ModelSet()
        self._loaded: dict[tuple[str, int], ServedModel] = {}
        self._refresh_lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def snapshot(self) -> ModelSet:
        """Return the current champions (one reference read: atomic, never half-swapped)."""
        return self._current

    def _served(self, name: str, version: int) -> ServedModel:
        key = (name, version)
        if key not in self._loaded:
            self._loaded[key] = self._load(self._settings, name, version)
            while len(self._loaded) > _LOADED_KEEP:
                self._loaded.pop(next(iter(self._loaded)))
        return self._loaded[key]

    def refresh(self) -> bool:
        """Look the aliases up; if any moved, load the new versions and swap the snapshot. Return if swapped."""
        with self._refresh_lock:
            current = self._current
            wanted = {name: self._resolve(self._settings, name) for name in self._names}
            if wanted == {n: current.versions.get(n) for n in self._names}:
                return False
            # load everything first, swap once: a request sees either the old set or the new one
            models = {name: self._served(name, v) for name, v in wanted.items() if v is not None}
            self._current = ModelSet(MappingProxyType(models))
            log.info("champions now %s (were %s)", self._current.versions, current.versions)
            return True

    def _watch(self) -> None:
        while not self._stop.wait(self._poll_seconds):
            try:
                self.refresh()
            except (OrchardError, OSError, RuntimeError) as exc:
                log.warning("champion refresh failed, serving the previous champions: %s", exc)
            except Exception:
                log.exception("champion refresh failed, serving the previous champions")

    def start(self) -> None:
        """Load the champions now and start watching their aliases in a background thread."""
        self.refresh()
        if self._thread is None:
            self._stop.clear()
            self._thread = threading.Thread(target=self._watch, name="champion-watch", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        """Stop watching (the current snapshot stays usable)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
            self._thread = None
