"""The decision API on a real lifecycle home: auth, validation, decisions, scores, the log, batch == online."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from fastapi.testclient import TestClient

from model_registry.registry import champion_version
from orchard.errors import OrchardError
from orchard.feature_store import open_store
from orchard.serving.app import create_app
from orchard.serving.batch import batch_scores, scores_path
from orchard.serving.decision_log import ParquetDecisionSink, decision_inputs, find_decision
from orchard.serving.models import load_served
from orchard.serving.online import OnlineFeatureReader
from orchard.settings import Settings
from orchard.testing.demo import demo_model, demo_source, served_models
from orchard.testing.serving_home import HEADERS, applications, promote, serving_config
from tests.decision_records import decision_record
from tests.integration.serving_home import serving_home_fixture  # noqa: F401  (registers the fixture)

APPLICATIONS = demo_source("applications")
APPLICATION_PD = demo_model("application_pd")
APPLICATION_FRAUD = demo_model("application_fraud")
SERVED_SPECS = served_models()

pytestmark = pytest.mark.slow  # the shared lifecycle home takes ~2 minutes to build once per session

DECIDE = "/v1/decisions/application"
PD_VERSION = 1
"""The application_pd version the module serves (the first of the serving home)."""


@pytest.fixture(scope="module")
def home(serving_home: tuple[Settings, dict[str, list[int]]]) -> Settings:
    settings, versions = serving_home
    promote(settings, APPLICATION_PD.name, PD_VERSION, "2019-06")
    assert versions[APPLICATION_PD.name][0] == PD_VERSION
    return settings


@pytest.fixture(scope="module")
def fraud_version(serving_home: tuple[Settings, dict[str, list[int]]]) -> int:
    return serving_home[1][APPLICATION_FRAUD.name][0]


@pytest.fixture(scope="module")
def client(home: Settings):
    with TestClient(create_app(home, config=serving_config())) as test_client:
        yield test_client


@pytest.fixture(scope="module")
def bodies(home: Settings) -> list[dict[str, object]]:
    return applications(home, n=12)


def test_health_and_ready_need_no_key_everything_else_does(client: TestClient, bodies: list[dict]) -> None:
    # Given the running API
    # When health and readiness are asked without a key
    health, ready = client.get("/health"), client.get("/ready")
    # Then both answer, and readiness names the loaded champions
    assert health.status_code == 200 and health.json() == {"status": "ok"}
    assert ready.status_code == 200, ready.text
    assert ready.json()["model_versions"]["application_pd"] == PD_VERSION, ready.json()
    # And every other route refuses a missing or wrong key with 401 naming the header
    for headers in ({}, {"X-API-Key": "wrong"}):
        for response in (
            client.post(DECIDE, json=bodies[0], headers=headers),
            client.post("/v1/scores/application_pd", json={"customer_id": "x"}, headers=headers),
            client.get("/openapi.json", headers=headers),
            client.get("/docs", headers=headers),
        ):
            assert response.status_code == 401, (response.request.url, response.status_code)
            assert "X-API-Key" in response.json()["error"], response.json()
    assert client.get("/openapi.json", headers=HEADERS).status_code == 200


def test_a_known_customer_gets_a_full_decision(
    client: TestClient, bodies: list[dict], fraud_version: int
) -> None:
    # Given a real applicant of the last month
    # When the application is decided
    response = client.post(DECIDE, json=bodies[0], headers=HEADERS)
    # Then the decision carries PD, score, band, up to 4 reasons, both versions and freshness
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["decision"] in {"approve", "decline", "refer"}
    assert 0.0 < body["pd"] < 1.0 and body["band"] in "ABCDE" and body["fraud_pd"] is not None
    assert 1 <= len(body["reasons"]) <= 4 and all(r["code"].startswith("RC_") for r in body["reasons"])
    losses = [r["points_lost"] for r in body["reasons"]]
    assert losses == sorted(losses, reverse=True), f"reasons must come largest first: {losses}"
    assert body["model_versions"] == {"application_pd": PD_VERSION, "application_fraud": fraud_version}, body[
        "model_versions"
    ]
    assert body["feature_freshness"]["partner_activity"]["found"] is True, body["feature_freshness"]
    assert body["notes"] == [], body["notes"]


def test_unknown_customer_is_referred_with_a_reason_code(client: TestClient, bodies: list[dict]) -> None:
    # Given an application from a customer the online store has never seen
    application = {**bodies[0], "customer_id": "NOT_A_CUSTOMER"}
    # When it is decided
    response = client.post(DECIDE, json=application, headers=HEADERS)
    # Then it is referred (not a 4xx/5xx) with RC_UNKNOWN_CUSTOMER and no score
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["decision"] == "refer" and body["pd"] is None, body
    assert [r["code"] for r in body["reasons"]] == ["RC_UNKNOWN_CUSTOMER"], body["reasons"]


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"requested_amount": None}, "requested_amount"),
        ({"requested_amount": "5000"}, "requested_amount"),
        ({"requested_amount": APPLICATIONS.column("requested_amount").max_value + 1}, "requested_amount"),
        ({"term_months": 2}, "term_months"),
        ({"term_months": 12.5}, "term_months"),
        ({"income_declared": -1.0}, "income_declared"),
        ({"employment_type": "astronaut"}, "employment_type"),
        ({"channel": 3}, "channel"),
        ({"customer_id": "bad id with spaces"}, "customer_id"),
        ({"customer_id": "x" * 65}, "customer_id"),
        ({"surprise": 1}, "surprise"),
    ],
)
def test_bad_input_gets_422_naming_the_field(
    client: TestClient, bodies: list[dict], change: dict, field: str
) -> None:
    # Given an application with one bad field
    application = {**bodies[0], **change}
    # When it is sent
    response = client.post(DECIDE, json=application, headers=HEADERS)
    # Then it is refused with 422 and the message names that field
    assert response.status_code == 422, (change, response.status_code, response.text)
    assert field in response.json()["error"], response.json()
    assert field in [e["field"] for e in response.json()["errors"]], response.json()


def test_missing_field_and_broken_json_are_4xx(client: TestClient, bodies: list[dict]) -> None:
    # Given an application without its term, and a body that is not JSON
    missing = {k: v for k, v in bodies[0].items() if k != "term_months"}
    # When they are sent
    first = client.post(DECIDE, json=missing, headers=HEADERS)
    second = client.post(
        DECIDE, content=b"{not json", headers={**HEADERS, "content-type": "application/json"}
    )
    # Then both are 422, naming the field and the body
    assert first.status_code == 422 and "term_months" in first.json()["error"], first.text
    assert second.status_code == 422 and second.json()["errors"][0]["field"] == "body", second.text


def test_oversize_body_is_413_declared_or_streamed(client: TestClient) -> None:
    # Given a body larger than max_body_bytes, sent with a length and streamed in chunks
    big = b'{"customer_id": "' + b"x" * 20_000 + b'"}'

    def chunks():
        yield big[:10_000]
        yield big[10_000:]

    headers = {**HEADERS, "content-type": "application/json"}
    # When they are sent
    declared = client.post(DECIDE, content=big, headers=headers)
    streamed = client.post(DECIDE, content=chunks(), headers=headers)
    # Then both get 413 naming the limit
    for response in (declared, streamed):
        assert response.status_code == 413, response.text
        assert "max_body_bytes" in response.json()["error"], response.json()


def test_scores_route_serves_every_served_model(
    client: TestClient, home: Settings, bodies: list[dict]
) -> None:
    # Given a customer and the request fields of the application models
    fields = {k: v for k, v in bodies[1].items() if k != "customer_id"}
    for model in SERVED_SPECS:
        # When each model scores the customer
        response = client.post(
            f"/v1/scores/{model}",
            json={"customer_id": bodies[1]["customer_id"], "fields": fields},
            headers=HEADERS,
        )
        # Then it answers with its champion's version
        assert response.status_code == 200, (model, response.text)
        champion = champion_version(home, model)
        assert response.json()["model"] == model and response.json()["version"] == champion, response.json()
    # And an unknown model, an unknown customer and a bad field are 4xx naming what is wrong
    unknown_model = client.post(
        "/v1/scores/nope", json={"customer_id": "x", "fields": fields}, headers=HEADERS
    )
    assert unknown_model.status_code == 404 and "nope" in unknown_model.json()["error"]
    unknown_customer = client.post(
        "/v1/scores/application_pd", json={"customer_id": "NOBODY", "fields": fields}, headers=HEADERS
    )
    assert unknown_customer.status_code == 404 and "customer_id" in unknown_customer.json()["error"]
    bad = client.post(
        "/v1/scores/application_pd",
        json={"customer_id": bodies[1]["customer_id"], "fields": {**fields, "term_months": 999}},
        headers=HEADERS,
    )
    assert bad.status_code == 422 and "fields.term_months" in bad.json()["error"], bad.text


def test_online_and_batch_scores_are_identical_for_the_same_inputs(
    client: TestClient, home: Settings, bodies: list[dict]
) -> None:
    # Given the same customers' online features + request fields, as a batch frame
    reader = OnlineFeatureReader(open_store(home), APPLICATION_PD.feature_service)
    rows = []
    for body in bodies:
        row = reader.read(body["customer_id"])
        assert row.known, f"{body['customer_id']} should be in the online store"
        rows.append({**row.values, **{k: v for k, v in body.items() if k != "customer_id"}})
    frame = pd.DataFrame(rows)
    # When the batch path scores the frame and the API decides each application
    batch = batch_scores(load_served(home, APPLICATION_PD.name, PD_VERSION), frame)
    online = [client.post(DECIDE, json=body, headers=HEADERS).json() for body in bodies]
    # Then PD, score, band and reason codes are exactly equal
    assert batch["pd"].tolist() == [o["pd"] for o in online]
    assert batch["score"].tolist() == [o["score"] for o in online]
    assert batch["band"].tolist() == [o["band"] for o in online]
    for i, o in enumerate(online):
        codes = [r["code"] for r in o["reasons"] if r["code"] != "RC_FRAUD_SUSPECTED"]
        expected = [c for c in batch.loc[i, [f"reason_code_{k}" for k in range(1, 5)]] if c is not None]
        assert codes == expected[: len(codes)], (i, codes, expected)
    assert (batch["model_version"] == PD_VERSION).all()


def test_every_decision_is_logged_with_inputs_and_versions(
    client: TestClient, home: Settings, bodies: list[dict]
) -> None:
    # Given a decision made by the API
    decided = client.post(DECIDE, json=bodies[2], headers=HEADERS).json()
    # Then it is already in the log when the answer arrives (group commit before the response), and holds the inputs the model saw, the versions and the same result
    record = find_decision(home, decided["request_id"], serving_config())
    assert record.model_versions == decided["model_versions"]
    assert record.result["pd"] == decided["pd"] and record.result["reasons"] == decided["reasons"]
    assert record.inputs is not None and set(APPLICATION_PD.features) <= set(record.inputs)
    assert record.inputs["requested_amount"] == bodies[2]["requested_amount"]
    # And the log is append-only Parquet files that monitoring can read as columns
    files = list(home.decisions_dir.glob("date=*/part-*.parquet"))
    assert files, "no decision files written"
    assert {f.stat().st_mode & 0o777 for f in files} == {0o600}, (
        "decision files hold customer inputs: owner only"
    )
    live = decision_inputs(home, serving_config())
    assert decided["request_id"] in set(live["request_id"]) and "age" in live.columns
    with pytest.raises(OrchardError, match="not in the decision log"):
        find_decision(home, "no-such-request", serving_config())


def test_parquet_log_files_are_never_rewritten(home: Settings, tmp_path: Path) -> None:
    # Given a Parquet sink with one flushed file
    sink = ParquetDecisionSink(tmp_path / "decisions")
    record = decision_record("r1")
    sink.write([record])
    first = {p: p.read_bytes() for p in (tmp_path / "decisions").rglob("*.parquet")}
    # When more records are flushed
    sink.write([decision_record("r2")])
    # Then a new file appears and the old one is byte-for-byte unchanged
    files = sorted((tmp_path / "decisions").rglob("*.parquet"))
    assert len(files) == 2, files
    assert all(p.read_bytes() == content for p, content in first.items())
    assert sink.find("r2") is not None and len(sink.read()) == 2


def test_score_flow_writes_the_month_with_the_version(home: Settings, prefect_harness: None) -> None:
    from flows.score import score_flow

    # Given the champion of application_pd
    # When the batch flow scores 2019-07
    outcome = score_flow(home, "application_pd", "2019-07")
    # Then the month's applications are written with the version, scored like the model itself scores them
    written = pd.read_parquet(scores_path(home, "application_pd", "2019-07"))
    assert outcome.rows == len(written) > 50 and outcome.version == PD_VERSION
    assert (written["model_version"] == PD_VERSION).all()
    served = load_served(home, "application_pd", PD_VERSION)
    np.testing.assert_array_equal(written["pd"].to_numpy(), served.model.predict_pd(written))
