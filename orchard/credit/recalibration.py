"""Recalibration of a fitted PD model to recent vintages: the champion's ranking kept, its PDs re-mapped.

After a shock the target labels of the new vintages (e.g. 90+ days past due within 6 months) are months away,
but an early-performance label (e.g. 30+ days past due within 3 months) matures sooner. The map is fitted on
the log-odds scale, z = logit(champion PD), in two steps:

1. bridge: on the latest vintages where both labels are mature (before the shock), the early label's and the
   target label's log-odds as lines in z: early = a_e + b_e z and target = a_t + b_t z. Eliminating z gives the
   early-to-target bridge target = g + d early, with d = b_t / b_e and g = a_t - d a_e;
2. recent: on the vintages after the shock whose early labels are mature, early = a_r + b_r z.

The recalibrated model predicts target = g + d (a_r + b_r z) = (g + d a_r) + d b_r z: the champion's log-odds
through one increasing line (a slope that is not positive is refused), so its ranking, AUC and reason codes are
the champion's. The assumption, stated wherever the result is shown: the early-to-target relation measured
before the shock holds after it (as a roll rate from 30+ to 90+ is assumed stable until it can be measured).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import numpy as np

from orchard.credit.model import CreditModel, LightGBMEstimator, PDEstimator
from orchard.credit.scorecard import Scorecard
from orchard.errors import OrchardError

_CLIP = 1e-6
MIN_EVENTS = 10
"""Events and non-events a line needs in each sample it is fitted on."""


def logit(p: np.ndarray) -> np.ndarray:
    """Return ln(p / (1 - p)), with p clipped away from 0 and 1."""
    q = np.clip(np.asarray(p, dtype=float), _CLIP, 1.0 - _CLIP)
    return np.log(q / (1.0 - q))


@dataclass(frozen=True)
class Line:
    """log-odds = intercept + slope * z."""

    intercept: float
    slope: float

    def __call__(self, z: np.ndarray) -> np.ndarray:
        return self.intercept + self.slope * np.asarray(z, dtype=float)


def fit_line(z: np.ndarray, y: np.ndarray, what: str) -> Line:
    """Fit logit P(y = 1) = intercept + slope * z by maximum likelihood (no penalty), or raise naming `what`."""
    from sklearn.linear_model import LogisticRegression  # deferred: heavy to import, only a fit needs it

    y = np.asarray(y, dtype=int)
    events = int(y.sum())
    if min(events, len(y) - events) < MIN_EVENTS:
        raise OrchardError(
            f"{what}: {events} events in {len(y)} rows; a recalibration needs at least {MIN_EVENTS} of each class"
        )
    regression = LogisticRegression(penalty=None, solver="lbfgs", max_iter=1000)
    regression.fit(np.asarray(z, dtype=float).reshape(-1, 1), y)
    return Line(float(regression.intercept_[0]), float(regression.coef_[0, 0]))


@dataclass(frozen=True)
class Recalibration:
    """The fitted lines and the map they compose: target log-odds = intercept + slope * champion log-odds."""

    bridge_early: Line
    bridge_target: Line
    recent_early: Line

    @property
    def bridge(self) -> Line:
        """Return the early-to-target bridge: target log-odds = g + d * early log-odds."""
        d = self.bridge_target.slope / self.bridge_early.slope
        return Line(self.bridge_target.intercept - d * self.bridge_early.intercept, d)

    @property
    def map(self) -> Line:
        """Return the recalibration: target log-odds as a line in the champion's log-odds."""
        bridge = self.bridge
        return Line(
            bridge.intercept + bridge.slope * self.recent_early.intercept,
            bridge.slope * self.recent_early.slope,
        )

    def early_log_odds(self, target_log_odds: np.ndarray) -> np.ndarray:
        """Return the early label's log-odds that a target log-odds stands for (the bridge inverted)."""
        bridge = self.bridge
        return (np.asarray(target_log_odds, dtype=float) - bridge.intercept) / bridge.slope

    def to_dict(self) -> dict[str, float]:
        """Return the lines and the composed map as JSON-ready numbers."""
        return {
            "bridge_early_intercept": self.bridge_early.intercept,
            "bridge_early_slope": self.bridge_early.slope,
            "bridge_target_intercept": self.bridge_target.intercept,
            "bridge_target_slope": self.bridge_target.slope,
            "recent_early_intercept": self.recent_early.intercept,
            "recent_early_slope": self.recent_early.slope,
            "intercept": self.map.intercept,
            "slope": self.map.slope,
        }

    @classmethod
    def from_dict(cls, data: dict[str, float]) -> Recalibration:
        """Rebuild a recalibration from to_dict's numbers."""
        return cls(
            Line(data["bridge_early_intercept"], data["bridge_early_slope"]),
            Line(data["bridge_target_intercept"], data["bridge_target_slope"]),
            Line(data["recent_early_intercept"], data["recent_early_slope"]),
        )


def fit_recalibration(
    bridge_z: np.ndarray,
    bridge_early: np.ndarray,
    bridge_target: np.ndarray,
    recent_z: np.ndarray,
    recent_early: np.ndarray,
) -> Recalibration:
    """Fit the bridge (both labels mature) and the recent early line; refuse a map that does not keep the ranking."""
    fitted = Recalibration(
        fit_line(bridge_z, bridge_early, "bridge vintages, early label"),
        fit_line(bridge_z, bridge_target, "bridge vintages, target label"),
        fit_line(recent_z, recent_early, "recent vintages, early label"),
    )
    for name, line in (
        ("bridge vintages, early label", fitted.bridge_early),
        ("bridge vintages, target label", fitted.bridge_target),
        ("recent vintages, early label", fitted.recent_early),
    ):
        if not (math.isfinite(line.slope) and line.slope > 0):
            raise OrchardError(
                f"{name}: the champion's log-odds do not rank the label (slope {line.slope:.4f}); "
                "a recalibration would not keep its ranking"
            )
    return fitted


def recalibrated(model: CreditModel, line: Line, name: str | None = None) -> CreditModel:
    """Return a copy of a model whose log-odds go through `line` (slope > 0): same ranking, new PDs.

    LightGBM: the line is folded into the estimator's Platt calibration, so the batch and online paths (and
    their reason codes) are unchanged. Scorecard: the intercept and coefficients are rescaled, so points and
    reasons follow the new log-odds.
    """
    if not (math.isfinite(line.slope) and line.slope > 0):
        raise OrchardError(f"a recalibration keeps the ranking only with a positive slope, not {line.slope}")
    estimator = model.estimator
    if isinstance(estimator, LightGBMEstimator):
        slope, intercept = estimator.calibration
        new_estimator: PDEstimator = replace(
            estimator, calibration=(line.slope * slope, line.intercept + line.slope * intercept)
        )
    elif isinstance(estimator, Scorecard):
        new_estimator = replace(
            estimator,
            intercept=line.intercept + line.slope * estimator.intercept,
            coefficients={f: line.slope * c for f, c in estimator.coefficients.items()},
        )
    else:
        raise OrchardError(
            f"model {model.name} ({model.kind}) cannot be recalibrated: only LightGBM and scorecard models can"
        )
    params = {**model.params, "recalibration": {"intercept": line.intercept, "slope": line.slope}}
    return replace(model, name=name or model.name, estimator=new_estimator, params=params)
