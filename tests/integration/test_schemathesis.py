"""Schemathesis against the live API's OpenAPI spec: generated requests (valid and not) never get a 5xx."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import not_a_server_error
from schemathesis.generation import GenerationMode

from orchard.serving.app import create_app
from orchard.settings import Settings
from orchard.testing.demo import demo_model
from orchard.testing.serving_home import HEADERS, live_server, promote, serving_config
from tests.integration.serving_home import serving_home_fixture  # noqa: F401  (registers the fixture)

APPLICATION_PD = demo_model("application_pd")

pytestmark = pytest.mark.slow  # the shared lifecycle home takes ~1-2 minutes to build once per session

EXAMPLES_PER_MODE = 40


@pytest.fixture(scope="module")
def base_url(serving_home: tuple[Settings, dict[str, list[int]]]) -> Iterator[str]:
    home, versions = serving_home
    promote(home, APPLICATION_PD.name, versions[APPLICATION_PD.name][0], "2019-06")
    with live_server(create_app(home, config=serving_config())) as url:
        yield url


@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE], ids=lambda m: m.value)
def test_no_generated_request_gets_a_server_error(base_url: str, mode: GenerationMode) -> None:
    # Given the OpenAPI spec the live API serves (fetched with the key, like any client)
    schema = schemathesis.openapi.from_url(f"{base_url}/openapi.json", headers=HEADERS)
    operations = [result.ok() for result in schema.get_all_operations()]
    assert {op.label for op in operations} >= {"POST /v1/decisions/application", "POST /v1/scores/{model}"}
    if mode is GenerationMode.NEGATIVE:
        # an operation without parameters or body (GET /health) has nothing to break
        operations = [op for op in operations if op.method.upper() == "POST"]
    statuses: list[int] = []
    for operation in operations:

        @given(case=operation.as_strategy(generation_mode=mode))
        @settings(
            max_examples=EXAMPLES_PER_MODE,
            deadline=None,
            database=None,
            suppress_health_check=list(HealthCheck),
        )
        def check(case: schemathesis.Case) -> None:
            # When a generated request (schema-conforming, or deliberately breaking it) is sent with the key
            response = case.call(base_url=base_url, headers=HEADERS)
            statuses.append(response.status_code)
            # Then the API never answers 5xx
            case.validate_response(response, checks=[not_a_server_error])

        check()
    assert statuses and max(statuses) < 500, sorted(set(statuses))
    if mode is GenerationMode.NEGATIVE:
        assert any(400 <= s < 500 for s in statuses), "negative cases must be refused with 4xx"
