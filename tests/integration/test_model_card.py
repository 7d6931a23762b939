"""Integration tests of model cards: the card's content, and logging it to a real MLflow run."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from model_registry.lineage import Lineage
from model_registry.model_card import CARD_TAG, ModelCard, build_model_card, log_model_card
from model_registry.registry import register_model
from model_registry.tracking import mlflow_client
from orchard.credit.metrics import evaluate
from orchard.credit.model import CreditModel, train_lightgbm
from orchard.credit.scorecard import train_scorecard
from orchard.errors import OrchardError
from orchard.settings import Settings
from tests.conftest import GERMAN_CREDIT

FEATURES = ["status_of_existing_checking_account", "duration_in_month", "credit_history", "credit_amount"]
CATEGORICAL = ["status_of_existing_checking_account", "credit_history"]


@pytest.fixture(scope="module")
def data() -> pd.DataFrame:
    frame = pd.read_csv(GERMAN_CREDIT)
    return frame.assign(bad=(frame["creditability"] == "bad").astype(int))


@pytest.fixture(scope="module")
def scorecard(data: pd.DataFrame) -> CreditModel:
    return train_scorecard(data.iloc[:700], "bad", FEATURES, CATEGORICAL, seed=7, name="german_scorecard")


def _card(model: CreditModel, data: pd.DataFrame, version: int | None = None) -> ModelCard:
    train, test = data.iloc[:700], data.iloc[700:]
    return build_model_card(
        name=model.name,
        version=version,
        model=model,
        purpose="PD of a German credit application <test>",
        population="1,000 applications",
        label="creditability == bad",
        maturity="final",
        data_window="whole file",
        lineage={"data_sha256": "abc"},
        performance={
            "train": evaluate(train["bad"], model.predict_pd(train)),
            "test": evaluate(test["bad"], model.predict_pd(test)),
        },
        stability={"score": 0.012},
        limitations=["small sample"],
        approval_status="pending",
    )


def test_scorecard_card_holds_every_section_and_the_points_table(
    scorecard: CreditModel, data: pd.DataFrame
) -> None:
    card = _card(scorecard, data)
    markdown = card.to_markdown()
    for heading in (
        "Purpose",
        "Population",
        "Label and maturity",
        "Data window and lineage",
        "Features",
        "Points table",
        "Score bands",
        "Performance",
        "Stability",
        "Limitations",
        "Approval status",
    ):
        assert f"## {heading}" in markdown, f"section {heading} present"
    assert card.points_table is not None and len(card.points_table) > len(FEATURES)
    assert set(card.features["feature"]) == set(FEATURES) and card.features["iv"].notna().all()
    assert list(card.performance["sample"]) == ["train", "test"]
    page = card.to_html()
    assert "&lt;test&gt;" in page and "<test>" not in page, "HTML escapes the text"
    assert page.count("<table") >= 4


def test_lightgbm_card_has_no_points_table(data: pd.DataFrame) -> None:
    model = train_lightgbm(data.iloc[:700], "bad", FEATURES, CATEGORICAL, seed=7)
    card = _card(model, data)
    assert card.points_table is None and "## Points table" not in card.to_markdown()


def test_card_needs_performance_and_a_known_status(scorecard: CreditModel) -> None:
    with pytest.raises(OrchardError, match="at least one sample"):
        build_model_card(
            name="m",
            version=1,
            model=scorecard,
            purpose="p",
            population="p",
            label="l",
            maturity="m",
            data_window="w",
            lineage={},
            performance={},
        )


def test_log_model_card_attaches_both_files_to_the_version_run(
    settings: Settings, scorecard: CreditModel, data: pd.DataFrame
) -> None:
    # Given a registered scorecard version
    lineage = Lineage(
        batch_ids=["b1"],
        data_sha256="0" * 64,
        validation_ids=["b1:passed"],
        feature_service="test",
        code_version="0",
        train_window="all",
    )
    ref = register_model(
        settings,
        scorecard.name,
        scorecard,
        train_key="t1",
        metrics={"auc": 0.7},
        params={"kind": "scorecard"},
        lineage=lineage,
        input_example=data.head(5),
    )
    card = _card(scorecard, data, ref.version)
    # When its card is logged
    paths = log_model_card(settings, scorecard.name, ref.version, card)
    # Then the run holds the Markdown and HTML and the version is tagged with the card's path
    client = mlflow_client(settings)
    markdown = Path(client.download_artifacts(ref.run_id, paths["markdown"])).read_text()
    assert markdown == card.to_markdown()
    html = Path(client.download_artifacts(ref.run_id, paths["html"])).read_text()
    assert html.startswith("<!DOCTYPE html>")
    assert client.get_model_version(scorecard.name, str(ref.version)).tags[CARD_TAG] == paths["markdown"]
    with pytest.raises(OrchardError, match="no version 9"):
        log_model_card(settings, scorecard.name, 9, card)
    assert np.isfinite(scorecard.predict_pd(data.head(3))).all()
