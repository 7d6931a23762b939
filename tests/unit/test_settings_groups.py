"""Settings groups: the decision API's and the production profile's fields live in typed groups, set by flat names."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from pydantic import SecretStr, ValidationError

from orchard.errors import OrchardError
from orchard.runtime import load_settings
from orchard.settings import GROUPS, ServingConfig, Settings


def test_each_group_field_is_set_by_its_flat_variable_environment_over_dotenv(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a .env file and the environment setting fields of both groups and one top-level field
    for name in [n for n in os.environ if n.startswith("ORCHARD_")]:
        monkeypatch.delenv(name)
    dotenv = tmp_path / ".env"
    dotenv.write_text("ORCHARD_API_WORKERS=3\nORCHARD_REDIS_URL=redis://from-dotenv:1/0\nORCHARD_SEED=11\n")
    monkeypatch.setenv("ORCHARD_REDIS_URL", "redis://from-env:2/0")
    monkeypatch.setenv("ORCHARD_API_KEY", "k-env")
    # When settings are read with that .env file
    settings = Settings(_env_file=dotenv)  # type: ignore[call-arg]
    # Then each value lands in its group, the environment winning over the file
    assert settings.serving.api_workers == 3 and settings.seed == 11
    assert settings.production.redis_url == "redis://from-env:2/0"
    assert settings.serving.api_key is not None and settings.serving.api_key.get_secret_value() == "k-env"
    # And a value given in code wins over both, by the same flat name, and nothing else is touched
    given = Settings(_env_file=dotenv, api_key=SecretStr("k-code"), decline_min_pd=0.4)  # type: ignore[call-arg]
    assert given.serving.api_key is not None and given.serving.api_key.get_secret_value() == "k-code"
    assert given.serving.decline_min_pd == 0.4 and given.serving.api_workers == 3
    # And without the file only the environment counts
    assert Settings(_env_file=None).serving.api_workers == 1  # type: ignore[call-arg]


def test_group_fields_are_not_top_level_and_groups_refuse_unknown_keys() -> None:
    # Each group field exists once: in its group, not on Settings itself
    for group, model in GROUPS.items():
        assert not set(model.model_fields) & set(Settings.model_fields), group
    with pytest.raises(ValidationError, match="api_kee"):
        ServingConfig(api_kee="typo")  # type: ignore[call-arg]


def test_a_bad_group_value_is_named_by_its_variable(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("ORCHARD_HOME", str(tmp_path))
    monkeypatch.setenv("ORCHARD_APPROVE_MAX_PD", "1.5")
    with pytest.raises(OrchardError, match=r"ORCHARD_APPROVE_MAX_PD: .*less than or equal to 1"):
        load_settings(_env_file=None)
    monkeypatch.setenv("ORCHARD_APPROVE_MAX_PD", "0.5")
    monkeypatch.setenv("ORCHARD_DECLINE_MIN_PD", "0.2")
    monkeypatch.setenv("ORCHARD_API_KEY", "top-secret-key")
    with pytest.raises(
        OrchardError, match=r"settings: .*approve_max_pd \(0.5\) <= decline_min_pd \(0.2\)"
    ) as bad:
        load_settings(_env_file=None)
    # And the group's other values (the API key among them) never appear in the message
    assert "top-secret-key" not in str(bad.value)


def test_list_settings_of_a_group_are_read_as_json(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    # Given the simulation's and governance's list settings in the environment, as JSON
    monkeypatch.setenv("ORCHARD_HOME", str(tmp_path))
    monkeypatch.setenv("ORCHARD_CORRUPT_BATCHES", '["repayments:2019-10"]')
    monkeypatch.setenv("ORCHARD_OVERRIDE_IDENTITIES", '["rita"]')
    monkeypatch.setenv("ORCHARD_SHOCK_MONTH", "2020-04")
    settings = load_settings(_env_file=None)
    # Then each lands in its group
    assert settings.simulation.corrupt_batches == ["repayments:2019-10"]
    assert settings.governance.override_identities == ["rita"]
    assert settings.simulation.shock_month == "2020-04"
    # And a list that is not JSON, or a batch that is not source:YYYY-MM, is named
    monkeypatch.setenv("ORCHARD_CORRUPT_BATCHES", "repayments:2019-10")
    with pytest.raises(OrchardError, match="ORCHARD_CORRUPT_BATCHES is not JSON"):
        load_settings(_env_file=None)
    monkeypatch.setenv("ORCHARD_CORRUPT_BATCHES", '["repayments"]')
    with pytest.raises(OrchardError, match=r"ORCHARD_CORRUPT_BATCHES.*'source:YYYY-MM'"):
        load_settings(_env_file=None)
    monkeypatch.setenv("ORCHARD_CORRUPT_BATCHES", "[]")
    monkeypatch.setenv("ORCHARD_SHOCK_MONTH", "2020-4")
    with pytest.raises(OrchardError, match=r"ORCHARD_SHOCK_MONTH: .*expected YYYY-MM"):
        load_settings(_env_file=None)
