"""Request validation: ranges and levels from orchard.sources, strict types, fields named; serving config."""

from __future__ import annotations

import json

import pytest
from pydantic import ValidationError

from orchard.serving.schemas import (
    FieldError,
    ScoreRequest,
    application_request,
    check_request_fields,
    request_columns,
)
from orchard.settings import ServingConfig
from orchard.testing.demo import demo_model, demo_source, demo_sources
from tests.conftest import make_settings

APPLICATIONS = demo_source("applications")
APPLICATION_PD = demo_model("application_pd")
COLUMNS = request_columns(demo_sources())
ApplicationRequest = application_request(APPLICATION_PD, COLUMNS)

GOOD = {
    "customer_id": "U0000001",
    "requested_amount": 5_000,
    "term_months": 12,
    "income_declared": 2_000.5,
    "employment_type": "salaried",
    "loan_purpose": "education",
    "channel": "web",
}


def _errors(body: dict) -> list[str]:
    try:
        ApplicationRequest.model_validate_json(json.dumps(body))
    except ValidationError as exc:
        return [str(e["loc"][0]) for e in exc.errors()]
    return []


def test_a_good_application_validates_and_ints_become_floats_where_the_source_says_float() -> None:
    # Given a complete application with an integer amount
    # When validated
    request = ApplicationRequest.model_validate_json(json.dumps(GOOD))
    # Then it is accepted and the amount is a float (the same value the batch frame holds)
    assert request.requested_amount == 5_000.0 and isinstance(request.requested_amount, float)


@pytest.mark.parametrize("column", ["requested_amount", "term_months", "income_declared"])
def test_ranges_come_from_the_source_spec(column: str) -> None:
    # Given the source's range of a numeric application field
    spec = APPLICATIONS.column(column)
    # Then the bounds pass and one step outside fails, naming the field
    assert _errors({**GOOD, column: spec.min_value}) == []
    assert _errors({**GOOD, column: spec.max_value}) == []
    step = 1 if spec.dtype == "int" else 0.5
    assert _errors({**GOOD, column: spec.max_value + step}) == [column]
    assert _errors({**GOOD, column: spec.min_value - step}) == [column]


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"term_months": 12.0}, "term_months"),
        ({"term_months": "12"}, "term_months"),
        ({"term_months": True}, "term_months"),
        ({"requested_amount": "5000"}, "requested_amount"),
        ({"employment_type": "pirate"}, "employment_type"),
        ({"customer_id": ""}, "customer_id"),
        ({"customer_id": "a'b"}, "customer_id"),
        ({"extra": 1}, "extra"),
    ],
)
def test_mistyped_unknown_or_extra_fields_are_named(change: dict, field: str) -> None:
    assert _errors({**GOOD, **change}) == [field]


def test_nan_and_missing_fields_are_refused() -> None:
    # Given NaN (Python's json accepts it) and a missing field
    nan_body = json.dumps(GOOD).replace("2000.5", "NaN")
    with pytest.raises(ValidationError, match="income_declared"):
        ApplicationRequest.model_validate_json(nan_body)
    assert _errors({k: v for k, v in GOOD.items() if k != "channel"}) == ["channel"]


def test_score_request_fields_are_checked_against_the_model_spec() -> None:
    fields = {k: v for k, v in GOOD.items() if k != "customer_id"}
    # Given the request fields of application_pd
    assert check_request_fields(APPLICATION_PD, fields, COLUMNS)["requested_amount"] == 5_000.0
    # Then a missing, an unknown, an out-of-range and a non-finite field each raise naming the field
    cases = [
        ({k: v for k, v in fields.items() if k != "loan_purpose"}, "fields.loan_purpose"),
        ({**fields, "shoe_size": 44}, "fields.shoe_size"),
        ({**fields, "term_months": 61}, "fields.term_months"),
        ({**fields, "income_declared": float("inf")}, "fields.income_declared"),
    ]
    for bad, field in cases:
        with pytest.raises(FieldError) as caught:
            check_request_fields(APPLICATION_PD, bad, COLUMNS)
        assert caught.value.field == field, (bad, caught.value)
    # And the score request itself bounds the number of fields
    with pytest.raises(ValidationError, match="fields"):
        ScoreRequest(customer_id="U1", fields={f"f{i}": 1 for i in range(100)})


def test_serving_config_refuses_inconsistent_cut_offs_and_reads_defaults(tmp_path) -> None:
    # Given cut-offs where approving needs a higher PD than declining
    with pytest.raises(ValidationError, match="approve_max_pd"):
        ServingConfig(approve_max_pd=0.5, decline_min_pd=0.2)
    with pytest.raises(ValidationError, match="max_body_bytes"):
        ServingConfig(max_body_bytes=10)
    # And settings without serving fields give the defaults (no API key: the app refuses to start)
    config = make_settings(tmp_path).serving
    assert config == ServingConfig()
    assert config.api_key is None
