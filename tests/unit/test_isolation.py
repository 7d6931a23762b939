"""The tests run on the settings they state: none of the developer's ORCHARD_* variables reach them."""

from __future__ import annotations

import os


def test_no_developer_setting_reaches_a_test() -> None:
    # conftest's _no_developer_settings removed every ORCHARD_* variable for the session
    leaked = sorted(name for name in os.environ if name.startswith("ORCHARD_"))
    assert leaked == [], f"the developer's settings reached the tests: {leaked}"
