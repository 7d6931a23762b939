"""The session's serving home for the serving tests (built by orchard.testing.serving_home)."""

from __future__ import annotations

import pytest

from orchard.settings import Settings
from orchard.testing.serving_home import build_serving_home, serving_settings, tool_env


@pytest.fixture(scope="session", name="serving_home")
def serving_home_fixture(tmp_path_factory: pytest.TempPathFactory) -> tuple[Settings, dict[str, list[int]]]:
    """The session's serving home (built once, reused by every serving test module)."""
    home = tmp_path_factory.getbasetemp() / "serving_home"
    settings = serving_settings(home)
    with tool_env(settings):
        return build_serving_home(home)
