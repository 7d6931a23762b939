"""A month's one point-in-time join of every monitored model's cases equals each model's own join."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pandas as pd
import pytest

from orchard.lifecycle.datasets import join_month_cases, model_frame
from orchard.lifecycle.retraining import monitored_models
from orchard.lifecycle.tools import Tools
from orchard.months import month_range
from orchard.settings import Settings
from orchard.testing.small_lifecycle import SMALL, copy_home, small_portfolio

pytestmark = pytest.mark.filterwarnings("ignore")


@pytest.mark.slow(seconds=10)
def test_each_model_taken_from_the_months_join_equals_its_own_join(
    tmp_path: Path, small_lifecycle_run: tuple[Path, subprocess.CompletedProcess[str]]
) -> None:
    # Given the small lifecycle's home and, for its last months, the models it monitored
    home = copy_home(small_lifecycle_run[0], tmp_path / "orchard")
    settings = Settings(_env_file=None, **{**SMALL, "home": home, "portfolio": small_portfolio(home)})  # type: ignore[arg-type]
    compared = []
    for month in month_range(str(SMALL["start_month"]), str(SMALL["end_month"])):
        specs = monitored_models(settings, month)
        if len(specs) < 2:
            continue  # (a single model joins its own rows)
        with Tools() as month_join, Tools() as own:
            # When the month's cases of those models are joined at once
            rows = join_month_cases(settings, specs, month, month_join)
            assert rows > 0 and month_join.month_joins, f"{month}: nothing joined"
            for spec in specs:
                # Then each model's frame of the month (its monitoring cases) equals the one its own join
                # gives, row for row and dtype for dtype, with the same lineage hash
                taken = model_frame(settings, spec, [month], month, with_labels=False, tools=month_join)
                alone = model_frame(settings, spec, [month], month, with_labels=False, tools=own)
                pd.testing.assert_frame_equal(taken.frame, alone.frame)
                assert taken.data_sha256 == alone.data_sha256
                compared.append((month, spec.name, len(taken.frame)))
            # And none of them joined again (the rows came from the month's join)
            assert not month_join.recent_joins
            # And rows the month's join does not hold (two earlier months) are joined on their own, and kept
            months = month_range(SMALL["start_month"], month)[-3:-1]
            earlier = model_frame(settings, specs[0], months, month, tools=month_join)
            assert len(month_join.recent_joins) == 1 and len(earlier.frame) > 0
            # And a part of those rows (one of the months, as a gate asks for a fit's out-of-time rows) is taken
            # from that join, equal to its own join
            part = model_frame(settings, specs[0], months[-1:], month, tools=month_join)
            alone = model_frame(settings, specs[0], months[-1:], month, tools=own)
            assert len(month_join.recent_joins) == 1 and 0 < len(part.frame) < len(earlier.frame)
            pd.testing.assert_frame_equal(part.frame, alone.frame)
            assert part.data_sha256 == alone.data_sha256
    assert len({name for _, name, _ in compared}) >= 3, compared
