"""Each party runs on its own table under its own spec: other column names and types than the simulator's."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from pydantic import ValidationError

from orchard.atomic import frame_sha256, write_parquet
from orchard.errors import OrchardError
from orchard.federated.data import VerticalSplit
from orchard.federated.job import host_process, joint_score, prepare_parties, run_joint_job
from orchard.federated.paillier_lr import LRConfig
from orchard.federated.party_spec import PartyTable
from orchard.ports import free_port
from orchard.settings import Settings
from tests.federated_tables import customer_keys

GUEST_SPEC = {
    "role": "guest",
    "id_column": "applicant_ref",
    "vintage_column": "cohort",
    "label_column": "defaulted",
    "features": [
        {"name": "income_k", "type": "int"},
        {"name": "has_mortgage", "type": "bool"},
        {"name": "bureau_score", "type": "float"},
    ],
}
HOST_SPEC = {
    "role": "host",
    "id_column": "member_id",
    "features": [
        {"name": "sessions_7d", "type": "int"},
        {"name": "premium", "type": "bool"},
        {"name": "spend_eur", "type": "float"},
        {"name": "tenure_days", "type": "int"},
    ],
}


def _tables(seed: int = 3) -> tuple[pd.DataFrame, pd.DataFrame]:
    rng = np.random.default_rng(seed)
    keys = customer_keys(1500)
    host_keys = keys[:1200] + customer_keys(400, offset=5000)
    host = pd.DataFrame(
        {
            "member_id": host_keys,
            "sessions_7d": rng.poisson(4, len(host_keys)).astype("int32"),
            "premium": rng.random(len(host_keys)) < 0.3,
            "spend_eur": rng.gamma(2, 50, len(host_keys)),
            "tenure_days": rng.integers(0, 2000, len(host_keys)),
        }
    )
    guest = pd.DataFrame(
        {
            "applicant_ref": keys,
            "cohort": [k.split(":")[1] for k in keys],
            "income_k": rng.integers(10, 120, len(keys)),
            "has_mortgage": rng.random(len(keys)) < 0.4,
            "bureau_score": rng.normal(600, 50, len(keys)),
        }
    )
    spend = host.set_index("member_id")["spend_eur"].reindex(keys).fillna(100).to_numpy()
    logit = -1.5 - 0.02 * (guest["income_k"] - 60) + 0.004 * (spend - 100) + 0.8 * guest["has_mortgage"]
    guest["defaulted"] = (rng.random(len(keys)) < 1 / (1 + np.exp(-logit))).astype("int8")
    return guest, host


def test_spec_is_strict_and_names_problems(tmp_path: Path) -> None:
    # given a spec with an unknown key, or a guest without a label, then validation refuses it
    with pytest.raises(ValidationError):
        PartyTable.model_validate({**HOST_SPEC, "colour": "red"})
    with pytest.raises(ValidationError, match="label_column"):
        PartyTable.model_validate({**GUEST_SPEC, "label_column": None})
    # and a table whose column has the wrong type gets one error naming the column and type
    guest, _ = _tables()
    spec = PartyTable.model_validate(GUEST_SPEC)
    with pytest.raises(OrchardError, match="'income_k' is not of type int"):
        spec.check(guest.assign(income_k=guest["income_k"] + 0.5))


@pytest.mark.slow
def test_joint_job_runs_on_two_tables_that_are_not_the_simulators(settings: Settings, tmp_path: Path) -> None:
    # given two tables with their own column names and types, each described only by its own spec
    guest, host = _tables()
    split = VerticalSplit(
        guest_path=write_parquet(guest, tmp_path / "lender.parquet"),
        host_path=write_parquet(host, tmp_path / "platform.parquet"),
        guest_rows=len(guest),
        host_rows=len(host),
        guest_sha256=frame_sha256(guest),
        host_sha256=frame_sha256(host),
    )
    guest_spec, host_spec = PartyTable.model_validate(GUEST_SPEC), PartyTable.model_validate(HOST_SPEC)
    # when the two party processes run a joint job
    record = run_joint_job(
        settings,
        split,
        "own-tables",
        LRConfig(epochs=3, batch_size=256, key_bits=1024),
        model_name="joint_own_tables",
        guest_spec=guest_spec,
        host_spec=host_spec,
    )
    # then the model is registered, trained on the 1,200 matched rows, and better than chance
    assert record["status"] == "registered", record
    assert record["psi"]["matched"] == 1200, record["psi"]
    assert record["metrics"]["auc_test"] > 0.6, record["metrics"]
    # and applicants are scored through a scoring session on the guest's own id column
    homes = prepare_parties(settings, split, guest_spec, host_spec)
    port = free_port()
    applicants = guest[guest["cohort"] <= "2019-09"].head(8)
    with host_process(settings, homes, port):
        scored = joint_score(
            settings,
            "joint_own_tables",
            record["version"],
            applicants,
            port,
            homes.key_file,
            purpose="applicants of the day",
        )
    assert (
        list(scored["applicant_ref"]) == list(applicants["applicant_ref"])
        and scored["pd"].between(0, 1).all()
    )
