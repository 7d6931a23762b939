"""The portfolio definition: the demo validates, every bad definition is one error line naming file, line, key."""

from __future__ import annotations

import re
from pathlib import Path

import pandas as pd
import pytest
import yaml

from orchard.errors import OrchardError
from orchard.federated.data import simulator_guest_spec
from orchard.landing import landed_months, normalise, read_landed
from orchard.lifecycle.plan import claim_home, plan_run
from orchard.lifecycle.promotion import protected_groups
from orchard.model_specs import model_specs, primary_model, served_specs
from orchard.portfolio.deployments import deployments, write_deployments
from orchard.portfolio.load import load_portfolio, parse_portfolio
from orchard.portfolio.scaffold import scaffold_portfolio
from orchard.settings import DEMO_PORTFOLIO, Settings
from orchard.sources import source_spec
from orchard.testing.demo import demo_portfolio

BANK = """
name: bank
timezone: Asia/Shanghai
sources:
  loans:
    landing: {path: "drop/loans_{period}.csv"}
    key: [loan_ref]
    event_time: opened_on
    columns:
      loan_ref: {type: string}
      client: {type: string}
      opened_on: {type: timestamp}
      principal: {type: float, min: 100, max: 50000}
      product: {type: category, values: [cash, card]}
    foreign_keys: {client: clients.client}
  clients:
    landing: {path: "drop/clients_{period}.parquet"}
    key: [client]
    event_time: as_of
    timezone: UTC
    columns:
      client: {type: string}
      as_of: {type: timestamp}
      age: {type: int, min: 18, max: 99}
entities:
  person: {join_key: client}
views:
  person_profile:
    entity: person
    source: clients
    ttl_days: 62
    snapshot: {age: {type: int, description: age in years}}
labels:
  early_default:
    performance: {source: loans, match: {loan_ref: loan_ref}, event: "principal > 40000", within_months: 3}
models:
  loan_pd:
    purpose: a test model
    population: {source: loans, key: loan_ref, entity: client}
    label: early_default
    views: [person_profile]
    features: [age]
    request_features: [principal, product]
    categorical: [product]
    serve: true
"""


def _error_of(text: str) -> str:
    with pytest.raises(OrchardError) as info:
        parse_portfolio(text, Path("."), "p.yaml")
    return str(info.value)


def _edit(path: str, value: object) -> str:
    """Return BANK with one key (dotted path) set to value (None deletes it)."""
    document = yaml.safe_load(BANK)
    *parents, last = path.split(".")
    node = document
    for part in parents:
        node = node[part]
    if value is None:
        del node[last]
    else:
        node[last] = value
    return yaml.safe_dump(document, sort_keys=False)


def test_the_demo_portfolio_defines_five_sources_and_six_models() -> None:
    # Given the shipped demo portfolio, when loading it, then it holds the simulator's sources and models
    portfolio = load_portfolio(DEMO_PORTFOLIO)
    assert list(portfolio.sources) == [
        "partner_users",
        "applications",
        "repayments",
        "campaigns",
        "collections",
    ]
    assert len(model_specs(portfolio)) == 6 and primary_model(portfolio) == "application_pd"
    assert sorted(served_specs(portfolio)) == ["application_fraud", "application_pd"]
    kinds = {name: spec.kind for name, spec in model_specs(portfolio).items()}
    assert kinds["precredit_response"] == "tiers" and kinds["loss_forecast"] == "expected_loss"


def test_a_bank_layout_validates_and_maps_to_the_lake() -> None:
    # Given a portfolio with other names, keys, a renamed event time and time zones
    portfolio = parse_portfolio(BANK, Path("."))
    loans = source_spec(portfolio, "loans")
    # Then the lake layout renames the event time to event_ts, appends batch_id, keeps the zone
    assert loans.column_names == ["loan_ref", "client", "event_ts", "principal", "product", "batch_id"]
    assert loans.timezone == "Asia/Shanghai" and source_spec(portfolio, "clients").timezone == "UTC"
    assert loans.foreign_keys == (("client", "clients.client"),)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (BANK.replace("    key: [loan_ref]", "    kee: [loan_ref]"), r"p\.yaml:\d+: unknown key 'kee'"),
        (BANK.replace("min: 100, max", "mn: 100, max"), r"p\.yaml:\d+: unknown key 'mn' at sources\.loans"),
        (BANK.replace("key: [loan_ref]", "key: [loan_id]"), r"sources\.loans: .*'loan_id' is not among"),
        (
            BANK.replace("source: loans, match", "source: statements, match"),
            r"labels\.early_default: .*'statements'",
        ),
        (
            BANK.replace("clients.client}", "customers.client}"),
            r"foreign_keys\.client: no source 'customers'",
        ),
        (BANK.replace("features: [age]", "features: [age, income]"), r"models\.loan_pd: feature 'income'"),
        (
            BANK.replace("timezone: Asia/Shanghai", "timezone: Mars/Olympus"),
            r"unknown time zone 'Mars/Olympus'",
        ),
        (BANK.replace('"drop/loans_{period}.csv"', '"drop/loans.csv"'), r"must contain \{period\}"),
        (BANK.replace("entity: person", "entity: human"), r"views\.person_profile: entity 'human'"),
        (
            BANK.replace("label: early_default", "label: late_default"),
            r"label 'late_default' is not declared",
        ),
    ],
    ids=[
        "misspelt-key",
        "misspelt-nested-key",
        "unknown-column",
        "label-missing-source",
        "fk-to-nowhere",
        "feature-nowhere",
        "bad-zone",
        "no-period",
        "unknown-entity",
        "unknown-label",
    ],
)
def test_each_bad_definition_is_one_line_naming_the_problem(text: str, expected: str) -> None:
    # Given a portfolio with one mistake, when loading it, then one line names the file, line and problem
    message = _error_of(text)
    assert "\n" not in message and re.search(expected, message), message


POLICY = """policy:
  min_mature_vintages: 4
  gates: {max_auc_drop: 0.02}
  monitoring: {retrain_cooldown_months: 2}
"""


def test_the_policy_is_the_portfolios_with_each_models_own_keys_over_it() -> None:
    # Given a portfolio-wide policy and a model that overrides one nested key and one top-level key
    text = BANK.replace(
        "    serve: true", "    serve: true\n    policy: {oot_months: 3, gates: {max_ks_drop: 0.05}}"
    )
    policy = parse_portfolio(text + POLICY, Path(".")).models["loan_pd"].policy
    # Then the model keeps the portfolio's keys it did not override, and defaults fill the rest
    assert (policy.min_mature_vintages, policy.oot_months) == (4, 3)
    assert (policy.gates.max_auc_drop, policy.gates.max_ks_drop) == (0.02, 0.05)
    assert policy.monitoring.retrain_cooldown_months == 2 and policy.monitoring.score_psi_breach == 0.25
    # And without any policy block every model gets the documented defaults
    default = parse_portfolio(BANK, Path(".")).models["loan_pd"].policy
    assert (default.min_mature_vintages, default.oot_months, default.promotion_margin_auc) == (6, 2, 0.005)


def test_the_demo_declares_its_label_windows_and_policy_as_data() -> None:
    portfolio = demo_portfolio()
    windows = {name: (label.strategy, label.within_months) for name, label in portfolio.labels.items()}
    assert windows["dpd90_6m"] == ("loan_event", 6) and windows["charge_off_12m"] == ("charge_off", 12)
    assert windows["cure_2m"] == ("cure", 2) and windows["first_payment_default"][1] is None
    assert {m.policy for m in portfolio.models.values()} == {portfolio.policy}


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            BANK + POLICY.replace("gates: {max_auc_drop", "gates: {max_auc_dorp"),
            r"unknown key 'max_auc_dorp'",
        ),
        (
            BANK + POLICY.replace("min_mature_vintages: 4", "min_mature_vintages: 1"),
            r"policy\.min_mature_vintages: .*greater than or equal to 2",
        ),
        (
            BANK.replace("    serve: true", "    serve: true\n    policy: {oot_month: 1}"),
            r"unknown key 'oot_month' at models\.loan_pd\.policy",
        ),
        (
            BANK.replace(
                '    performance: {source: loans, match: {loan_ref: loan_ref}, event: "principal > 40000", '
                "within_months: 3}",
                "    strategy: loan_event",
            ),
            r"strategy loan_event needs within_months",
        ),
        (
            BANK.replace(
                '    performance: {source: loans, match: {loan_ref: loan_ref}, event: "principal > 40000", '
                "within_months: 3}",
                "    observed: {column: product, bad_values: [card]}",
            ),
            r"'product' is the label's outcome; it cannot be a feature",
        ),
        (
            BANK.replace(
                '    performance: {source: loans, match: {loan_ref: loan_ref}, event: "principal > 40000", '
                "within_months: 3}",
                "    outcome_date: {column: principal, within_months: 3}",
            ),
            r"outcome date loans\.principal must be of type timestamp",
        ),
        (
            BANK.replace(
                "    label: early_default", "    label: early_default\n    early_label: sooner_default"
            ),
            r"models\.loan_pd: early_label 'sooner_default' is not declared under labels",
        ),
        (
            BANK.replace(
                "    label: early_default", "    label: early_default\n    early_label: early_default"
            ),
            r"early_label must be another label than the model's own",
        ),
        (
            BANK.replace(
                "    label: early_default",
                "    label: early_default\n    early_label: x\n    kind: expected_loss",
            ),
            r"early_label recalibrates a PD model; a model of kind expected_loss has none",
        ),
        (
            BANK.replace("    label: early_default", "    label: early_default\n    reject_inference: {}"),
            r"reject_inference .* needs kind pd and a population 'trainable' rule",
        ),
        (
            BANK.replace(
                "key: loan_ref, entity: client}", 'key: loan_ref, entity: client, trainable: "principal > 0"}'
            ).replace(
                "    label: early_default", "    label: early_default\n    reject_inference: {factor: 0.5}"
            ),
            r"reject_inference\.factor.*greater than or equal to 1",
        ),
    ],
    ids=[
        "misspelt-gate",
        "policy-range",
        "misspelt-model-policy",
        "window-missing",
        "outcome-as-feature",
        "date-type",
        "early-label-unknown",
        "early-label-own",
        "early-label-kind",
        "reject-inference-without-trainable",
        "reject-inference-factor",
    ],
)
def test_bad_policies_and_labels_are_one_line_naming_the_problem(text: str, expected: str) -> None:
    message = _error_of(text)
    assert "\n" not in message and re.search(expected, message), message


def test_the_line_of_a_misspelt_key_is_its_own() -> None:
    # Given a misspelt key on a known line, when loading, then the error points at that line
    text = BANK.replace("    key: [loan_ref]", "    kee: [loan_ref]")
    line = next(i for i, row in enumerate(text.splitlines(), start=1) if "kee:" in row)
    assert f"p.yaml:{line}: unknown key 'kee'" in _error_of(text)


def test_an_unreadable_or_missing_portfolio_is_named(tmp_path: Path) -> None:
    with pytest.raises(OrchardError, match="no portfolio at"):
        load_portfolio(tmp_path)
    (tmp_path / "portfolio.yaml").write_bytes(b"\xff\xfe\x00garbage")
    with pytest.raises(OrchardError, match="portfolio"):
        load_portfolio(tmp_path)
    (tmp_path / "portfolio.yaml").write_text("name: [unclosed")
    with pytest.raises(OrchardError, match="not valid YAML"):
        load_portfolio(tmp_path)


def test_a_naive_csv_batch_is_read_in_its_zone_and_normalised(tmp_path: Path) -> None:
    # Given a bank's CSV whose times are naive Shanghai wall-clock times and whose ids have leading zeros
    folder = tmp_path / "bank"
    (folder / "drop").mkdir(parents=True)
    (folder / "portfolio.yaml").write_text(BANK)
    (folder / "drop" / "loans_2021-03.csv").write_text(
        "loan_ref,client,opened_on,principal,product\n"
        "007,C1,2021-03-01 06:00:00,1000,cash\n"
        "008,C2,2021-03-31 23:30:00,2000,card\n"
    )
    spec = source_spec(load_portfolio(folder), "loans")
    # When reading the batch where it lands
    landed = read_landed(spec, "2021-03", portfolio_folder=folder, home=tmp_path / "state", sql_urls={})
    frame = landed.frame
    # Then ids stay text, times are UTC (Shanghai is UTC+8), the batch id is added, the order is the lake's
    assert frame["loan_ref"].tolist() == ["007", "008"], "ids keep their leading zeros"
    assert str(frame["event_ts"].dt.tz) == "UTC"
    assert frame["event_ts"].tolist() == [
        pd.Timestamp("2021-02-28 22:00", tz="UTC"),
        pd.Timestamp("2021-03-31 15:30", tz="UTC"),
    ]
    assert frame["batch_id"].unique().tolist() == ["loans-2021-03"]
    assert list(frame.columns) == spec.column_names
    assert landed_months(spec, portfolio_folder=folder, home=tmp_path) == ["2021-03"]


def test_a_zoned_csv_batch_across_daylight_saving_is_converted_to_utc() -> None:
    # Given zoned times as a lender's CSV holds them, whose offset changes in the month (Berlin, +01:00 -> +02:00)
    spec = source_spec(parse_portfolio(BANK, Path(".")), "loans")
    times = ["2021-03-27 10:00:00+01:00", "2021-03-29 10:00:00+02:00"]
    raw = pd.DataFrame(
        {
            "loan_ref": ["1", "2"],
            "client": ["C", "D"],
            "opened_on": times,
            "principal": [1.0, 2.0],
            "product": ["cash", "card"],
        }
    )
    # When normalising / Then each keeps its own offset and both are UTC instants (the zone of naive times unused)
    out = normalise(raw, spec, "2021-03")
    assert str(out["event_ts"].dt.tz) == "UTC", out["event_ts"].dtype
    assert out["event_ts"].tolist() == [
        pd.Timestamp("2021-03-27 09:00", tz="UTC"),
        pd.Timestamp("2021-03-29 08:00", tz="UTC"),
    ]


def test_a_value_of_the_wrong_type_is_left_for_the_contract() -> None:
    # Given a time column holding text that is not a time, when normalising, then it is not coerced
    spec = source_spec(parse_portfolio(BANK, Path(".")), "loans")
    raw = pd.DataFrame(
        {
            "loan_ref": ["1"],
            "client": ["C"],
            "opened_on": ["yesterday"],
            "principal": [1.0],
            "product": ["cash"],
        }
    )
    out = normalise(raw, spec, "2021-03")
    assert out["event_ts"].tolist() == ["yesterday"], "the contract must see the bad value and quarantine"


def _bank_settings(tmp_path: Path) -> tuple[Path, Settings]:
    folder = tmp_path / "bank"
    (folder / "drop").mkdir(parents=True)
    (folder / "portfolio.yaml").write_text(BANK)
    return folder, Settings(_env_file=None, home=tmp_path / "state", portfolio=folder)  # type: ignore[call-arg]


def _land(folder: Path, source: str, month: str) -> None:
    suffix = "csv" if source == "loans" else "parquet"
    (folder / "drop" / f"{source}_{month}.{suffix}").write_text("x")


def test_a_run_processes_landed_periods_and_stops_at_a_late_one(tmp_path: Path) -> None:
    # Given loans for Jan-Apr but clients for Jan, Feb and Apr (March is late)
    folder, settings = _bank_settings(tmp_path)
    for month in ("2021-01", "2021-02", "2021-03", "2021-04"):
        _land(folder, "loans", month)
    for month in ("2021-01", "2021-02", "2021-04"):
        _land(folder, "clients", month)
    # When planning, then Jan-Feb run and March is reported as late, not guessed
    plan = plan_run(settings)
    assert plan.months == ["2021-01", "2021-02"]
    assert plan.missing == {"2021-03": ["clients"]} and plan.late
    assert any("2021-03 is late" in line and "clients" in line for line in plan.report())
    # And once March lands the whole window runs
    _land(folder, "clients", "2021-03")
    assert plan_run(settings).months == ["2021-01", "2021-02", "2021-03", "2021-04"]
    assert plan_run(settings, "2021-02").months == ["2021-01", "2021-02"]


def test_a_feature_window_longer_than_the_data_is_refused(tmp_path: Path) -> None:
    folder, _ = _bank_settings(tmp_path)
    text = BANK.replace(
        "    snapshot: {age: {type: int, description: age in years}}",
        "    aggregations: {max_age_12m: {how: max, column: age, window_months: 12}}",
    ).replace("features: [age]", "features: [max_age_12m]")
    (folder / "portfolio.yaml").write_text(text)
    settings = Settings(_env_file=None, home=tmp_path / "state", portfolio=folder)  # type: ignore[call-arg]
    for month in ("2021-01", "2021-02"):
        _land(folder, "loans", month)
        _land(folder, "clients", month)
    with pytest.raises(
        OrchardError, match=r"max_age_12m: a 12-month window is longer than the data \(2 periods"
    ):
        plan_run(settings)


def test_a_state_folder_belongs_to_one_portfolio(tmp_path: Path) -> None:
    # Given a state folder used by the bank portfolio
    _, settings = _bank_settings(tmp_path)
    claim_home(settings)
    claim_home(settings)  # the same portfolio again is fine
    # When the demo is pointed at it, then it is refused, naming both
    demo = settings.model_copy(update={"portfolio": DEMO_PORTFOLIO})
    with pytest.raises(OrchardError, match="holds portfolio 'bank', not 'demo'"):
        claim_home(demo)


def test_init_scaffolds_a_valid_portfolio_with_review_marks(tmp_path: Path) -> None:
    # Given two sample files of a lender
    apps = tmp_path / "apps.csv"
    apps.write_text(
        "application_id,customer_id,applied_at,amount,grade\n"
        "A1,C1,2021-01-03 10:00:00,1000,A\nA2,C2,2021-01-04 11:00:00,1500,B\nA3,C1,2021-01-09 12:00:00,700,A\n"
    )
    pd.DataFrame(
        {
            "customer_id": ["C1", "C2"],
            "seen_at": pd.to_datetime(["2021-01-01", "2021-01-01"], utc=True),
            "age": [30, 40],
        }
    ).to_parquet(tmp_path / "customers.parquet")
    # When scaffolding, then the file validates, guesses keys, time columns, types, categories and links
    path = scaffold_portfolio(tmp_path / "pf", [apps, tmp_path / "customers.parquet"])
    portfolio = load_portfolio(path.parent)
    applications = portfolio.sources["apps"]
    assert applications.key == ("application_id",) and applications.event_time == "applied_at"
    assert applications.columns["customer_id"].type == "string", "an id-like column is text"
    assert applications.columns["grade"].type == "category" and applications.columns["amount"].type == "int"
    assert applications.foreign_keys == {"customer_id": "customers.customer_id"}
    assert portfolio.sources["customers"].event_time == "seen_at"
    assert path.read_text().count("REVIEW") >= 5
    with pytest.raises(OrchardError, match="never overwrites"):
        scaffold_portfolio(tmp_path / "pf", [apps])


def test_demo_helpers_read_the_shipped_file() -> None:
    assert demo_portfolio().name == "demo" and demo_portfolio().simulated


def test_prefect_yaml_is_the_demo_portfolio_generated(tmp_path: Path) -> None:
    # Given the repository's prefect.yaml, when regenerating it from the demo portfolio, then nothing differs
    generated = write_deployments(load_portfolio(DEMO_PORTFOLIO), tmp_path / "prefect.yaml")
    assert generated.read_text() == (DEMO_PORTFOLIO.parents[1] / "prefect.yaml").read_text(), (
        "prefect.yaml drifted from the portfolio: run `orchard deployments --portfolio portfolios/demo`"
    )
    # And a seventh model gets its own train (breach-triggered) and monitor deployments, no hand edits
    bank = parse_portfolio(BANK, tmp_path)
    document = deployments(bank, str(tmp_path))
    names = [d["name"] for d in document["deployments"]]
    assert all(
        d["job_variables"]["env"]["ORCHARD_PORTFOLIO"] == str(tmp_path) for d in document["deployments"]
    )
    assert {"train-loan_pd", "monitor-loan_pd", "score-loan_pd"} <= set(names)


def test_the_demo_declares_its_federated_table_as_the_job_uses_it() -> None:
    # Given the demo portfolio's own (guest) table, then it is the table the federated job builds and checks
    assert demo_portfolio().federated == simulator_guest_spec()
    with pytest.raises(OrchardError, match="label_column"):
        parse_portfolio(BANK + "federated: {role: guest, id_column: id, features: [{name: x}]}\n", Path("."))


def test_fairness_groups_come_from_the_portfolio() -> None:
    # Given the demo's protected attribute (age in bands) and a bank without one
    window = pd.DataFrame({"age": [19, 30, 40, 70, None]})
    groups, name = protected_groups(demo_portfolio().fairness, window)
    # Then the demo's gates report age bands, and a portfolio without the attribute reports none
    assert name == "age_band" and list(groups) == ["18-24", "25-34", "35-49", "50+", "unknown"]
    assert protected_groups(parse_portfolio(BANK, Path(".")).fairness, window) == (None, "group")


def test_a_joint_model_needs_a_simulated_platform_and_its_own_name() -> None:
    # Given the demo, which declares the joint model with the simulated platform
    demo = yaml.safe_load((DEMO_PORTFOLIO / "portfolio.yaml").read_text())
    assert demo_portfolio().joint is not None and demo_portfolio().joint.model == "precredit_response_joint"
    # When a lender's (not simulated) portfolio declares it, or names it like one of its models,
    # or sets a limit out of range, then one line names the problem
    for change, expected in (
        (
            {"simulated": False},
            r"joint: the lifecycle runs the joint model's host only for a simulated portfolio",
        ),
        (
            {"joint": {**demo["joint"], "model": "application_pd"}},
            r"joint\.model 'application_pd' is also a model",
        ),
        ({"joint": {**demo["joint"], "min_rows": 10}}, r"min_rows"),
        ({"joint": {**demo["joint"], "modle": "x"}}, r"unknown key 'modle'"),
        (
            {"joint": {**demo["joint"], "train_vintages": 3}},
            r"joint\.train_vintages 3 is below the 6 labelled vintages a job needs",
        ),
    ):
        message = _error_of(yaml.safe_dump({**demo, **change}, sort_keys=False))
        assert "\n" not in message and re.search(expected, message), message


def test_a_training_window_must_hold_a_fit() -> None:
    # Given the demo, whose policy needs 6 mature vintages for a first fit and holds 2 out
    demo = yaml.safe_load((DEMO_PORTFOLIO / "portfolio.yaml").read_text())
    policy = demo["policy"]
    # When a window of 8 vintages is set for every model, then each model reads it
    windowed = parse_portfolio(
        yaml.safe_dump({**demo, "policy": {**policy, "train_vintages": 8}}, sort_keys=False), DEMO_PORTFOLIO
    )
    assert {m.policy.train_vintages for m in windowed.models.values()} == {8}
    # When a model's window is below what a fit needs, then one line names the model's key and the need
    models = {**demo["models"]}
    models["application_pd"] = {**models["application_pd"], "policy": {"train_vintages": 5}}
    message = _error_of(yaml.safe_dump({**demo, "models": models}, sort_keys=False))
    assert "\n" not in message and re.search(r"train_vintages 5 is below the 6 mature vintages", message), (
        message
    )
