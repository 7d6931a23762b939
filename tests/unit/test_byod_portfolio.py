"""`orchard byod --write-portfolio`: a BYOD file becomes a portfolio with one landing file per month."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from orchard.errors import OrchardError
from orchard.portfolio.from_byod import partial_last_month, write_byod_portfolio
from orchard.portfolio.load import load_portfolio
from orchard.settings import Settings
from tests.byod_data import byod_file
from tests.conftest import REPO_ROOT


@pytest.mark.parametrize("suffix", [".csv", ".parquet"])
def test_a_timed_file_becomes_a_portfolio_with_a_file_per_local_month(tmp_path: Path, suffix: str) -> None:
    # Given a BYOD spec of a file spanning five months (naive times in Berlin)
    spec = byod_file(tmp_path, suffix)
    # When the portfolio is written
    target, rows = write_byod_portfolio(spec, tmp_path / "book")
    periods = list(rows)
    # Then every row lands exactly once, in the landing file of its local month
    assert periods == ["2020-01", "2020-02", "2020-03", "2020-04", "2020-05"]
    files = sorted((tmp_path / "book" / "landing" / "toy_book").glob(f"*{suffix}"))
    assert [f.stem for f in files] == periods
    read = pd.read_csv if suffix == ".csv" else pd.read_parquet
    landed = pd.concat([read(f).assign(period=f.stem) for f in files], ignore_index=True)
    assert sorted(landed["app_id"]) == [f"A{i:05d}" for i in range(900)]
    local = pd.to_datetime(landed["applied_at"]).dt.strftime("%Y-%m")
    assert (local == landed["period"]).all()
    # And the portfolio validates: the target is an observed label, the spec's features, categories, directions
    portfolio = load_portfolio(target)
    model = portfolio.models["toy_book_pd"]
    assert (
        portfolio.labels["bad"].observed is not None and portfolio.labels["bad"].observed.column == "status"
    )
    assert list(model.features) == ["x", "grade", "city"] and set(model.categorical) == {"grade", "city"}
    assert model.increasing == ("x",) and model.algorithm == "best" and model.serve
    assert portfolio.sources["toy_book"].columns["grade"].type == "string"
    assert (model.policy.oot_months, model.policy.min_mature_vintages) == (2, 3)
    # And the month the extract cut short (May: 29 of its days) is not flagged, one cut early would be
    assert rows["2020-05"] > 100 and partial_last_month(rows) is None
    assert "2020-06 holds 10 rows" in str(partial_last_month({**rows, "2020-06": 10}))


def test_bad_requests_are_named_and_write_nothing(tmp_path: Path) -> None:
    # Given the German credit example (no time axis) / Then it is refused: a portfolio's periods are months
    with pytest.raises(OrchardError, match="has no event_time"):
        write_byod_portfolio(REPO_ROOT / "examples" / "german_credit.yaml", tmp_path / "german")
    assert not (tmp_path / "german").exists()
    # Given a column that cannot name a feature / Then it is named, with the way out
    spec = byod_file(tmp_path, drop=[], monotone={})
    frame = pd.read_csv(tmp_path / "loans.csv").rename(columns={"x": "Score X"})
    frame.to_csv(tmp_path / "loans.csv", index=False)
    with pytest.raises(OrchardError, match=r"\['Score X'\] cannot name a feature"):
        write_byod_portfolio(spec, tmp_path / "book")
    assert not (tmp_path / "book").exists()
    # Given a monotone trend on a column that is no feature, or on a categorical one / Then it is named
    for monotone, match in [
        ({"status": "ascending"}, r"\['status'\] are not features"),
        ({"city": "ascending"}, r"not the categorical \['city'\]"),
    ]:
        with pytest.raises(OrchardError, match=match):
            write_byod_portfolio(byod_file(tmp_path, monotone=monotone), tmp_path / "book")
        assert not (tmp_path / "book").exists()
    # Given an existing portfolio / Then nothing is overwritten
    spec = byod_file(tmp_path)
    write_byod_portfolio(spec, tmp_path / "book")
    with pytest.raises(OrchardError, match="already exists"):
        write_byod_portfolio(spec, tmp_path / "book")


@pytest.mark.parametrize("suffix", [".csv", ".parquet"])
def test_byod_evaluates_the_model_its_written_portfolio_trains(
    settings: Settings, tmp_path: Path, suffix: str
) -> None:
    from orchard.byod import prepare_data
    from orchard.byod_spec import load_spec
    from orchard.model_specs import model_spec

    # Given a BYOD spec with a declared categorical code, an ascending trend and a selection block
    spec_path = byod_file(tmp_path, suffix, selection={"mode": "max_auc", "min_iv": 0.01})
    # When byod prepares its one period, and the same spec is written as a monthly portfolio
    evaluated = prepare_data(settings, load_spec(spec_path), spec_path).model
    target, _ = write_byod_portfolio(spec_path, tmp_path / "book")
    written = model_spec(load_portfolio(target), "toy_book_pd")
    # Then both are one model: same features, categories, constraints, selection, learner rule and label
    for field in (
        "name",
        "feast_features",
        "categorical",
        "increasing",
        "trends",
        "selection",
        "algorithm",
        "key",
    ):
        assert getattr(evaluated, field) == getattr(written, field), field
    assert evaluated.label_rule == written.label_rule
    assert evaluated.categorical == ("grade", "city") and evaluated.increasing == ("x",)
    assert evaluated.trends == {"x": "ascending"}
