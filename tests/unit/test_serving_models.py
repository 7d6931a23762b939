"""The champion cache: an alias move swaps one immutable snapshot; nothing reloads when nothing moved."""

from __future__ import annotations

import pytest

from orchard.errors import OrchardError
from orchard.serving.models import ChampionCache
from orchard.serving.scoring import ServedModel
from orchard.settings import Settings
from tests.conftest import make_settings


class _Toy:
    features = ("x",)

    def predict_pd(self, frame):  # pragma: no cover - never scored here
        raise AssertionError

    def score(self, frame):  # pragma: no cover
        raise AssertionError


class _Registry:
    """A stand-in alias table and loader that counts loads (the real MLflow path is in integration tests)."""

    def __init__(self) -> None:
        self.aliases: dict[str, int | None] = {"a": 1, "b": None}
        self.loads: list[tuple[str, int]] = []

    def resolve(self, settings: Settings, name: str) -> int | None:
        return self.aliases[name]

    def load(self, settings: Settings, name: str, version: int) -> ServedModel:
        self.loads.append((name, version))
        return ServedModel(name=name, version=version, model=_Toy())  # type: ignore[arg-type]


@pytest.fixture
def registry() -> _Registry:
    return _Registry()


@pytest.fixture
def cache(tmp_path, registry: _Registry) -> ChampionCache:
    return ChampionCache(
        make_settings(tmp_path), ["a", "b"], 60.0, resolver=registry.resolve, loader=registry.load
    )


def test_alias_move_swaps_the_snapshot_and_old_snapshots_stay_intact(
    cache: ChampionCache, registry: _Registry
) -> None:
    # Given champions loaded once
    assert cache.refresh() is True
    before = cache.snapshot()
    assert before.versions == {"a": 1} and before.get("b") is None
    # When the alias of a moves and b gets a champion
    registry.aliases.update(a=2, b=5)
    assert cache.refresh() is True
    # Then the new snapshot has both new versions, and the snapshot a request already holds is unchanged
    assert cache.snapshot().versions == {"a": 2, "b": 5}
    assert before.versions == {"a": 1}, "a taken snapshot must never change under a request"
    with pytest.raises(TypeError):
        before.models["a"] = before.models["a"]  # type: ignore[index]


def test_nothing_reloads_when_no_alias_moved_and_moving_back_reuses_the_load(
    cache: ChampionCache, registry: _Registry
) -> None:
    cache.refresh()
    # When nothing moved
    assert cache.refresh() is False
    # And a moves to 2 and back to 1
    registry.aliases["a"] = 2
    cache.refresh()
    registry.aliases["a"] = 1
    cache.refresh()
    # Then each version was loaded exactly once
    assert registry.loads == [("a", 1), ("a", 2)], registry.loads


def test_a_failing_load_keeps_serving_the_previous_champions(
    cache: ChampionCache, registry: _Registry
) -> None:
    cache.refresh()

    def broken(settings, name, version):
        raise OrchardError("artifact store down")

    cache._load = broken  # the only way to break a load without a real registry
    registry.aliases["a"] = 9
    # When the refresh fails
    with pytest.raises(OrchardError):
        cache.refresh()
    # Then the snapshot is still the previous one
    assert cache.snapshot().versions == {"a": 1}


def test_build_refuses_an_object_that_cannot_score() -> None:
    with pytest.raises(OrchardError, match="lacks"):
        ServedModel.build("m", 1, object())  # type: ignore[arg-type]
