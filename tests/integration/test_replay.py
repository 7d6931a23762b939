"""`orchard replay REQUEST_ID` reproduces logged decisions exactly, with the versions they recorded."""

from __future__ import annotations

import dataclasses

import pytest
from fastapi.testclient import TestClient

from orchard.errors import OrchardError
from orchard.serving.app import create_app
from orchard.serving.decision_log import find_decision
from orchard.serving.replay import replay, replay_command, replay_record
from orchard.settings import Settings
from orchard.testing.demo import demo_model
from orchard.testing.serving_home import HEADERS, applications, promote, serving_config
from tests.integration.serving_home import serving_home_fixture  # noqa: F401  (registers the fixture)

APPLICATION_PD = demo_model("application_pd")

pytestmark = pytest.mark.slow  # the shared lifecycle home takes ~1-2 minutes to build once per session


@pytest.fixture(scope="module")
def logged(serving_home: tuple[Settings, dict[str, list[int]]]) -> tuple[Settings, list[dict]]:
    """Decisions and scores made through the API with application_pd v1, then the log closed."""
    settings, versions = serving_home
    promote(settings, APPLICATION_PD.name, versions[APPLICATION_PD.name][0], "2019-06")
    bodies = applications(settings, n=6)
    responses = []
    with TestClient(create_app(settings, config=serving_config())) as client:
        for body in [*bodies, {**bodies[0], "customer_id": "NOT_A_CUSTOMER"}]:
            responses.append(client.post("/v1/decisions/application", json=body, headers=HEADERS).json())
        fields = {k: v for k, v in bodies[0].items() if k != "customer_id"}
        score = client.post(
            "/v1/scores/application_fraud",
            json={"customer_id": bodies[0]["customer_id"], "fields": fields},
            headers=HEADERS,
        )
        responses.append(score.json())
    # leaving the client shut the app down: the log writer flushed everything
    return settings, responses


def test_replay_reproduces_every_logged_request_exactly(logged: tuple[Settings, list[dict]]) -> None:
    settings, responses = logged
    # Given decisions (known and unknown customers) and a score logged by the API
    for response in responses:
        # When each is replayed from the log alone
        result = replay(settings, response["request_id"], serving_config())
        # Then every recomputed field equals the logged one, and the logged one equals what the caller got
        assert result.identical, (response["request_id"], result.differences)
        for key in ("pd", "score", "band", "reasons"):
            assert result.replayed[key] == response[key], (key, result.replayed[key], response[key])


def test_replay_uses_the_recorded_version_after_the_champion_moved(
    logged: tuple[Settings, list[dict]], serving_home: tuple[Settings, dict[str, list[int]]]
) -> None:
    settings, responses = logged
    first, second = serving_home[1][APPLICATION_PD.name]
    # Given the champion moved to another version after the decisions were made
    promote(settings, APPLICATION_PD.name, second, "2019-07")
    try:
        # When a decision made by the first version is replayed
        result = replay(settings, responses[0]["request_id"], serving_config())
        # Then it still uses the first version and reproduces the decision
        assert result.identical, result.differences
        assert result.replayed["model_versions"][APPLICATION_PD.name] == first
    finally:
        promote(settings, APPLICATION_PD.name, first, "2019-06")


def test_replay_command_summarises_and_detects_tampering(logged: tuple[Settings, list[dict]]) -> None:
    settings, responses = logged
    request_id = responses[0]["request_id"]
    # Given a logged decision
    # When the CLI function replays it
    summary = replay_command(settings, request_id)
    # Then it says it replayed exactly and names the versions
    assert "replayed exactly" in summary and "application_pd v1" in summary, summary
    # And a record whose stored PD was altered is reported as different
    record = find_decision(settings, request_id, serving_config())
    tampered = dataclasses.replace(record, result={**record.result, "pd": 0.5})
    assert replay_record(settings, tampered).differences == ["pd"]
    # And an unknown request id is a one-line error naming it
    with pytest.raises(OrchardError, match="no-such-id"):
        replay_command(settings, "no-such-id")
