"""Integration tests of the model registry on a real MLflow sqlite store and history db in tmp_path."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import mlflow
import numpy as np
import pytest
from mlflow import MlflowClient

from model_registry import history, registry
from model_registry.gates import GateResult, log_gate_result
from model_registry.lineage import Lineage, lineage_tags
from model_registry.pyfunc import pip_requirements
from model_registry.tracking import mlflow_client
from orchard.errors import OrchardError
from orchard.settings import Settings
from tests.conftest import make_settings
from tests.integration.tiny_model import TinyPd, training_frame

NAME = "application_pd"


def lineage(window: str = "2019-01..2019-06") -> Lineage:
    """Build a lineage record like the training flow's."""
    return Lineage(
        batch_ids=["applications:2019-01", "applications:2019-02"],
        data_sha256="a" * 64,
        validation_ids=["gx-applications-2019-01", "gx-applications-2019-02"],
        feature_service="application_pd_v1",
        code_version="0.1.0+abc123",
        train_window=window,
        extra={"rows": 60},
    )


def register(settings: Settings, name: str, seed: int, train_key: str) -> registry.ModelVersionRef:
    """Register a TinyPd fitted with seed under name and train_key."""
    return registry.register_model(
        settings,
        name,
        TinyPd(NAME, seed),
        train_key=train_key,
        metrics={"auc": 0.77, "ks": 0.41},
        params={"C": 1.0, "features": "income,utilization"},
        lineage=lineage(),
        input_example=training_frame(seed),
        artifacts={"reference_profile.json": {"bins": [0, 1, 2]}, "notes.txt": "trained in a test"},
    )


def counts(settings: Settings, name: str) -> tuple[int, int]:
    """Return (runs in the model's experiment, registered versions of the model)."""
    client = MlflowClient(tracking_uri=settings.tracking_uri, registry_uri=settings.tracking_uri)
    experiment = client.get_experiment_by_name(name)
    runs = client.search_runs([experiment.experiment_id]) if experiment else []
    return len(runs), len(client.search_model_versions(f"name = '{name}'"))


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Settings:
    """One MLflow store for this module: creating a fresh MLflow sqlite db costs ~5 s of migrations."""
    settings = make_settings(tmp_path_factory.mktemp("registry") / "orchard")
    mlflow_client(settings).search_experiments()  # pay the migrations here, not inside a timed test
    return settings


@pytest.fixture
def name(request: pytest.FixtureRequest) -> str:
    """A registered-model name of this test alone, so tests sharing the store stay independent."""
    return "m_" + request.node.originalname.removeprefix("test_")[:60]


@pytest.fixture(scope="module")
def two_versions(store: Settings) -> tuple[Settings, str, int, int]:
    """Versions 1 and 2 of a model shared by the alias tests (registering costs ~1 s each)."""
    first = register(store, NAME, seed=1, train_key="2019-06")
    second = register(store, NAME, seed=2, train_key="2019-12")
    return store, NAME, first.version, second.version


def test_register_and_load_round_trip_predicts_identical_pd(store: Settings, name: str) -> None:
    # given a fitted model
    model = TinyPd(NAME, seed=1)
    frame = training_frame(seed=9)
    global_uri_before = mlflow.get_tracking_uri()
    # when it is registered and loaded back by version number
    ref = register(store, name, seed=1, train_key="2019-06")
    loaded = registry.load_model(store, name, ref.version)
    # then it is the original kind of object and predicts the identical PD
    assert (ref.name, ref.version) == (name, 1), ref
    assert isinstance(loaded, TinyPd), type(loaded)
    np.testing.assert_array_equal(
        loaded.predict_pd(frame), model.predict_pd(frame), "PD changed in the round trip"
    )
    assert mlflow.get_tracking_uri() == global_uri_before, "register_model must not leave global MLflow state"


def test_pyfunc_model_returns_pd_column_and_has_explicit_requirements(store: Settings, name: str) -> None:
    # given a registered model
    ref = register(store, name, seed=1, train_key="2019-06")
    client = MlflowClient(tracking_uri=store.tracking_uri, registry_uri=store.tracking_uri)
    local = Path(client.get_model_version_download_uri(name, str(ref.version)).removeprefix("file://"))
    # when its pip requirements and signature are read
    requirements = (local / "requirements.txt").read_text().split()
    mlmodel = (local / "MLmodel").read_text()
    # then requirements are pinned and include scikit-learn; the output schema is the pd column
    assert "scikit-learn==1.9.1" in requirements and all("==" in r for r in requirements), requirements
    assert '"name": "pd"' in mlmodel, "the signature's output should be the pd column"
    assert '"name": "application_id"' not in mlmodel, "only the model's features belong in the signature"


def test_same_train_key_returns_same_version_and_logs_nothing(store: Settings, name: str) -> None:
    # given a version registered under a train key
    first = register(store, name, seed=1, train_key="2019-06")
    before = counts(store, name)
    # when the same train key is registered again
    again = register(store, name, seed=1, train_key="2019-06")
    # then the same version comes back and no run or version was created
    assert again == first, (again, first)
    assert counts(store, name) == before == (1, 1), counts(store, name)


def test_crash_between_log_and_register_recovers_from_the_run(
    store: Settings, name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # given a run that was logged but whose registration crashed
    original = registry._register_from_run

    def crash(*args: object, **kwargs: object) -> None:
        raise RuntimeError("simulated crash before registration")

    monkeypatch.setattr(registry, "_register_from_run", crash)
    with pytest.raises(RuntimeError, match="simulated crash"):
        register(store, name, seed=1, train_key="2019-06")
    monkeypatch.setattr(registry, "_register_from_run", original)
    assert counts(store, name) == (1, 0), f"expected one run and no version, got {counts(store, name)}"
    client = MlflowClient(tracking_uri=store.tracking_uri, registry_uri=store.tracking_uri)
    crashed_run = client.search_runs([client.get_experiment_by_name(name).experiment_id])[0]
    # when the same train key is registered again
    ref = register(store, name, seed=1, train_key="2019-06")
    # then the version comes from the crashed run, with no new run, and carries the run's tags
    assert ref.run_id == crashed_run.info.run_id, "should register the existing run's model"
    assert counts(store, name) == (1, 1), counts(store, name)
    assert registry.version_tags(store, name, ref.version)["orchard.train_key"] == "2019-06"


def test_lineage_tags_artifacts_and_dataset_input_are_on_the_run(store: Settings, name: str) -> None:
    # given a registered model
    ref = register(store, name, seed=1, train_key="2019-06")
    client = MlflowClient(tracking_uri=store.tracking_uri, registry_uri=store.tracking_uri)
    run = client.get_run(ref.run_id)
    # when its version tags, run artifacts and inputs are read
    tags = registry.version_tags(store, name, ref.version)
    artifact_paths = {a.path for a in client.list_artifacts(ref.run_id)}
    lineage_json = json.loads(Path(client.download_artifacts(ref.run_id, "lineage.json")).read_text())
    inputs = run.inputs.dataset_inputs
    # then lineage, kind and train key are tagged on the version and the run
    assert tags["orchard.train_key"] == "2019-06" and tags["orchard.kind"] == "logistic", tags
    for key, value in lineage_tags(lineage()).items():
        assert tags[key] == value and run.data.tags[key] == value, f"tag {key} missing or wrong"
    assert {"lineage.json", "reference_profile.json", "notes.txt"} <= artifact_paths, artifact_paths
    assert lineage_json["batch_ids"] == lineage().batch_ids, lineage_json
    # and the training dataset is logged as an input with the data digest
    assert len(inputs) == 1, f"expected one dataset input, got {len(inputs)}"
    dataset = inputs[0].dataset
    assert dataset.name == f"{name}-train-2019-01..2019-06" and dataset.digest == "a" * 36, dataset
    input_tags = {t.key: t.value for t in inputs[0].tags}
    assert input_tags["mlflow.data.context"] == "training", input_tags
    assert input_tags["orchard.data_sha256"] == "a" * 64, input_tags
    assert run.data.metrics["auc"] == 0.77 and run.data.params["C"] == "1.0", run.data


def test_bad_inputs_raise_user_errors(store: Settings, name: str) -> None:
    # given an input example that lacks a feature
    # when/then registration names the missing column before logging anything
    with pytest.raises(OrchardError, match="lacks feature columns: utilization"):
        registry.register_model(
            store,
            name,
            TinyPd(NAME, 1),
            train_key="k",
            metrics={},
            params={},
            lineage=lineage(),
            input_example=training_frame(1).drop(columns=["utilization"]),
        )
    with pytest.raises(OrchardError, match="train_key"):
        registry.register_model(
            store,
            name,
            TinyPd(NAME, 1),
            train_key="x' or '1'='1",
            metrics={},
            params={},
            lineage=lineage(),
            input_example=training_frame(1),
        )
    assert counts(store, name) == (0, 0), "nothing should have been logged"


def test_set_alias_moves_alias_records_one_event_and_is_idempotent(store: Settings, name: str) -> None:
    settings, model, v1 = store, name, register(store, name, seed=1, train_key="2019-06").version
    # given no champion
    assert registry.champion_version(settings, model) is None
    # when v1 is promoted twice with the same decision
    for _ in range(2):
        registry.set_alias(
            settings,
            model,
            "champion",
            v1,
            action="promote",
            reason="first model",
            approver="orchard-policy",
            gate={"passed": True},
            effective_month="2019-07",
        )
    # then the alias points at v1, the loaded champion is v1's model, and one event was recorded
    assert registry.champion_version(settings, model) == v1
    assert registry.alias_version(settings, model, "challenger") is None
    recorded = history.events(settings, model, "champion")
    assert [(e.action, e.version, e.previous_version) for e in recorded] == [("promote", v1, None)], recorded
    assert recorded[0].gate == {"passed": True} and recorded[0].recorded_at.tzinfo is not None
    champion = registry.load_model(settings, model, "champion")
    frame = training_frame(5)
    np.testing.assert_array_equal(champion.predict_pd(frame), TinyPd(NAME, 1).predict_pd(frame))


def replay_lifecycle(settings: Settings, model: str, v1: int, v2: int) -> None:
    """Take the decisions of a short lifecycle: promote v1, reject v2, promote v2, roll back to v1."""
    registry.set_alias(
        settings,
        model,
        "champion",
        v1,
        action="promote",
        reason="first model",
        approver="orchard-policy",
        gate={"passed": True},
        effective_month="2019-07",
    )
    registry.record_rejection(
        settings,
        model,
        v2,
        reason="challenger AUC 0.779 vs champion 0.780 on 2019-11..2019-12: -0.001 < margin 0.005",
        approver="orchard-policy",
        gate={"passed": False},
        effective_month="2019-12",
    )
    registry.set_alias(
        settings,
        model,
        "champion",
        v2,
        action="promote",
        reason="retrained",
        approver="analyst",
        gate={"passed": True},
        effective_month="2020-02",
    )
    registry.set_alias(
        settings,
        model,
        "champion",
        v1,
        action="rollback",
        reason="v2 misbehaves",
        approver="analyst",
        gate=None,
        effective_month="2020-04",
    )


def test_promotion_rejection_rollback_champion_at_and_replay(
    two_versions: tuple[Settings, str, int, int],
) -> None:
    settings, model, v1, v2 = two_versions
    # given promoting a version whose gate failed is refused
    with pytest.raises(OrchardError, match="gate did not pass"):
        registry.set_alias(
            settings,
            model,
            "champion",
            v2,
            action="promote",
            reason="x",
            approver="me",
            gate={"passed": False},
            effective_month="2019-12",
        )
    # when a lifecycle promotes v1, rejects v2, promotes v2 and rolls back to v1
    replay_lifecycle(settings, model, v1, v2)
    # then the history answers which champion was in force in each month
    months = ["2019-06", "2019-07", "2019-12", "2020-01", "2020-02", "2020-03", "2020-04", "2021-12"]
    answers = {m: history.champion_at(settings, model, m) for m in months}
    expected = [None, v1, v1, v1, v2, v2, v1, v1]
    assert answers == dict(zip(months, expected, strict=True)), answers
    # and the events say who moved what from where, the rejection leaving the champion alone
    recorded = history.events(settings, model)
    actions = [(e.alias, e.action, e.version, e.previous_version) for e in recorded]
    assert actions == [
        ("champion", "promote", v1, None),
        ("challenger", "reject", v2, None),
        ("champion", "promote", v2, v1),
        ("champion", "rollback", v1, v2),
    ], actions
    assert recorded[1].approver == "orchard-policy" and "< margin 0.005" in recorded[1].reason, recorded[1]
    as_dict = recorded[1].to_dict()
    assert json.loads(json.dumps(as_dict))["action"] == "reject", "to_dict must be JSON-ready"
    assert registry.champion_version(settings, model) == v1
    assert registry.alias_version(settings, model, "challenger") == v2
    # when the whole lifecycle is replayed (a rerun of the demo)
    replay_lifecycle(settings, model, v1, v2)
    # then no event is duplicated and no later decision is undone
    assert history.events(settings, model) == recorded, "a replay must not record events again"
    assert registry.champion_version(settings, model) == v1, "a replay must not undo the rollback"


def test_log_gate_result_tags_version_and_logs_json(two_versions: tuple[Settings, str, int, int]) -> None:
    settings, model, _, v2 = two_versions
    # given a gate result for v2
    gate = GateResult(passed=True, reasons=["challenger AUC 0.781 vs champion 0.772: +0.009 >= margin 0.005"])
    # when it is logged
    log_gate_result(settings, model, v2, gate, window="2019-11..2019-12")
    # then the version carries the outcome and its run holds gate_result.json
    tags = registry.version_tags(settings, model, v2)
    assert tags["orchard.gate.passed"] == "true" and tags["orchard.gate.window"] == "2019-11..2019-12", tags
    client = MlflowClient(tracking_uri=settings.tracking_uri, registry_uri=settings.tracking_uri)
    run_id = client.get_model_version(model, str(v2)).run_id
    data = json.loads(Path(client.download_artifacts(run_id, "gate_result.json")).read_text())
    assert data["passed"] is True and data["window"] == "2019-11..2019-12", data


def test_unknown_references_raise_user_errors(two_versions: tuple[Settings, str, int, int]) -> None:
    settings, model, _, _ = two_versions
    # when/then unknown aliases, versions and actions are named in the error
    with pytest.raises(OrchardError, match="no alias 'nobody'"):
        registry.load_model(settings, model, "nobody")
    with pytest.raises(OrchardError, match="no version 99"):
        registry.version_tags(settings, model, 99)
    with pytest.raises(OrchardError, match="unknown alias action 'crown'"):
        registry.set_alias(
            settings,
            model,
            "champion",
            1,
            action="crown",
            reason="r",
            approver="a",
            gate=None,
            effective_month="2020-01",
        )


def test_lineage_and_requirements_helpers() -> None:
    # given a lineage with many batches and an sklearn model
    many = Lineage([f"applications:{i:04d}-batch" for i in range(500)], "b" * 64, [], "svc_v1", "v", "w")
    # then tags stay short and say how many ids were left out; requirements are pinned
    tags = lineage_tags(many)
    assert len(tags["orchard.lineage.batch_ids"]) <= 1000 and "more)" in tags["orchard.lineage.batch_ids"], (
        tags
    )
    assert tags["orchard.lineage.n_batches"] == "500"
    assert "scikit-learn==1.9.1" in pip_requirements(TinyPd(NAME, 1)), pip_requirements(TinyPd(NAME, 1))
    with pytest.raises(OrchardError, match="feature_service"):
        Lineage([], "b", [], "", "v", "w")


_OPEN_AT_ONCE = """
import sys, time
from pathlib import Path
from model_registry.tracking import mlflow_client
from tests.conftest import make_settings
home, ready, go = (Path(a) for a in sys.argv[1:4])
settings = make_settings(home)
ready.touch()
while not go.exists():
    time.sleep(0.001)
client = mlflow_client(settings)
client.search_experiments(max_results=1)
print("opened")
"""


@pytest.mark.slow(seconds=10)
def test_processes_opening_a_new_store_at_once_all_open_it(tmp_path: Path) -> None:
    # Given three processes about to open the same new sqlite store (the lifecycle, its lane, a Dask worker)
    go = tmp_path / "go"
    procs = [
        subprocess.Popen(
            [
                sys.executable,
                "-c",
                _OPEN_AT_ONCE,
                str(tmp_path / "home"),
                str(tmp_path / f"ready{i}"),
                str(go),
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            cwd=Path(__file__).resolve().parents[2],
        )
        for i in range(3)
    ]
    try:
        while not all((tmp_path / f"ready{i}").exists() for i in range(3)):
            assert all(p.poll() is None for p in procs), [p.communicate() for p in procs]
            time.sleep(0.01)
        # When they open it at the same moment
        go.touch()
        outcomes = [p.communicate(timeout=120) for p in procs]
    finally:
        for p in procs:
            p.kill()
    # Then every one opens it (before the lock, all but one failed creating its tables)
    assert all(
        p.returncode == 0 and out.strip() == "opened" for p, (out, _) in zip(procs, outcomes, strict=True)
    ), outcomes
