"""Scorecard feature selection: an IV floor, correlation pruning on WOE, then (if asked) forward stepwise.

The trade-off between fewer features and discrimination is one setting, `mode`:
- `max_auc` (default): every feature past the IV floor and the near-duplicate pruning enters the regression
  (optionally capped at `max_features`, strongest IV first); nothing that discriminates is dropped to save a
  column. In benchmarks/real_data.py (four real credit sets, five seeds) its mean held-out AUC matched or beat
  optbinning's BinningProcess + logistic regression on every set; stepwise was 0.001-0.016 lower.
- `parsimonious`: forward stepwise adds features while one raises the evaluation AUC/KS by at least
  `min_gain`, up to `max_features`; it judges each candidate on a labelled holdout (an out-of-time sample) when
  given, else by k-fold CV. Fewer features, possibly some AUC given up.

Each step is a pure function returning what it kept and why it dropped the rest, so the model card can show
the reason for every candidate feature.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

import numpy as np
import pandas as pd

from orchard.credit.metrics import auc, ks
from orchard.errors import OrchardError

log = logging.getLogger(__name__)

Metric = Literal["auc", "ks"]
Mode = Literal["max_auc", "parsimonious"]
MODES: tuple[str, ...] = ("max_auc", "parsimonious")
LOGISTIC_C = 1.0
SOLVER = "newton-cholesky"  # exact Newton steps: 5x faster than lbfgs on few WOE columns


@dataclass(frozen=True)
class SelectionConfig:
    """Thresholds of the selection steps; `mode` says whether stepwise may trade AUC for fewer features."""

    mode: Mode = "max_auc"  # max_auc: keep every feature past the filters; parsimonious: forward stepwise
    min_iv: float = 0.02  # below: 'not predictive' in the usual IV reading
    max_correlation: float = 0.9  # |Pearson| between WOE columns above which the weaker (near-duplicate) goes
    metric: Metric = "auc"  # parsimonious: stepwise criterion on the holdout
    min_gain: float = 0.002  # parsimonious: stop when the best addition improves the metric by less
    max_features: int | None = None  # a cap (strongest IV first in max_auc); None = no cap
    cv_folds: int = 5  # parsimonious without a holdout: stratified k-fold CV (0 = no stepwise)

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise OrchardError(f"selection mode must be one of {', '.join(MODES)}, got {self.mode!r}")
        if self.metric not in ("auc", "ks"):
            raise OrchardError(f"selection metric must be 'auc' or 'ks', got {self.metric!r}")
        if not 0.0 < self.max_correlation <= 1.0:
            raise OrchardError(f"max_correlation must be in (0, 1], got {self.max_correlation}")
        if self.max_features is not None and self.max_features < 1:
            raise OrchardError(f"max_features must be at least 1, got {self.max_features}")
        if self.cv_folds == 1 or self.cv_folds < 0:
            raise OrchardError(f"cv_folds must be 0 (no stepwise) or at least 2, got {self.cv_folds}")
        if self.min_iv < 0 or self.min_gain < 0:
            raise OrchardError("min_iv and min_gain cannot be negative")


@dataclass(frozen=True)
class SelectionResult:
    """The selected features (in order of entry), why every other candidate was dropped, and the steps."""

    selected: list[str]
    dropped: dict[str, str] = field(default_factory=dict)
    steps: list[dict[str, Any]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-serialisable dict."""
        return asdict(self)


def filter_by_iv(iv: dict[str, float], min_iv: float) -> tuple[list[str], dict[str, str]]:
    """Keep features whose IV reaches min_iv, strongest first; return them and the dropped with reasons."""
    ranked = sorted(iv, key=lambda f: (-iv[f], f))
    kept = [f for f in ranked if iv[f] >= min_iv]
    dropped = {f: f"IV {iv[f]:.4f} < {min_iv}" for f in ranked if iv[f] < min_iv}
    return kept, dropped


def prune_correlated(
    woe: pd.DataFrame, iv: dict[str, float], max_correlation: float
) -> tuple[list[str], dict[str, str]]:
    """Walk features by descending IV and drop any whose WOE correlates above the limit with a kept one."""
    ranked = sorted(woe.columns, key=lambda f: (-iv[f], f))
    if not ranked:
        return [], {}
    values = woe[ranked].to_numpy(dtype=float)
    with np.errstate(invalid="ignore", divide="ignore"):
        corr = np.corrcoef(values, rowvar=False) if len(ranked) > 1 else np.ones((1, 1))
    corr = np.nan_to_num(np.atleast_2d(corr), nan=0.0)  # a constant WOE column correlates with nothing
    kept: list[int] = []
    dropped: dict[str, str] = {}
    for i, feature in enumerate(ranked):
        clash = [j for j in kept if abs(corr[i, j]) > max_correlation]
        if clash:
            j = clash[0]
            dropped[feature] = f"|corr| {abs(corr[i, j]):.2f} > {max_correlation} with {ranked[j]}"
        else:
            kept.append(i)
    return [ranked[i] for i in kept], dropped


def _fit_predict(x_train: np.ndarray, y_train: np.ndarray, x_eval: np.ndarray, seed: int) -> np.ndarray:
    from sklearn.linear_model import LogisticRegression  # deferred: heavy to import, only a fit needs it

    model = LogisticRegression(C=LOGISTIC_C, solver=SOLVER, max_iter=500, random_state=seed)
    model.fit(x_train, y_train)
    return model.predict_proba(x_eval)[:, 1]


Fold = tuple[np.ndarray, np.ndarray]


def cv_folds(y: np.ndarray, n_folds: int, seed: int) -> list[Fold]:
    """Return seeded stratified (fit rows, evaluation rows) folds."""
    from sklearn.model_selection import StratifiedKFold  # deferred: heavy to import, only a fit needs it

    splitter = StratifiedKFold(n_splits=n_folds, shuffle=True, random_state=seed)
    return list(splitter.split(np.zeros(len(y)), y))


def stepwise_forward(
    woe: pd.DataFrame,
    y: np.ndarray,
    folds: list[Fold],
    candidates: list[str],
    config: SelectionConfig,
    seed: int,
) -> tuple[list[str], dict[str, str], list[dict[str, Any]]]:
    """Add, one at a time, the candidate that most raises the evaluation AUC/KS (mean over the folds)."""
    measure = auc if config.metric == "auc" else ks
    selected: list[str] = []
    steps: list[dict[str, Any]] = []
    best_so_far = 0.5 if config.metric == "auc" else 0.0
    remaining = list(candidates)
    x = woe[candidates].to_numpy(dtype=float)
    y = np.asarray(y, dtype=int)
    column = {f: i for i, f in enumerate(candidates)}

    def evaluate(features: list[str]) -> float:
        cols = np.array([column[f] for f in features], dtype=np.intp)
        return float(
            np.mean(
                [
                    measure(y[hold], _fit_predict(x[np.ix_(fit, cols)], y[fit], x[np.ix_(hold, cols)], seed))
                    for fit, hold in folds
                ]
            )
        )

    cap = config.max_features or len(candidates)
    while remaining and len(selected) < cap:
        scored = [(evaluate([*selected, f]), f) for f in remaining]
        value, feature = max(scored, key=lambda item: (item[0], -candidates.index(item[1])))
        if value - best_so_far < config.min_gain:
            break
        selected.append(feature)
        remaining.remove(feature)
        steps.append(
            {"step": len(selected), "added": feature, config.metric: value, "gain": value - best_so_far}
        )
        best_so_far = value
    reason = (
        f"max_features {config.max_features} reached"
        if len(selected) == config.max_features
        else f"adds < {config.min_gain} {config.metric.upper()} in stepwise"
    )
    return selected, {f: reason for f in remaining}, steps


def select_features(
    iv: dict[str, float],
    train_woe: pd.DataFrame,
    y_train: np.ndarray,
    config: SelectionConfig,
    seed: int,
    holdout_woe: pd.DataFrame | None = None,
    y_holdout: np.ndarray | None = None,
) -> SelectionResult:
    """Run the IV floor and correlation pruning, then forward stepwise if the mode is parsimonious."""
    kept, dropped = filter_by_iv(iv, config.min_iv)
    if not kept:
        best = max(iv, key=lambda f: iv[f]) if iv else None
        raise OrchardError(
            f"no feature reaches IV {config.min_iv} (best: {best} at {iv.get(best, 0.0):.4f})"
            if best
            else "no candidate features to select from"
        )
    kept, correlated = prune_correlated(train_woe[kept], iv, config.max_correlation)
    dropped.update(correlated)
    steps: list[dict[str, Any]] = []
    folds: list[Fold] = []
    woe, y = train_woe, np.asarray(y_train, dtype=int)
    if config.mode == "parsimonious" and holdout_woe is not None and y_holdout is not None:
        if np.unique(y_holdout).size < 2:
            raise OrchardError("the selection holdout holds a single class; stepwise AUC/KS is undefined")
        # fit on the training rows, judge on the (out-of-time) holdout rows
        woe = pd.concat([train_woe, holdout_woe], ignore_index=True)
        y = np.concatenate([y, np.asarray(y_holdout, dtype=int)])
        folds = [(np.arange(len(train_woe)), np.arange(len(train_woe), len(woe)))]
    elif config.mode == "parsimonious" and config.cv_folds >= 2:
        folds = cv_folds(y, config.cv_folds, seed)
    if folds:
        kept, stepped, steps = stepwise_forward(woe, y, folds, kept, config, seed)
        dropped.update(stepped)
        if not kept:
            raise OrchardError("stepwise selection kept no feature: none improves the evaluation metric")
    elif config.max_features is not None:
        dropped.update(
            {f: f"max_features {config.max_features} reached" for f in kept[config.max_features :]}
        )
        kept = kept[: config.max_features]
    log.info("selected %d of %d features: %s", len(kept), len(iv), ", ".join(kept))
    return SelectionResult(selected=kept, dropped=dropped, steps=steps)
