"""After a shock, a model with an early label is recalibrated before its own labels mature (a small lifecycle)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from orchard.lifecycle.ledger import MonthRecord
from orchard.lifecycle.summary import first_adapted
from orchard.months import months_between
from orchard.testing.demo import demo_variant
from orchard.testing.small_lifecycle import SMALL_LABELS, SMALL_POLICY, run_orchard

pytestmark = pytest.mark.slow(seconds=80)

# labels that mature 4 months (the label) and 1 month (the early label) after booking, so that the vintages of
# a shock in 2019-08 have early labels three months before their own
LABELS = {
    **SMALL_LABELS,
    "dpd90_6m": {"within_months": 4, "bad_dpd": 30},
    "dpd30_3m": {"within_months": 1, "bad_dpd": 30},
}
POLICY = SMALL_POLICY
SHOCK = "2019-08"


def _application_pd_only(folder: Path) -> Path:
    """Keep application_pd alone in the variant (the other models, the joint one included, would only lengthen
    the run: the joint model took 188 of its 316 s of month stages)."""
    document = yaml.safe_load((folder / "portfolio.yaml").read_text())
    document["models"] = {"application_pd": document["models"]["application_pd"]}
    document.pop("joint")
    document["decision"] = {"pd_model": "application_pd"}
    (folder / "portfolio.yaml").write_text(yaml.safe_dump(document, sort_keys=False))
    return folder


def _records(home: Path) -> list[MonthRecord]:
    return [
        MonthRecord(**json.loads(p.read_text())) for p in sorted((home / "state" / "months").glob("*.json"))
    ]


def test_a_shock_is_answered_by_a_recalibration_before_its_labels_mature(
    tmp_path: Path, prefect_server_env: dict[str, str]
) -> None:
    # Given the small demo lifecycle with a shock in 2019-08, labels of 4 months and early labels of 1 month
    folder = _application_pd_only(demo_variant(tmp_path / "portfolio", policy=POLICY, labels=LABELS))
    home = tmp_path / "orchard"
    # When it runs to 2020-01
    result = run_orchard(
        home,
        "demo",
        "--portfolio",
        str(folder),
        ORCHARD_END_MONTH="2020-01",
        ORCHARD_SHOCK_MONTH=SHOCK,
        ORCHARD_CORRUPT_BATCHES="[]",
        # the legacy rule books the applications: this small world's champion would book too few early events
        # after the shock to fit a recalibration on (the closed loop is tested in test_closed_loop.py)
        ORCHARD_LENDER="legacy",
        **prefect_server_env,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    records = _records(home)
    made = [(r.month, r.model("application_pd")) for r in records if r.model("application_pd").trained]
    recalibrations = [(month, m) for month, m in made if m.trained and m.trained["method"] == "recalibration"]
    # Then application_pd was recalibrated after the breach, on vintages since it, before any had mature labels
    assert recalibrations, [(month, m.trained, m.reasons[-1:]) for month, m in made]
    month, entry = recalibrations[0]
    assert entry.trained is not None and entry.promotion is not None
    fit_start = entry.trained["train_window"].split("..")[0]
    assert fit_start >= SHOCK, (month, entry.trained)
    assert months_between(fit_start, month) < LABELS["dpd90_6m"]["within_months"], (
        f"recalibrated at {month}: the labels of {fit_start} were mature by then"
    )
    assert any(r.startswith("recalibrate: ") for r in entry.reasons), entry.reasons
    # And its gate judged it on the held-out vintage's early labels, calibration its improvement
    gate = entry.promotion["gate"]
    assert "(early label)" in gate["figures"]["window"], gate["figures"]
    assert [c["name"] for c in gate["checks"]][-1] == "improvement"
    assert "calibration gap" in " ".join(gate["checks"][-1]["reasons"]), gate["checks"][-1]
    # And, the shock having raised defaults, its expectation of the held-out early bad rate is nearer the
    # observed one than the champion's
    metrics = entry.trained["metrics"]
    observed = metrics["holdout_early_bad_rate"]
    assert abs(metrics["holdout_challenger_expected_early_bad_rate"] - observed) < abs(
        metrics["holdout_champion_expected_early_bad_rate"] - observed
    ), metrics
    # And, promoted, it is the first version made from post-shock data to decide, as the summary says
    assert entry.promotion["action"] == "promote", entry.promotion["reason"]
    adapted = first_adapted(records, SHOCK, "application_pd")
    assert adapted is not None and (adapted.method, adapted.promoted_at) == ("recalibration", month), adapted
    printed = " ".join(result.stdout.split())  # the summary's tables wrap at the terminal's width
    assert f"v{adapted.version} (recalibration) decides from {adapted.decides_from}" in printed, printed[
        -3000:
    ]
