"""Tests of parcelling (orchard.credit.reject_inference)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from orchard.credit.reject_inference import parcelled_labels, with_parcelled_rejects
from orchard.errors import OrchardError


def test_parcelling_labels_bad_at_factor_times_the_pd_capped_at_one() -> None:
    # Given 100,000 declined cases at each of three PDs
    n = 100_000
    pd_values = np.repeat([0.05, 0.2, 0.8], n)
    labels = parcelled_labels(pd_values, factor=1.5, seed=3)
    # Then each group's bad share is min(1, 1.5 x PD) within four standard errors
    for i, p in enumerate((0.075, 0.3, 1.0)):
        share = labels[i * n : (i + 1) * n].mean()
        assert abs(share - p) <= 4 * np.sqrt(p * (1 - p) / n) + 1e-12, (p, share)
    # And the same seed gives the same labels, another seed others
    assert np.array_equal(labels, parcelled_labels(pd_values, 1.5, 3))
    assert not np.array_equal(labels, parcelled_labels(pd_values, 1.5, 4))


@pytest.mark.parametrize(
    ("values", "factor", "message"),
    [
        ([0.1, np.nan], 1.5, r"PD in \[0, 1\] for every declined case"),
        ([0.1, 1.2], 1.5, r"PD in \[0, 1\]"),
        ([0.1], 0.9, r"factor must be at least 1, got 0.9"),
    ],
)
def test_bad_parcelling_inputs_are_named(values: list[float], factor: float, message: str) -> None:
    with pytest.raises(OrchardError, match=message):
        parcelled_labels(np.array(values), factor, 1)


def test_parcelled_rejects_follow_the_booked_rows_with_their_inferred_labels() -> None:
    booked = pd.DataFrame({"x": [1.0, 2.0], "bad": [0, 1], "eligible": [True, True]})
    rejects = pd.DataFrame({"x": [3.0, 4.0, 5.0], "bad": [np.nan] * 3, "eligible": [False] * 3, "extra": 1})
    out = with_parcelled_rejects(booked, rejects, np.array([0.0, 1.0, 1.0]), 1.0, 0)
    assert list(out.columns) == list(booked.columns)
    assert out["x"].tolist() == [1.0, 2.0, 3.0, 4.0, 5.0]
    assert out["bad"].tolist() == [0, 1, 0, 1, 1]
    with pytest.raises(OrchardError, match="3 declined cases but 2 PDs"):
        with_parcelled_rejects(booked, rejects, np.array([0.1, 0.2]), 1.0, 0)
