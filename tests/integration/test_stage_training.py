"""The loss forecast and the pre-credit tiers trained end to end on a simulated lake (real Feast and MLflow).

The lake is filled straight from the simulator's landing files (the contracts are tested elsewhere): 8,000 users
for 18 months, enough booked loans for charge-offs (180 dpd, 6 months on book at the earliest) to mature.
"""

from __future__ import annotations

from dataclasses import replace

import pandas as pd
import pytest

from model_registry.registry import load_model
from model_registry.tracking import mlflow_client, read_run_json
from orchard.credit.stratification import TIERS
from orchard.feature_store import apply_definitions, update_offline_tables
from orchard.lake import read_silver
from orchard.lifecycle.datasets import fit_frame, model_frame, ready_vintages
from orchard.lifecycle.training import ready_to_train, train_and_register
from orchard.months import month_range
from orchard.portfolio.spec import RejectInferenceDef
from orchard.settings import Settings
from orchard.testing.demo import demo_model_with, simulated_silver

SMALL_POLICY = {"min_mature_vintages": 4, "oot_months": 1}
LOSS_FORECAST = demo_model_with("loss_forecast", policy=SMALL_POLICY)
PRECREDIT_RESPONSE = demo_model_with("precredit_response", policy=SMALL_POLICY)

pytestmark = pytest.mark.slow
AS_OF = "2020-06"


@pytest.fixture(scope="module")
def lake(tmp_path_factory: pytest.TempPathFactory) -> Settings:
    settings = Settings(
        _env_file=None,
        home=tmp_path_factory.mktemp("stages") / "orchard",
        n_users=8000,
        end_month=AS_OF,
        corrupt_batches=[],
    )
    simulated_silver(settings)
    update_offline_tables(settings)
    apply_definitions(settings)
    return settings


def _run_json(settings: Settings, name: str, version: int, artifact: str) -> dict:
    client = mlflow_client(settings)
    return read_run_json(client, client.get_model_version(name, str(version)).run_id, artifact)


def test_loss_forecast_sets_expected_beside_realised_loss(lake: Settings) -> None:
    assert ready_to_train(lake, LOSS_FORECAST, AS_OF)
    trained = train_and_register(lake, LOSS_FORECAST, AS_OF)
    model = load_model(lake, LOSS_FORECAST.name, trained.version)
    # LGD and EAD come from the development charge-offs: proper fractions
    assert 0.0 < model.lgd < 1.0 and 0.0 < model.ead_ratio <= 1.0, (model.lgd, model.ead_ratio)
    assert trained.metrics["oot_auc"] > 0.6
    by_vintage = pd.DataFrame(_run_json(lake, LOSS_FORECAST.name, trained.version, "loss_by_vintage.json"))
    mature = by_vintage[by_vintage["mature"]]
    assert len(mature) >= 5 and (mature["realised_loss"] > 0).all() and (mature["expected_loss"] > 0).all()
    # the forecast is of the right size over the matured vintages (a calibrated PD x LGD x EAD)
    ratio = mature["expected_loss"].sum() / mature["realised_loss"].sum()
    assert 0.5 < ratio < 2.0, by_vintage
    # and a booked loan's expected loss is PD x LGD x EAD x principal
    loan = pd.DataFrame([{f: 0 for f in model.features}]).assign(
        requested_amount=1000.0,
        term_months=12,
        income_declared=2500.0,
        employment_type="salaried",
        loan_purpose="consumption",
        channel="web",
        city_tier="tier1",
        device_os="ios",
    )
    expected = model.predict_pd(loan)[0] * model.lgd * model.ead_ratio * 1000.0
    assert model.expected_loss(loan)[0] == pytest.approx(expected)


def test_precredit_response_stratifies_offers_into_tiers(lake: Settings) -> None:
    trained = train_and_register(lake, PRECREDIT_RESPONSE, AS_OF)
    model = load_model(lake, PRECREDIT_RESPONSE.name, trained.version)
    tiers = _run_json(lake, PRECREDIT_RESPONSE.name, trained.version, "tiers_oot.json")
    by_tier = {row["tier"]: row for row in tiers["by_tier"]}
    assert set(by_tier) <= set(TIERS) and {"A", "D"} <= set(by_tier)
    # the axes mean what they say: tier A responds more than D, and is less risky
    assert by_tier["A"]["responded_approved"] > by_tier["D"]["responded_approved"]
    assert by_tier["A"]["mean_risk_pd"] < by_tier["D"]["mean_risk_pd"]
    assert tiers["max_pd"] == lake.serving.approve_max_pd and 0 < tiers["response_cut"] < 1
    assert model.response_cut == tiers["response_cut"]
    assert trained.metrics["oot_auc"] > 0.55


def test_every_stage_needs_both_classes_before_training(lake: Settings) -> None:
    # a lake that ends before any loan can be charged off cannot train the loss forecast
    assert not ready_to_train(lake, LOSS_FORECAST, "2019-08")


def test_reject_inference_adds_the_declined_development_cases_with_parcelled_labels(lake: Settings) -> None:
    # Given application_pd declaring reject inference by parcelling
    spec = replace(
        demo_model_with("application_pd", policy=SMALL_POLICY),
        reject_inference=RejectInferenceDef(factor=1.5),
    )
    # When it is trained
    trained = train_and_register(lake, spec, AS_OF)
    client = mlflow_client(lake)
    params = client.get_run(client.get_model_version(spec.name, str(trained.version)).run_id).data.params
    # Then every declined application of the development vintages entered training besides the booked loans
    first, last = trained.train_window.split("..")
    apps = read_silver(lake, "applications", month_range(first, last))
    declined = int((apps["decision"] == "declined").sum())
    assert declined > 100 and int(params["n_rejects_inferred"]) == declined
    booked_train = int(params["n_train"]) - declined
    assert 0 < booked_train < int((apps["decision"] == "approved").sum())
    # And the out-of-time sample the gate reads stays booked loans only
    oot = read_silver(lake, "applications", month_range(*trained.oot_window.split("..")))
    assert int(params["n_oot"]) <= int((oot["decision"] == "approved").sum())
    assert 0.6 < trained.metrics["oot_auc"] < 1.0


def test_a_training_window_fits_and_reads_only_the_latest_mature_vintages(lake: Settings) -> None:
    # Given application_fraud fitting on every mature vintage, and the same with a window of 5 (4 + 1 held out)
    # (a model no other test here registers: a version is kept per model and month)
    every = ready_vintages(lake, demo_model_with("application_fraud", policy=SMALL_POLICY), AS_OF)
    windowed = demo_model_with("application_fraud", policy={**SMALL_POLICY, "train_vintages": 5})
    assert len(every) > 5
    # Then its readiness is judged on the window: the latest 5 mature vintages
    assert ready_vintages(lake, windowed, AS_OF) == every[-5:]
    # And the frame it fits on, its cases read once while its vintages were looked for, is the frame of its months
    frame = fit_frame(lake, windowed, AS_OF)
    expected = model_frame(lake, windowed, month_range(every[-5], AS_OF), AS_OF)
    pd.testing.assert_frame_equal(frame.frame, expected.frame)
    assert frame.data_sha256 == expected.data_sha256 and frame.batch_ids == expected.batch_ids
    # When it is trained
    trained = train_and_register(lake, windowed, AS_OF)
    # Then it develops on the window's first 4 vintages and holds out the last
    assert trained.train_window == f"{every[-5]}..{every[-2]}"
    assert trained.oot_window == f"{every[-1]}..{every[-1]}"
    # And its lineage names no batch before the window: nothing older was read
    lineage = _run_json(lake, windowed.name, trained.version, "lineage.json")
    months = sorted(b[-7:] for b in lineage["batch_ids"])
    assert months[0] == every[-5] and months[-1] == AS_OF, months
