"""The validation window of orchard.contracts.expectation_memo: the same results as Great Expectations alone."""

from __future__ import annotations

import json

import numpy as np
import pytest
from great_expectations.expectations.expectation_configuration import ExpectationConfiguration
from great_expectations.validator.validator import Validator

from orchard.contracts import build_suite
from orchard.contracts.expectation_memo import _windowed, keep_expectations
from orchard.contracts.gx_project import GxProject
from orchard.contracts.report import broken_expectations, stable_result
from tests.integration.test_contracts import APPLICATIONS, MONTH, valid_frame


def test_a_window_answers_the_same_objects_only_inside_it() -> None:
    keep_expectations()
    config = ExpectationConfiguration(type="expect_column_values_to_not_be_null", kwargs={"column": "amount"})
    # Outside a validation each call makes new objects, as Great Expectations does
    assert config.to_domain_obj() is not config.to_domain_obj()
    expectation = config.to_domain_obj()
    assert expectation.configuration is not expectation.configuration

    def reads() -> tuple[object, ...]:
        made = config.to_domain_obj()
        return made, config.to_domain_obj(), made.configuration, made.configuration

    # Inside a window (what graph_validate opens) the first object made is answered again
    first, again, configuration, configuration_again = _windowed(reads)()
    assert first is again and configuration is configuration_again
    assert configuration.to_json_dict() == expectation.configuration.to_json_dict()
    # and the window is closed after the call
    assert config.to_domain_obj() is not config.to_domain_obj()


def test_a_corrupted_batch_validates_to_the_same_result_with_and_without_the_window(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Given a batch of applications with nulls, duplicates, out-of-range amounts and an unknown category
    frame = valid_frame(APPLICATIONS, MONTH, 300).astype({"requested_amount": float})
    frame.loc[:9, "application_id"] = None
    frame.loc[10:19, "application_id"] = frame.loc[20:29, "application_id"].to_numpy()
    frame.loc[30:39, "requested_amount"] = -np.abs(frame.loc[30:39, "requested_amount"])
    category = next(c for c in APPLICATIONS.columns if c.categories)
    frame.loc[40:49, category.name] = "not-a-category"
    suite = build_suite(APPLICATIONS, MONTH, 1000)
    project = GxProject.ephemeral()
    # When it is validated with the window (installed by the project) and with Great Expectations' own path
    windowed = project.validate("applications", frame, suite)
    monkeypatch.setattr(Validator, "graph_validate", Validator.graph_validate.__wrapped__)
    plain = project.validate("applications", frame, suite)
    # Then the results are the same, byte for byte, and they found the defects
    first, second = (json.dumps(stable_result(r.to_json_dict()), sort_keys=True) for r in (windowed, plain))
    assert first == second
    broken = " ".join(broken_expectations(stable_result(windowed.to_json_dict())))
    for expected in (
        "expect_column_values_to_not_be_null",
        "expect_column_values_to_be_unique",
        category.name,
    ):
        assert expected in broken, broken
