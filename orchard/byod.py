"""Bring your own data: a one-period evaluation of the one-model portfolio a user's file implies.

`orchard byod --spec dataset.yaml` runs run_byod. The spec becomes a portfolio's model entry and observed label
(orchard.portfolio.from_byod.model_entry: the same entry `--write-portfolio` writes); the whole file is the one
period. The label is the portfolio's observed label (orchard.populations.observed_labels), and both learners are
fitted and one chosen by the lifecycle's fitting (orchard.lifecycle.training.fit_candidates). What BYOD adds is
the evaluation design of one file: its contract (target, id, time), and a train / test / out-of-time split by a
cut-off date or share, since one period has no vintages to hold out.

Every check (spec keys, file, columns, the Great Expectations contract, the split, training and evaluation)
happens before the first MLflow call, so bad input registers nothing. Both models are registered under their own
names, byod_<name>_scorecard and byod_<name>_lightgbm, with no alias: a BYOD run is an evaluation, not an
approved decision, so no `champion` is claimed; the report says which one the portfolio's `algorithm: best` picks.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from model_registry.lineage import Lineage
from model_registry.model_card import build_model_card, log_model_card
from model_registry.registry import register_model
from orchard import __version__
from orchard.atomic import file_sha256
from orchard.byod_spec import ByodSpec, data_path, load_spec
from orchard.contracts.gx_project import GxProject
from orchard.contracts.report import describe_failure
from orchard.credit.metrics import score_psi
from orchard.credit.scorecard import scorecard_of
from orchard.errors import OrchardError
from orchard.landing import file_format_of, read_table, utc_times
from orchard.lifecycle.training import evaluate_samples, fit_candidates
from orchard.model_specs import ModelSpec, spec_of
from orchard.populations import observed_labels
from orchard.portfolio.from_byod import ROW_ID, model_entry, model_name
from orchard.portfolio.spec import LabelDef, ModelDef, ObservedLabel
from orchard.settings import Settings

log = logging.getLogger(__name__)

LABEL = "bad"
MIN_ROWS = 50
SAMPLES = ("train", "test", "oot")


@dataclass(frozen=True)
class PreparedData:
    """The validated dataset: its model (a portfolio's entry), 0/1 label, and the train / test / oot split."""

    frame: pd.DataFrame
    model: ModelSpec
    train: pd.DataFrame
    test: pd.DataFrame
    oot: pd.DataFrame
    split: str
    data_sha256: str
    suite: str

    @property
    def features(self) -> list[str]:
        return self.model.features

    @property
    def categorical(self) -> list[str]:
        return list(self.model.categorical)


@dataclass(frozen=True)
class ByodResult:
    """What a BYOD run trained, how it performed, and where it was registered."""

    name: str
    data: str
    n_rows: int
    bad_rate: float
    split: str
    sizes: dict[str, int]
    candidates: list[str]
    selected: list[str]
    choice: str  # which learner the portfolio's `algorithm: best` registers, and why
    evaluations: dict[str, dict[str, dict[str, float]]]  # model kind -> sample -> metrics
    registered: dict[str, str]  # model kind -> "name vN"
    cards: dict[str, dict[str, str]]
    points_table: pd.DataFrame = field(repr=False)
    stability: dict[str, float] = field(default_factory=dict)


def read_dataset(path: Path) -> pd.DataFrame:
    """Read the spec's CSV or Parquet file with the lifecycle's reader of landed files (orchard.landing)."""
    frame = read_table(path, file_format_of(path, "data file"), what="data file")
    if frame.empty:
        raise OrchardError(f"data file {path} has no rows")
    return frame


def _check_columns(spec: ByodSpec, frame: pd.DataFrame) -> None:
    named: list[tuple[str, str]] = [("target", spec.target)]
    named += [("id_column", spec.id_column)] if spec.id_column else []
    named += [("event_time", spec.event_time)] if spec.event_time else []
    named += [("categorical", c) for c in spec.categorical] + [("drop", c) for c in spec.drop]
    named += [("monotone", c) for c in spec.monotone]
    absent = [f"{column!r} (spec key {key})" for key, column in named if column not in frame.columns]
    if absent:
        raise OrchardError(f"dataset {spec.name}: column(s) {', '.join(absent)} not in the data")


def _parse_time(spec: ByodSpec, frame: pd.DataFrame) -> pd.DataFrame:
    if spec.event_time is None:
        return frame
    raw = frame[spec.event_time]
    parsed = utc_times(raw, spec.timezone, lenient=True)
    bad = parsed.isna() & raw.notna()
    if bad.any():
        examples = raw[bad].astype(str).unique()[:3].tolist()
        raise OrchardError(
            f"dataset {spec.name}: event_time column {spec.event_time!r} has {int(bad.sum())} unparsable "
            f"value(s) (or local times that do not exist or repeat in {spec.timezone}), e.g. {examples}"
        )
    if parsed.isna().any():
        raise OrchardError(f"dataset {spec.name}: event_time column {spec.event_time!r} has missing values")
    return frame.assign(**{spec.event_time: parsed})


def build_byod_suite(spec: ByodSpec) -> Any:
    """Return the Great Expectations contract the spec implies for its data file."""
    import great_expectations as gx  # deferred: Great Expectations takes seconds to import
    from great_expectations import expectations as gxe

    expectations: list[Any] = [
        gxe.ExpectTableRowCountToBeBetween(min_value=MIN_ROWS),
        gxe.ExpectColumnValuesToNotBeNull(column=spec.target),
        gxe.ExpectColumnUniqueValueCountToBeBetween(column=spec.target, min_value=2),
        gxe.ExpectColumnDistinctValuesToContainSet(column=spec.target, value_set=[spec.bad_value]),
    ]
    if spec.id_column:
        expectations += [
            gxe.ExpectColumnValuesToNotBeNull(column=spec.id_column),
            gxe.ExpectColumnValuesToBeUnique(column=spec.id_column),
        ]
    if spec.event_time:
        expectations.append(gxe.ExpectColumnValuesToNotBeNull(column=spec.event_time))
    return gx.ExpectationSuite(
        name=f"byod_{spec.name}_contract", expectations=expectations, meta={"derived_from": "byod spec"}
    )


def _describe(spec: ByodSpec, item: dict[str, Any]) -> str:
    config = item.get("expectation_config") or {}
    kind = str(config.get("type", ""))
    column = (config.get("kwargs") or {}).get("column")
    result = item.get("result") or {}
    if kind == "expect_column_unique_value_count_to_be_between":
        return f"target column {column!r} holds {result.get('observed_value')} class(es); need good and bad"
    if kind == "expect_column_distinct_values_to_contain_set":
        return f"target column {column!r} never takes the bad value {spec.bad_value!r}"
    if kind == "expect_column_values_to_be_unique":
        examples = list(dict.fromkeys(result.get("partial_unexpected_list") or []))[:5]
        return (
            f"id column {column!r} has {result.get('unexpected_count')} duplicated id row(s), e.g. {examples}"
        )
    if kind == "expect_table_row_count_to_be_between":
        return f"{result.get('observed_value')} rows; need at least {MIN_ROWS}"
    return describe_failure(item)


def _validate_contract(settings: Settings, spec: ByodSpec, frame: pd.DataFrame) -> str:
    suite = build_byod_suite(spec)
    result = GxProject(settings.gx_dir).validate(f"byod_{spec.name}", frame, suite)
    if not result.success:
        failed = [i for i in result.to_json_dict().get("results", []) if not i.get("success")]
        raise OrchardError(
            f"dataset {spec.name} broke its contract: " + "; ".join(_describe(spec, i) for i in failed)
        )
    return suite.name


def _two_classes(spec: ByodSpec, sample: pd.DataFrame, what: str) -> None:
    if sample.empty or sample[LABEL].nunique() < 2:
        raise OrchardError(
            f"dataset {spec.name}: the {what} sample has {len(sample)} rows and "
            f"{sample[LABEL].nunique() if len(sample) else 0} class(es); adjust the oot split"
        )


def split_samples(
    spec: ByodSpec, frame: pd.DataFrame
) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame, str]:
    """Split into train, test (random in-time share) and out-of-time per the spec; describe the split."""
    rng = np.random.default_rng(spec.seed)
    if spec.oot.cutoff is not None:
        cutoff = pd.Timestamp(spec.oot.cutoff).tz_localize(spec.timezone).tz_convert("UTC")
        is_oot = (frame[spec.event_time] >= cutoff).to_numpy()
        split = f"out of time: {spec.event_time} >= {spec.oot.cutoff} ({spec.timezone})"
    elif spec.event_time is not None:
        order = frame[spec.event_time].rank(method="first").to_numpy()
        is_oot = order > len(frame) * (1.0 - float(spec.oot.fraction or 0))
        split = f"out of time: latest {spec.oot.fraction:.0%} of rows by {spec.event_time}"
    else:
        n_oot = round(len(frame) * float(spec.oot.fraction or 0))
        is_oot = np.zeros(len(frame), dtype=bool)
        is_oot[rng.permutation(len(frame))[:n_oot]] = True
        split = (
            f"holdout: random {spec.oot.fraction:.0%} of rows (seed {spec.seed}); the data has no time axis"
        )
    oot, dev = frame[is_oot], frame[~is_oot]
    _two_classes(spec, oot, "out-of-time")
    is_test = np.zeros(len(dev), dtype=bool)
    is_test[rng.permutation(len(dev))[: round(len(dev) * spec.test_fraction)]] = True
    train, test = dev[~is_test], dev[is_test]
    _two_classes(spec, train, "training")
    _two_classes(spec, test, "test")
    return train, test, oot, split


def byod_model(spec: ByodSpec, frame: pd.DataFrame) -> tuple[ModelSpec, ObservedLabel]:
    """Return the file's one model and its label, validated as a portfolio's model entry and label are."""
    _, model, label = model_entry(spec, frame)
    observed = ObservedLabel.model_validate(label["observed"])
    rule = LabelDef(description=label["description"], observed=observed)
    return spec_of(model_name(spec), ModelDef.model_validate(model), rule), observed


def prepare_data(settings: Settings, spec: ByodSpec, spec_path: Path) -> PreparedData:
    """Read the file, check its columns, time and contract, derive the label and split; no MLflow involved."""
    path = data_path(spec, spec_path)
    frame = read_dataset(path)
    _check_columns(spec, frame)
    frame = _parse_time(spec, frame)
    suite = _validate_contract(settings, spec, frame)
    if spec.id_column is None:
        frame = frame.assign(**{ROW_ID: np.arange(len(frame))})
    model, label = byod_model(spec, frame)
    auto = [c for c in model.categorical if c not in spec.categorical]
    if auto:
        log.info("dataset %s: text column(s) %s are treated as categorical", spec.name, ", ".join(auto))
    bad, _ = observed_labels(label, frame)
    frame = frame.assign(**{LABEL: bad.astype(int)})  # the contract refuses an empty target
    train, test, oot, split = split_samples(spec, frame)
    return PreparedData(frame, model, train, test, oot, split, file_sha256(path), suite)


def _window(spec: ByodSpec, data: PreparedData) -> str:
    if spec.event_time is None:
        return f"{len(data.frame)} rows without a time axis; {data.split}"
    times = data.frame[spec.event_time]
    return f"{times.min():%Y-%m-%d}..{times.max():%Y-%m-%d}; {data.split}"


def _limitations(spec: ByodSpec, data: PreparedData) -> list[str]:
    notes = [
        "Trained on the booked population the file holds: no reject inference.",
        f"{len(data.train)} training rows; figures on small samples carry wide uncertainty.",
    ]
    if spec.event_time is None:
        notes.append("No time axis: the 'oot' sample is a random holdout, not a later period.")
    return notes


def run_byod(settings: Settings, spec_path: Path) -> ByodResult:
    """Validate a user's dataset, train a scorecard and a LightGBM challenger, register both with cards."""
    spec_path = Path(spec_path)
    spec = load_spec(spec_path)
    data = prepare_data(settings, spec, spec_path)
    base = f"byod_{spec.name}"
    fitted = fit_candidates(
        data.model, data.train, data.test, spec.seed, (f"{base}_lightgbm", f"{base}_scorecard")
    )
    scorecard, lightgbm = fitted.scorecard, fitted.lightgbm
    models = {"scorecard": scorecard, "lightgbm": lightgbm}
    samples = {"train": data.train, "test": data.test, "oot": data.oot}
    # the lifecycle's evaluation of a trained model (orchard.lifecycle.training)
    evaluations = {kind: evaluate_samples(model, samples) for kind, model in models.items()}
    card = scorecard_of(scorecard)
    stability = {
        "score (scorecard)": score_psi(scorecard.score(data.train), scorecard.score(data.oot)),
        **{f"csi {k}": v for k, v in card.binning.csi(data.oot).items()},
    }
    # Everything above can fail on bad input; nothing below runs unless it all passed.
    train_key = f"byod:{data.data_sha256[:16]}:{spec.sha256()[:12]}"
    lineage = Lineage(
        batch_ids=[base],
        data_sha256=data.data_sha256,
        validation_ids=[f"{data.suite}:passed"],
        feature_service=f"byod:{spec.name}",
        code_version=__version__,
        train_window=_window(spec, data)[:200],
        extra={"spec": str(spec_path.resolve()), "split": data.split},
    )
    registered: dict[str, str] = {}
    cards: dict[str, dict[str, str]] = {}
    for kind, model in models.items():
        metrics = {f"{s}_{k}": v for s, r in evaluations[kind].items() for k, v in r.metrics().items()}
        artifacts: dict[str, dict | str] = {
            "byod_spec.json": spec.model_dump(mode="json"),
            "evaluation.json": {s: r.to_dict() for s, r in evaluations[kind].items()},
        }
        if kind == "scorecard":
            artifacts["scorecard.json"] = card.to_dict()
            artifacts["points_table.csv"] = card.points_table().to_csv(index=False)
        ref = register_model(
            settings,
            model.name,
            model,
            train_key=train_key,
            metrics=metrics,
            params={"kind": kind, "seed": spec.seed, "n_train": len(data.train), "split": data.split[:250]},
            lineage=lineage,
            input_example=data.train.head(5),
            artifacts=artifacts,
        )
        model_card = build_model_card(
            name=model.name,
            version=ref.version,
            model=model,
            purpose=f"Probability that a case of {spec.name} is bad ({spec.target} = {spec.bad_value!r})"
            + (f": {spec.description}" if spec.description else ""),
            population=f"all {len(data.frame)} rows of {data_path(spec, spec_path).name}",
            label=f"{spec.target} == {spec.bad_value!r}",
            maturity="as given in the file (BYOD labels are taken as final)",
            data_window=_window(spec, data),
            lineage={
                "train_key": train_key,
                "data_sha256": data.data_sha256,
                "contract": data.suite,
                "spec": str(spec_path),
            },
            performance=dict(evaluations[kind]),
            feature_iv=card.selection.get("candidate_iv", {}),
            stability=stability
            if kind == "scorecard"
            else {"score": score_psi(model.score(data.train), model.score(data.oot))},
            limitations=_limitations(spec, data),
            approval_status="not for decisions",
        )
        cards[kind] = log_model_card(settings, model.name, ref.version, model_card)
        registered[kind] = f"{ref.name} v{ref.version}"
    return ByodResult(
        name=spec.name,
        data=str(data_path(spec, spec_path)),
        n_rows=len(data.frame),
        bad_rate=float(data.frame[LABEL].mean()),
        split=data.split,
        sizes={"train": len(data.train), "test": len(data.test), "oot": len(data.oot)},
        candidates=data.features,
        selected=list(scorecard.features),
        choice=fitted.reason,
        evaluations={k: {s: r.metrics() for s, r in v.items()} for k, v in evaluations.items()},
        registered=registered,
        cards=cards,
        points_table=card.points_table(),
        stability=stability,
    )


def format_byod_result(result: ByodResult) -> str:
    """Return the evaluation as plain text for the CLI to print."""
    lines = [
        f"BYOD {result.name}: {result.n_rows} rows, bad rate {result.bad_rate:.1%} ({result.data})",
        f"split: {result.split}; " + ", ".join(f"{k} {v}" for k, v in result.sizes.items()),
        f"scorecard features ({len(result.selected)} of {len(result.candidates)}): {', '.join(result.selected)}",
        "",
        f"{'model':<10} {'sample':<6} {'AUC':>6} {'Gini':>6} {'KS':>6} {'bad rate':>9}",
    ]
    for kind, samples in result.evaluations.items():
        for sample, m in samples.items():
            lines.append(
                f"{kind:<10} {sample:<6} {m['auc']:6.3f} {m['gini']:6.3f} {m['ks']:6.3f} {m['bad_rate']:9.1%}"
            )
    lines += ["", "points table (scorecard):"]
    table = result.points_table
    for row in table[table["count"] > 0].to_dict("records"):
        lines.append(f"  {row['feature']:<32.32} {row['bin']:<40.40} {row['points_rounded']:>5d}")
    score_psi_value = result.stability.get("score (scorecard)")
    if score_psi_value is not None:
        lines.append(f"score PSI train -> oot: {score_psi_value:.4f}")
    lines.append(f"as a portfolio model ({result.name}_pd): {result.choice}")
    lines.append("registered: " + ", ".join(result.registered.values()) + " (no alias; model cards logged)")
    return "\n".join(lines)
