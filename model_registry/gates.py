"""The promotion gate: a challenger replaces the champion only if it is better on the same window."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any

from orchard.errors import OrchardError
from orchard.settings import Settings

# AUCs are compared after rounding away float noise, so 0.777 vs 0.772 + 0.005 sits exactly on the margin.
_DIGITS = 9


@dataclass(frozen=True)
class GateResult:
    """Whether the challenger passed, the sentences that say why, and the figures compared."""

    passed: bool
    reasons: list[str]
    figures: dict[str, Any] = field(default_factory=dict)


def _figure(evaluation: dict[str, Any], key: str, role: str) -> float:
    """Return a finite number from an evaluation dict, or raise naming the missing or bad key."""
    if key not in evaluation:
        raise OrchardError(
            f"{role} evaluation lacks {key!r} (has {', '.join(sorted(evaluation)) or 'nothing'})"
        )
    try:
        value = float(evaluation[key])
    except (TypeError, ValueError) as exc:
        raise OrchardError(f"{role} evaluation {key!r} is not a number: {evaluation[key]!r}") from exc
    if not math.isfinite(value):
        raise OrchardError(f"{role} evaluation {key!r} is not finite: {value}")
    return value


def _window(champion: dict[str, Any] | None, challenger: dict[str, Any], window: str | None) -> str:
    """Return the evaluation window both sides share; refuse to compare different windows."""
    windows = {str(e["window"]) for e in (champion, challenger) if e is not None and e.get("window")}
    if window:
        windows.add(window)
    if len(windows) > 1:
        raise OrchardError(
            f"champion and challenger were evaluated on different windows ({' vs '.join(sorted(windows))}); "
            "the gate compares them on the same out-of-time window only"
        )
    return windows.pop() if windows else "the out-of-time window"


def promotion_gate(
    champion: dict[str, Any] | None,
    challenger: dict[str, Any],
    margin_auc: float,
    window: str | None = None,
) -> GateResult:
    """Pass only if the challenger's AUC is at least the champion's plus the margin, on the same window."""
    if margin_auc < 0 or not math.isfinite(margin_auc):
        raise OrchardError(f"promotion margin must be a non-negative AUC difference, got {margin_auc}")
    window = _window(champion, challenger, window)
    challenger_auc = _figure(challenger, "auc", "challenger")
    figures: dict[str, Any] = {
        "window": window,
        "margin_auc": margin_auc,
        "challenger_auc": challenger_auc,
        "challenger_ks": challenger.get("ks"),
        "challenger_n": challenger.get("n"),
    }
    if champion is None:
        reason = (
            f"no champion yet: challenger AUC {challenger_auc:.3f} on {window} becomes the first champion"
        )
        return GateResult(passed=True, reasons=[reason], figures=figures)

    champion_auc = _figure(champion, "auc", "champion")
    delta = round(challenger_auc - champion_auc, _DIGITS)
    passed = delta >= round(margin_auc, _DIGITS)
    figures.update(
        champion_auc=champion_auc,
        champion_ks=champion.get("ks"),
        champion_n=champion.get("n"),
        delta_auc=delta,
    )
    reasons = [
        f"challenger AUC {challenger_auc:.3f} vs champion {champion_auc:.3f} on {window}: "
        f"{delta:+.3f} {'>=' if passed else '<'} margin {margin_auc:.3f}"
    ]
    if "ks" in challenger and "ks" in champion:
        challenger_ks = _figure(challenger, "ks", "challenger")
        champion_ks = _figure(champion, "ks", "champion")
        reasons.append(f"challenger KS {challenger_ks:.3f} vs champion {champion_ks:.3f} (for information)")
    if "n" in challenger and "n" in champion and int(challenger["n"]) != int(champion["n"]):
        passed = False
        reasons.append(
            f"challenger scored {int(challenger['n'])} rows but champion {int(champion['n'])}: "
            "not the same population, so not comparable"
        )
    return GateResult(passed=passed, reasons=reasons, figures=figures)


def gate_dict(gate: GateResult) -> dict[str, Any]:
    """Return the gate result as a JSON-ready dict (as stored in the history and gate_result.json)."""
    return asdict(gate)


def log_gate_result(settings: Settings, name: str, version: int, gate: GateResult, window: str) -> None:
    """Tag the model version with the gate outcome and log gate_result.json in its run."""
    # Imported here so the pure gate stays importable (and unit-testable) without loading MLflow.
    from model_registry.registry import get_version
    from model_registry.tracking import mlflow_client

    client = mlflow_client(settings)
    found = get_version(client, name, version)
    tags = {
        "orchard.gate.passed": str(gate.passed).lower(),
        "orchard.gate.window": window,
        "orchard.gate.reason": gate.reasons[0][:4000] if gate.reasons else "",
    }
    for key, value in tags.items():
        client.set_model_version_tag(name, str(version), key, value)
    if found.run_id:
        client.log_dict(found.run_id, {**gate_dict(gate), "window": window}, "gate_result.json")
