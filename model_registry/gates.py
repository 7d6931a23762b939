"""Promotion gates: a challenger replaces the champion only if it passes every configured check on the same window.

`challenger_gate` is the full gate over one out-of-time window: discrimination (AUC and KS not worse than the
champion's by more than a margin), stability (score PSI between development and the recent sample), calibration
(expected vs observed bad rate per PD band) and, where a protected attribute exists, fairness (approval-rate and
AUC differences between groups; enforced only if the policy says so). It also reports the "beats by margin"
improvement, which automatic (policy) approval needs on top of eligibility; a person may promote any eligible
version.
All checks are pure functions of the evaluation inputs; `log_gate_result` writes the outcome on the version.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, replace
from typing import Any

import numpy as np
import pandas as pd

from orchard.credit.metrics import auc as auc_of
from orchard.credit.metrics import ks as ks_of
from orchard.errors import OrchardError
from orchard.settings import Settings

# AUCs are compared after rounding away float noise, so 0.777 vs 0.772 + 0.005 sits exactly on the margin.
_DIGITS = 9


@dataclass(frozen=True)
class GateCheck:
    """One check of the gate: its outcome, whether eligibility needs it, the reasons and its figures."""

    name: str
    passed: bool
    required: bool
    reasons: list[str]
    figures: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class GateResult:
    """Whether the challenger passed, the sentences that say why, and the figures compared."""

    passed: bool
    reasons: list[str]
    figures: dict[str, Any] = field(default_factory=dict)
    checks: list[GateCheck] = field(default_factory=list)


def gate_dict(gate: GateResult) -> dict[str, Any]:
    """Return the gate result as a JSON-ready dict (as stored in the history and gate_result.json)."""
    return asdict(gate)


@dataclass(frozen=True)
class GatePolicy:
    """Thresholds of the challenger gate (built by the caller from Settings)."""

    margin_auc: float = 0.005  # "beats the champion by": needed for automatic approval only
    max_auc_drop: float = 0.01  # discrimination: challenger AUC >= champion AUC - this
    max_ks_drop: float = 0.02  # discrimination: challenger KS >= champion KS - this
    max_score_psi: float = 0.25  # stability: score PSI (development vs recent sample) must stay below
    calibration_bands: int = 5  # PD quantile bands of the challenger on the window
    calibration_tolerance: float = 0.02  # allowed |observed - expected| bad rate per band, before noise
    calibration_z: float = 1.96  # plus this many binomial standard errors of the band's expected rate
    fairness_enforced: bool = False  # fairness figures are always reported; the check blocks only if True
    approval_rate: float = 0.7  # share approved (lowest PD first) when comparing groups' approval rates
    max_approval_rate_gap: float = 0.10  # largest minus smallest group approval rate
    max_group_auc_gap: float = 0.05  # largest minus smallest group AUC
    min_group_size: int = 30  # smaller groups are reported but left out of the gaps

    def __post_init__(self) -> None:
        for name in (
            "margin_auc",
            "max_auc_drop",
            "max_ks_drop",
            "calibration_tolerance",
            "calibration_z",
            "max_approval_rate_gap",
            "max_group_auc_gap",
        ):
            value = getattr(self, name)
            if not math.isfinite(value) or value < 0:
                raise OrchardError(f"gate policy {name} must be a finite non-negative number, got {value}")
        if not math.isfinite(self.max_score_psi) or self.max_score_psi <= 0:
            raise OrchardError(f"gate policy max_score_psi must be positive, got {self.max_score_psi}")
        if self.calibration_bands < 1:
            raise OrchardError(
                f"gate policy calibration_bands must be at least 1, got {self.calibration_bands}"
            )
        if not 0 < self.approval_rate < 1:
            raise OrchardError(f"gate policy approval_rate must lie in (0, 1), got {self.approval_rate}")
        if self.min_group_size < 2:
            raise OrchardError(f"gate policy min_group_size must be at least 2, got {self.min_group_size}")


@dataclass(frozen=True, eq=False)
class GateInputs:
    """What the gate compares, all on one out-of-time window: labels, both models' PDs, PSI, groups."""

    window: str
    y: np.ndarray  # 0/1 matured labels of the window's rows
    challenger_pd: np.ndarray  # the challenger's PD of the same rows
    champion_pd: np.ndarray | None = None  # the champion's PD of the same rows (None: no champion yet)
    champion_version: int | None = None
    challenger_version: int | None = None
    score_psi: float | None = None  # challenger score PSI: its development sample vs the recent sample
    champion_score_psi: float | None = None  # the champion's, for information
    groups: np.ndarray | None = None  # protected attribute of the window's rows (e.g. an age band)
    group_name: str = "group"

    def __post_init__(self) -> None:
        if not isinstance(self.window, str) or not self.window.strip():
            raise OrchardError("gate inputs need the out-of-time window they were evaluated on")
        n = len(np.asarray(self.y))
        for name in ("challenger_pd", "champion_pd", "groups"):
            value = getattr(self, name)
            if value is not None and len(np.asarray(value)) != n:
                raise OrchardError(
                    f"gate input {name} has {len(np.asarray(value))} rows but the labels have {n}: "
                    "both models must be scored on the same window rows"
                )
        if self.champion_pd is None and self.champion_version is not None:
            raise OrchardError(
                f"champion version {self.champion_version} given without its PDs on the window"
            )
        for name in ("score_psi", "champion_score_psi"):
            value = getattr(self, name)
            if value is not None and (not math.isfinite(float(value)) or float(value) < 0):
                raise OrchardError(f"gate input {name} must be a finite non-negative PSI, got {value}")


def _as_arrays(inputs: GateInputs) -> tuple[np.ndarray, np.ndarray]:
    """Return labels and challenger PDs as validated float arrays (AUC/KS raise on one class or NaN)."""
    y = np.asarray(inputs.y, dtype=float)
    p = np.asarray(inputs.challenger_pd, dtype=float)
    if y.size == 0:
        raise OrchardError(f"the gate window {inputs.window} holds no labelled rows")
    if np.isnan(p).any() or (p < 0).any() or (p > 1).any():
        raise OrchardError("challenger PDs must be probabilities in [0, 1] without missing values")
    return y, p


def discrimination_check(inputs: GateInputs, policy: GatePolicy) -> GateCheck:
    """Pass if the challenger's AUC and KS are not worse than the champion's by more than the margins."""
    y, p = _as_arrays(inputs)
    challenger_auc, challenger_ks = round(auc_of(y, p), _DIGITS), round(ks_of(y, p), _DIGITS)
    figures: dict[str, Any] = {
        "challenger_auc": challenger_auc,
        "challenger_ks": challenger_ks,
        "n": int(y.size),
    }
    if inputs.champion_pd is None:
        reason = (
            f"no champion yet: challenger AUC {challenger_auc:.3f}, KS {challenger_ks:.3f} on {inputs.window}"
        )
        return GateCheck("discrimination", True, True, [reason], figures)
    q = np.asarray(inputs.champion_pd, dtype=float)
    champion_auc, champion_ks = round(auc_of(y, q), _DIGITS), round(ks_of(y, q), _DIGITS)
    delta_auc = round(challenger_auc - champion_auc, _DIGITS)
    delta_ks = round(challenger_ks - champion_ks, _DIGITS)
    auc_ok = delta_auc >= -round(policy.max_auc_drop, _DIGITS)
    ks_ok = delta_ks >= -round(policy.max_ks_drop, _DIGITS)
    figures.update(
        champion_auc=champion_auc,
        champion_ks=champion_ks,
        delta_auc=delta_auc,
        delta_ks=delta_ks,
        max_auc_drop=policy.max_auc_drop,
        max_ks_drop=policy.max_ks_drop,
    )
    reasons = [
        f"AUC {challenger_auc:.3f} vs champion {champion_auc:.3f} on {inputs.window}: {delta_auc:+.3f} "
        f"{'within' if auc_ok else 'worse than'} the allowed drop {policy.max_auc_drop:.3f}",
        f"KS {challenger_ks:.3f} vs champion {champion_ks:.3f}: {delta_ks:+.3f} "
        f"{'within' if ks_ok else 'worse than'} the allowed drop {policy.max_ks_drop:.3f}",
    ]
    return GateCheck("discrimination", auc_ok and ks_ok, True, reasons, figures)


def improvement_check(inputs: GateInputs, policy: GatePolicy) -> GateCheck:
    """Report whether the challenger beats the champion's AUC by the margin (automatic approval needs it)."""
    y, p = _as_arrays(inputs)
    challenger_auc = round(auc_of(y, p), _DIGITS)
    figures: dict[str, Any] = {"challenger_auc": challenger_auc, "margin_auc": policy.margin_auc}
    if inputs.champion_pd is None:
        return GateCheck("improvement", True, False, ["no champion yet: nothing to beat"], figures)
    champion_auc = round(auc_of(y, np.asarray(inputs.champion_pd, dtype=float)), _DIGITS)
    delta = round(challenger_auc - champion_auc, _DIGITS)
    passed = delta >= round(policy.margin_auc, _DIGITS)
    figures.update(champion_auc=champion_auc, delta_auc=delta)
    reason = (
        f"challenger AUC {challenger_auc:.3f} vs champion {champion_auc:.3f} on {inputs.window}: "
        f"{delta:+.3f} {'>=' if passed else '<'} margin {policy.margin_auc:.3f}"
    )
    return GateCheck("improvement", passed, False, [reason], figures)


def stability_check(inputs: GateInputs, policy: GatePolicy) -> GateCheck:
    """Pass if the challenger's score PSI (development vs recent sample) is below the threshold."""
    figures: dict[str, Any] = {
        "score_psi": inputs.score_psi,
        "max_score_psi": policy.max_score_psi,
        "champion_score_psi": inputs.champion_score_psi,
    }
    if inputs.score_psi is None:
        return GateCheck(
            "stability", False, True, ["no score PSI of the recent sample: stability unproven"], figures
        )
    value = round(float(inputs.score_psi), _DIGITS)
    passed = value < policy.max_score_psi
    reason = f"score PSI {value:.3f} {'<' if passed else '>='} limit {policy.max_score_psi:.3f}"
    if inputs.champion_score_psi is not None:
        reason += f" (champion {float(inputs.champion_score_psi):.3f})"
    return GateCheck("stability", passed, True, [reason], figures)


def calibration_bands(y: np.ndarray, pd_pred: np.ndarray, n_bands: int) -> pd.DataFrame:
    """Return rows, PD range, expected (mean PD) and observed bad rate per PD quantile band, lowest PD first."""
    frame = pd.DataFrame({"y": np.asarray(y, dtype=float), "pd": np.asarray(pd_pred, dtype=float)})
    # Equal PDs always share a band, so heavily tied PDs give fewer bands.
    frame["band"] = pd.qcut(frame["pd"].rank(method="min"), n_bands, labels=False, duplicates="drop")
    frame["band"] = frame["band"].fillna(0)  # a constant PD leaves no quantile edges: one band
    table = (
        frame.groupby("band", sort=True)
        .agg(
            n=("y", "size"),
            pd_min=("pd", "min"),
            pd_max=("pd", "max"),
            expected=("pd", "mean"),
            observed=("y", "mean"),
        )
        .reset_index(drop=True)
    )
    table.insert(0, "band", np.arange(1, len(table) + 1))
    return table


def calibration_check(inputs: GateInputs, policy: GatePolicy) -> GateCheck:
    """Pass if every PD band's observed bad rate is within tolerance (plus binomial noise) of its mean PD."""
    y, p = _as_arrays(inputs)
    table = calibration_bands(y, p, policy.calibration_bands)
    expected = table["expected"].to_numpy()
    noise = policy.calibration_z * np.sqrt(expected * (1 - expected) / table["n"].to_numpy())
    table["gap"] = table["observed"] - table["expected"]
    table["allowed"] = policy.calibration_tolerance + noise
    table["passed"] = table["gap"].abs() <= table["allowed"] + 10**-_DIGITS
    bands = [
        {
            "band": int(r["band"]),
            "n": int(r["n"]),
            "pd_min": float(r["pd_min"]),
            "pd_max": float(r["pd_max"]),
            "expected": float(r["expected"]),
            "observed": float(r["observed"]),
            "gap": float(r["gap"]),
            "allowed": float(r["allowed"]),
            "passed": bool(r["passed"]),
        }
        for r in table.to_dict("records")
    ]
    failing = [b for b in bands if not b["passed"]]
    worst = max(bands, key=lambda b: abs(b["gap"]) - b["allowed"])
    figures: dict[str, Any] = {
        "bands": bands,
        "max_abs_gap": float(table["gap"].abs().max()),
        "expected_bad_rate": float(p.mean()),
        "observed_bad_rate": float(y.mean()),
        "tolerance": policy.calibration_tolerance,
        "z": policy.calibration_z,
    }
    head = (
        f"calibration on {inputs.window}: expected bad rate {p.mean():.3f} vs observed {y.mean():.3f}; "
        f"{len(bands) - len(failing)} of {len(bands)} PD bands within tolerance"
    )
    band = (
        f"band {worst['band']} (PD {worst['pd_min']:.3f}-{worst['pd_max']:.3f}, {worst['n']} rows): "
        f"expected {worst['expected']:.3f}, observed {worst['observed']:.3f}, "
        f"gap {worst['gap']:+.3f} {'within' if worst['passed'] else 'outside'} ±{worst['allowed']:.3f}"
    )
    return GateCheck("calibration", not failing, True, [head, band], figures)


def _group_figures(y: np.ndarray, p: np.ndarray, groups: np.ndarray, approval_rate: float) -> dict[str, Any]:
    """Return approval rate, bad rate and AUC per group (approving the lowest-PD share overall)."""
    cutoff = float(np.quantile(p, approval_rate, method="lower"))
    approved = p <= cutoff
    named = pd.Series(groups, dtype=object).where(pd.notna(pd.Series(groups, dtype=object)), "missing")
    labels = named.astype(str).to_numpy()
    out: dict[str, Any] = {}
    for group in sorted(set(labels)):
        mask = labels == group
        y_g, p_g = y[mask], p[mask]
        n_bad = int(y_g.sum())
        out[group] = {
            "n": int(mask.sum()),
            "approval_rate": float(approved[mask].mean()),
            "bad_rate": float(y_g.mean()),
            "auc": None if n_bad in (0, y_g.size) else float(auc_of(y_g, p_g)),
        }
    return {"cutoff_pd": cutoff, "groups": out}


def _gap(per_group: dict[str, Any], key: str, min_size: int) -> float | None:
    values = [g[key] for g in per_group.values() if g["n"] >= min_size and g[key] is not None]
    return round(max(values) - min(values), _DIGITS) if len(values) >= 2 else None


def fairness_check(inputs: GateInputs, policy: GatePolicy) -> GateCheck:
    """Report approval-rate and AUC differences between protected groups; blocks only if the policy enforces it."""
    if inputs.groups is None:
        return GateCheck("fairness", True, False, ["no protected attribute: fairness not assessed"], {})
    y, p = _as_arrays(inputs)
    challenger = _group_figures(y, p, np.asarray(inputs.groups, dtype=object), policy.approval_rate)
    groups = challenger["groups"]
    approval_gap = _gap(groups, "approval_rate", policy.min_group_size)
    auc_gap = _gap(groups, "auc", policy.min_group_size)
    rates = [g["approval_rate"] for g in groups.values() if g["n"] >= policy.min_group_size]
    impact_ratio = round(min(rates) / max(rates), _DIGITS) if len(rates) >= 2 and max(rates) > 0 else None
    figures: dict[str, Any] = {
        "attribute": inputs.group_name,
        "approval_rate": policy.approval_rate,
        "cutoff_pd": challenger["cutoff_pd"],
        "groups": groups,
        "approval_rate_gap": approval_gap,
        "adverse_impact_ratio": impact_ratio,
        "auc_gap": auc_gap,
        "max_approval_rate_gap": policy.max_approval_rate_gap,
        "max_group_auc_gap": policy.max_group_auc_gap,
    }
    if inputs.champion_pd is not None:
        champion = _group_figures(
            y,
            np.asarray(inputs.champion_pd, dtype=float),
            np.asarray(inputs.groups, dtype=object),
            policy.approval_rate,
        )
        figures["champion_approval_rate_gap"] = _gap(
            champion["groups"], "approval_rate", policy.min_group_size
        )
        figures["champion_auc_gap"] = _gap(champion["groups"], "auc", policy.min_group_size)
    approval_ok = approval_gap is None or approval_gap <= round(policy.max_approval_rate_gap, _DIGITS)
    auc_ok = auc_gap is None or auc_gap <= round(policy.max_group_auc_gap, _DIGITS)
    mode = "enforced" if policy.fairness_enforced else "reported, not enforced"
    if approval_gap is None:
        reasons = [
            f"fairness by {inputs.group_name} ({mode}): fewer than two groups of "
            f"{policy.min_group_size}+ rows, no gap to assess"
        ]
    else:
        reasons = [
            f"fairness by {inputs.group_name} ({mode}): approval-rate gap {approval_gap:.3f} "
            f"{'<=' if approval_ok else '>'} {policy.max_approval_rate_gap:.3f} at {policy.approval_rate:.0%} "
            f"approved (adverse impact ratio {impact_ratio if impact_ratio is None else f'{impact_ratio:.2f}'})",
            "group AUC gap "
            + (
                "not assessable"
                if auc_gap is None
                else f"{auc_gap:.3f} {'<=' if auc_ok else '>'} {policy.max_group_auc_gap:.3f}"
            ),
        ]
    return GateCheck("fairness", approval_ok and auc_ok, policy.fairness_enforced, reasons, figures)


def calibration_improvement_check(inputs: GateInputs, policy: GatePolicy) -> GateCheck:
    """Report whether the challenger is better calibrated than the champion on the window (a recalibration's gain).

    Better: its largest band gap (|observed - expected| over the PD bands) is smaller than the champion's.
    """
    mine = calibration_check(inputs, policy)
    figures: dict[str, Any] = {"challenger_max_abs_gap": mine.figures["max_abs_gap"]}
    if inputs.champion_pd is None:
        return GateCheck("improvement", True, False, ["no champion yet: nothing to beat"], figures)
    champion_inputs = replace(
        inputs, challenger_pd=inputs.champion_pd, champion_pd=None, champion_version=None
    )
    theirs = calibration_check(champion_inputs, policy)
    gap, champion_gap = mine.figures["max_abs_gap"], theirs.figures["max_abs_gap"]
    passed = round(gap, _DIGITS) < round(champion_gap, _DIGITS)
    figures.update(champion_max_abs_gap=champion_gap, champion_calibrated=theirs.passed)
    reason = (
        f"largest calibration gap {gap:.3f} vs champion {champion_gap:.3f} on {inputs.window} "
        f"(champion {'within' if theirs.passed else 'outside'} tolerance): "
        f"{'better' if passed else 'not better'} calibrated"
    )
    return GateCheck("improvement", passed, False, [reason], figures)


def challenger_gate(inputs: GateInputs, policy: GatePolicy, *, recalibration: bool = False) -> GateResult:
    """Run every check on one window; eligible (passed) when all required checks pass.

    A recalibration keeps the champion's ranking, so its gain is calibration, not AUC: its improvement check
    compares calibration (calibration_improvement_check) instead of the AUC margin.
    """
    checks = [
        discrimination_check(inputs, policy),
        stability_check(inputs, policy),
        calibration_check(inputs, policy),
        fairness_check(inputs, policy),
        calibration_improvement_check(inputs, policy) if recalibration else improvement_check(inputs, policy),
    ]
    failed = [c.name for c in checks if c.required and not c.passed]
    improvement = checks[-1]
    passed = not failed
    if passed:
        head = f"eligible on {inputs.window}: {', '.join(c.name for c in checks if c.required)} passed; " + (
            ("better calibrated than the champion" if recalibration else "beats the champion by the margin")
            if improvement.passed
            else (
                "not better calibrated than the champion"
                if recalibration
                else "does not beat the champion by the margin"
            )
            + ", so only a person may approve it"
        )
    else:
        head = f"not eligible on {inputs.window}: failed {', '.join(failed)}"
    by_name = {c.name: c for c in checks}
    discrimination = by_name["discrimination"].figures
    figures: dict[str, Any] = {
        "window": inputs.window,
        "champion_version": inputs.champion_version,
        "challenger_version": inputs.challenger_version,
        "eligible": passed,
        "auto_promotable": passed and improvement.passed,
        "improvement_by": "calibration" if recalibration else "auc",
        "margin_auc": policy.margin_auc,
        "challenger_auc": discrimination["challenger_auc"],
        "challenger_ks": discrimination["challenger_ks"],
        "champion_auc": discrimination.get("champion_auc"),
        "champion_ks": discrimination.get("champion_ks"),
        "delta_auc": discrimination.get("delta_auc"),
        "challenger_n": discrimination["n"],
        "score_psi": inputs.score_psi,
        "calibration_max_abs_gap": by_name["calibration"].figures["max_abs_gap"],
        "approval_rate_gap": by_name["fairness"].figures.get("approval_rate_gap"),
        "group_auc_gap": by_name["fairness"].figures.get("auc_gap"),
        "failed_checks": failed,
    }
    reasons = [head, *(f"[{c.name}] {r}" for c in checks for r in c.reasons)]
    return GateResult(passed=passed, reasons=reasons, figures=figures, checks=checks)


def auto_promotable(gate: GateResult | dict[str, Any]) -> bool:
    """Return whether a policy may approve the gate's version: eligible and beating the champion by the margin."""
    data = gate_dict(gate) if isinstance(gate, GateResult) else gate
    if not data.get("passed"):
        return False
    improvement = [c for c in data.get("checks") or [] if c.get("name") == "improvement"]
    # a gate without its improvement check (hand-written, or cut from a record) proves no gain: a person decides
    return bool(improvement) and all(bool(c.get("passed")) for c in improvement)


def gate_tags(gate: GateResult, window: str) -> dict[str, str]:
    """Return the flat version tags that summarise a gate result (the full record is gate_result.json)."""
    tags = {
        "orchard.gate.passed": str(gate.passed).lower(),
        "orchard.gate.window": window,
        "orchard.gate.reason": gate.reasons[0][:4000] if gate.reasons else "",
        "orchard.gate.auto_promotable": str(auto_promotable(gate)).lower(),
    }
    if "champion_version" in gate.figures:
        champion = gate.figures["champion_version"]
        tags["orchard.gate.champion_version"] = "none" if champion is None else str(int(champion))
    for check in gate.checks:
        tags[f"orchard.gate.check.{check.name}"] = ("passed" if check.passed else "failed") + (
            "" if check.required else " (not required)"
        )
    for key in (
        "challenger_auc",
        "champion_auc",
        "delta_auc",
        "challenger_ks",
        "champion_ks",
        "score_psi",
        "calibration_max_abs_gap",
        "approval_rate_gap",
        "group_auc_gap",
    ):
        value = gate.figures.get(key)
        if isinstance(value, int | float) and not isinstance(value, bool):
            tags[f"orchard.gate.{key}"] = f"{float(value):.6g}"
    return tags


def log_gate_result(settings: Settings, name: str, version: int, gate: GateResult, window: str) -> None:
    """Tag the model version with the gate outcome and its key figures, and log gate_result.json in its run."""
    # Imported here so the pure gate stays importable (and unit-testable) without loading MLflow.
    from model_registry.registry import get_version
    from model_registry.tracking import mlflow_client

    client = mlflow_client(settings)
    found = get_version(client, name, version)
    # The JSON goes first: a version tagged as gated always has its full gate record.
    if found.run_id:
        client.log_dict(found.run_id, {**gate_dict(gate), "window": window}, "gate_result.json")
    for key, value in gate_tags(gate, window).items():
        client.set_model_version_tag(name, str(version), key, value)
