"""Integration tests of bring-your-own-data: German credit end to end, and bad input that registers nothing."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from model_registry.registry import load_model
from model_registry.tracking import mlflow_client
from orchard.byod import format_byod_result, run_byod
from orchard.errors import OrchardError
from orchard.settings import Settings
from tests.conftest import GERMAN_CREDIT, REPO_ROOT

EXAMPLE = REPO_ROOT / "examples" / "german_credit.yaml"


def _registered(settings: Settings) -> list[str]:
    return [m.name for m in mlflow_client(settings).search_registered_models()]


@pytest.mark.slow
def test_german_credit_example_trains_registers_and_reports(settings: Settings) -> None:
    # Given the shipped example spec / When BYOD runs
    result = run_byod(settings, EXAMPLE)
    # Then both models are registered, the scorecard ranks out of sample, and the card holds the points table
    assert set(_registered(settings)) == {"byod_german_credit_scorecard", "byod_german_credit_lightgbm"}
    oot_auc = result.evaluations["scorecard"]["oot"]["auc"]
    assert oot_auc >= 0.75, f"scorecard out-of-sample AUC {oot_auc:.3f}"
    assert "personal_status_and_sex" not in result.candidates, "dropped columns are never features"
    client = mlflow_client(settings)
    version = client.get_model_version("byod_german_credit_scorecard", "1")
    card = Path(client.download_artifacts(version.run_id, "model_card/model_card.md")).read_text()
    assert "## Points table" in card and result.selected[0] in card, "the card shows the points table"
    model = load_model(settings, "byod_german_credit_scorecard", 1)
    sample = pd.read_csv(GERMAN_CREDIT).head(20)
    assert np.isfinite(model.predict_pd(sample)).all(), "the registered scorecard scores the raw file"
    assert "registered: byod_german_credit_scorecard v1" in format_byod_result(result)
    # And a rerun of the same spec and data registers nothing new
    again = run_byod(settings, EXAMPLE)
    assert again.registered == result.registered, "idempotent by data and spec hash"


def _spec(tmp_path: Path, frame: pd.DataFrame | None, **overrides: object) -> Path:
    data = tmp_path / "data.csv"
    if frame is not None:
        frame.to_csv(data, index=False)
    else:
        data.write_text("")
    spec = {
        "name": "toy",
        "data": "data.csv",
        "target": "status",
        "bad_value": "bad",
        "id_column": "id",
        "event_time": "applied_at",
        "oot": {"fraction": 0.3},
    }
    spec.update(overrides)
    path = tmp_path / "spec.yaml"
    path.write_text(yaml.safe_dump(spec))
    return path


def _toy(n: int = 400, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=n)
    bad = rng.random(n) < 1 / (1 + np.exp(-(x - 1)))
    return pd.DataFrame(
        {
            "id": np.arange(n),
            "applied_at": pd.date_range("2020-01-01", periods=n, freq="D").strftime("%Y-%m-%d"),
            "x": x,
            "city": rng.choice(["a", "b"], n),
            "status": np.where(bad, "bad", "good"),
        }
    )


@pytest.mark.parametrize(
    ("frame", "overrides", "match"),
    [
        (_toy().drop(columns="status"), {}, "'status' \\(spec key target\\)"),
        (_toy().assign(status="good"), {}, "target column 'status'"),
        (_toy().assign(id=lambda d: d["id"] % 390), {}, "id column 'id' has 20 duplicated"),
        (
            _toy().assign(applied_at=lambda d: d["applied_at"].where(d.index != 5, "not a date")),
            {},
            "event_time column 'applied_at' has 1 unparsable",
        ),
        (None, {}, "is empty"),
        (_toy(), {"targte": "status"}, "unknown key 'targte'"),
        (_toy(), {"oot": {"fraction": 0.3, "cutof": "2020-06-01"}}, "unknown key 'oot.cutof'"),
        (_toy(), {"categorical": ["town"]}, "'town' \\(spec key categorical\\)"),
    ],
    ids=[
        "missing-target",
        "one-class",
        "duplicated-ids",
        "bad-time",
        "empty-file",
        "misspelt-key",
        "misspelt-nested-key",
        "unknown-column",
    ],
)
def test_bad_input_is_named_and_registers_nothing(
    settings: Settings, tmp_path: Path, frame: pd.DataFrame | None, overrides: dict[str, object], match: str
) -> None:
    # Given a broken dataset or spec / When BYOD runs / Then one clear error names the problem
    spec = _spec(tmp_path, frame, **overrides)
    with pytest.raises(OrchardError, match=match):
        run_byod(settings, spec)
    # And nothing reached the registry
    assert _registered(settings) == [], "bad input registers no model"


def test_time_split_puts_the_latest_rows_out_of_time(settings: Settings, tmp_path: Path) -> None:
    from orchard.byod import prepare_data
    from orchard.byod_spec import load_spec

    spec_path = _spec(tmp_path, _toy(), oot={"cutoff": "2020-11-01"})
    data = prepare_data(settings, load_spec(spec_path), spec_path)
    assert data.oot["applied_at"].min() >= pd.Timestamp("2020-11-01", tz="UTC")
    assert data.train["applied_at"].max() < pd.Timestamp("2020-11-01", tz="UTC")
    assert "city" in data.categorical, "text columns are categorical"
    assert _registered(settings) == []


def _write(frame: pd.DataFrame, path: Path) -> None:
    if path.suffix == ".parquet":
        frame.to_parquet(path, index=False)
    else:
        frame.to_csv(path, index=False)


def _timed_spec(tmp_path: Path, frame: pd.DataFrame, suffix: str, **overrides: object) -> Path:
    data = tmp_path / f"data{suffix}"
    _write(frame, data)
    spec = {
        "name": "toy",
        "data": data.name,
        "target": "status",
        "bad_value": "bad",
        "id_column": "id",
        "event_time": "applied_at",
        "oot": {"cutoff": "2020-11-01"},
        **overrides,
    }
    path = tmp_path / "spec.yaml"
    path.write_text(yaml.safe_dump(spec))
    return path


@pytest.mark.parametrize("suffix", [".csv", ".parquet"])
@pytest.mark.parametrize(
    "times",
    [
        pd.date_range("2020-01-01", periods=400, freq="D"),  # naive datetimes (a Parquet timestamp column)
        pd.date_range("2020-01-01", periods=400, freq="D", tz="Europe/Berlin"),  # zoned
        pd.date_range("2020-01-01", periods=400, freq="D", tz="UTC"),
    ],
    ids=["naive", "zoned-berlin", "zoned-utc"],
)
def test_naive_and_zoned_times_split_out_of_time(
    settings: Settings, tmp_path: Path, suffix: str, times: pd.DatetimeIndex
) -> None:
    from orchard.byod import prepare_data
    from orchard.byod_spec import load_spec

    # Given a file whose event time is a datetime column, naive or zoned, in CSV or Parquet
    spec_path = _timed_spec(tmp_path, _toy().assign(applied_at=times), suffix)
    # When the data is prepared with a cut-off date / Then the split is made on UTC times
    data = prepare_data(settings, load_spec(spec_path), spec_path)
    cutoff = pd.Timestamp("2020-11-01", tz="UTC")  # the spec's default timezone is UTC
    assert str(data.frame["applied_at"].dt.tz) == "UTC"
    assert data.oot["applied_at"].min() >= cutoff
    assert data.train["applied_at"].max() < cutoff
    utc_times = times.tz_localize("UTC") if times.tz is None else times.tz_convert("UTC")
    assert len(data.oot) == (utc_times >= cutoff).sum()


@pytest.mark.parametrize("suffix", [".csv", ".parquet"])
def test_naive_times_are_read_in_the_spec_timezone(settings: Settings, tmp_path: Path, suffix: str) -> None:
    from orchard.byod import prepare_data
    from orchard.byod_spec import load_spec

    # Given naive local times of a lender in Berlin, half an hour past midnight each day
    times = pd.date_range("2020-01-01 00:30", periods=400, freq="D")
    spec_path = _timed_spec(tmp_path, _toy().assign(applied_at=times), suffix, timezone="Europe/Berlin")
    # When prepared with timezone Europe/Berlin
    data = prepare_data(settings, load_spec(spec_path), spec_path)
    # Then 2020-11-01 00:30 Berlin is 2020-10-31 23:30 UTC, and it falls on or after the Berlin cut-off date
    first_oot = data.oot["applied_at"].min()
    assert first_oot == pd.Timestamp("2020-10-31 23:30", tz="UTC")
    assert data.train["applied_at"].max() == pd.Timestamp("2020-10-30 23:30", tz="UTC")


def test_unknown_timezone_is_named(tmp_path: Path) -> None:
    from orchard.byod_spec import load_spec

    spec_path = _timed_spec(tmp_path, _toy(), ".csv", timezone="Europe/Atlantis")
    with pytest.raises(OrchardError, match=r"timezone: .*Europe/Atlantis"):
        load_spec(spec_path)
