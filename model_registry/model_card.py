"""Model cards: what a registered version is for, what it was trained on, how it performs, and who approved it.

build_model_card gathers the facts into a ModelCard (pure); to_markdown / to_html render it; log_model_card
stores both files as artifacts of the version's MLflow run and tags the version with their paths.
"""

from __future__ import annotations

import html
import json
import logging
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from model_registry.registry import get_version
from model_registry.tracking import mlflow_client
from orchard.credit.metrics import EvaluationResult
from orchard.credit.scorecard import Scorecard
from orchard.errors import OrchardError
from orchard.settings import Settings

log = logging.getLogger(__name__)

CARD_DIR = "model_card"
MARKDOWN_FILE = "model_card.md"
HTML_FILE = "model_card.html"
CARD_TAG = "orchard.model_card"
PERFORMANCE_COLUMNS = ("n", "n_bad", "bad_rate", "auc", "gini", "ks")
POINTS_COLUMNS = ("feature", "bin", "count", "bad_rate", "woe", "points_rounded")
APPROVAL_STATUSES = ("pending", "approved", "rejected", "champion", "challenger", "not for decisions")


@dataclass(eq=False)
class ModelCard:
    """The facts of one registered model version, ready to render."""

    name: str
    version: int | None
    kind: str
    purpose: str
    population: str
    label: str
    maturity: str
    data_window: str
    lineage: dict[str, Any]
    features: pd.DataFrame  # feature, iv, in_model, note
    performance: pd.DataFrame  # one row per sample (train / test / out-of-time)
    points_table: pd.DataFrame | None = None
    bands: pd.DataFrame | None = None
    stability: dict[str, float] = field(default_factory=dict)
    limitations: list[str] = field(default_factory=list)
    approval_status: str = "pending"
    approver: str | None = None

    @property
    def title(self) -> str:
        """Return the card's heading."""
        version = f" version {self.version}" if self.version is not None else ""
        return f"Model card: {self.name}{version} ({self.kind})"

    def _sections(self) -> list[tuple[str, str | pd.DataFrame | list[str]]]:
        approval = self.approval_status + (f" (by {self.approver})" if self.approver else "")
        lineage = [f"{k}: {_text(v)}" for k, v in sorted(self.lineage.items())]
        stability = (
            pd.DataFrame(
                {"column": list(self.stability), "psi": [round(v, 4) for v in self.stability.values()]}
            )
            if self.stability
            else "not measured yet"
        )
        sections: list[tuple[str, str | pd.DataFrame | list[str]]] = [
            ("Purpose", self.purpose),
            ("Population", self.population),
            ("Label and maturity", f"{self.label}. Maturity: {self.maturity}"),
            ("Data window and lineage", [f"data window: {self.data_window}", *lineage]),
            ("Features", _rounded(self.features)),
        ]
        if self.points_table is not None:
            sections.append(("Points table", _rounded(self.points_table)))
        if self.bands is not None:
            sections.append(("Score bands", _rounded(self.bands)))
        sections += [
            ("Performance", _rounded(self.performance)),
            ("Stability (PSI / CSI)", stability),
            ("Limitations", self.limitations or ["none recorded"]),
            ("Approval status", approval),
        ]
        return sections

    def to_markdown(self) -> str:
        """Return the card as Markdown."""
        lines = [f"# {self.title}", ""]
        for heading, body in self._sections():
            lines += [f"## {heading}", ""]
            if isinstance(body, pd.DataFrame):
                lines += _markdown_table(body)
            elif isinstance(body, list):
                lines += [f"- {item}" for item in body]
            else:
                lines.append(body)
            lines.append("")
        return "\n".join(lines)

    def to_html(self) -> str:
        """Return the card as a standalone HTML page (all text escaped)."""
        parts = [
            "<!DOCTYPE html>",
            '<html><head><meta charset="utf-8">',
            f"<title>{html.escape(self.title)}</title>",
            "<style>body{font-family:sans-serif;max-width:70em;margin:2em auto}"
            "table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:2px 6px}</style>",
            f"</head><body><h1>{html.escape(self.title)}</h1>",
        ]
        for heading, body in self._sections():
            parts.append(f"<h2>{html.escape(heading)}</h2>")
            if isinstance(body, pd.DataFrame):
                parts.append(body.to_html(index=False, escape=True, na_rep=""))
            elif isinstance(body, list):
                parts.append("<ul>" + "".join(f"<li>{html.escape(i)}</li>" for i in body) + "</ul>")
            else:
                parts.append(f"<p>{html.escape(body)}</p>")
        parts.append("</body></html>")
        return "\n".join(parts)


def _text(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value, default=str)


def _rounded(frame: pd.DataFrame) -> pd.DataFrame:
    return frame.round(4)


def _cell(value: Any) -> str:
    if value is None or (isinstance(value, float) and pd.isna(value)):
        return ""
    return str(value).replace("|", "\\|").replace("\n", " ")


def _markdown_table(frame: pd.DataFrame) -> list[str]:
    header = "| " + " | ".join(_cell(c) for c in frame.columns) + " |"
    rule = "|" + "|".join("---" for _ in frame.columns) + "|"
    rows = ["| " + " | ".join(_cell(v) for v in row) + " |" for row in frame.itertuples(index=False)]
    return [header, rule, *rows]


def _performance_frame(performance: dict[str, EvaluationResult | dict[str, float]]) -> pd.DataFrame:
    rows = []
    for sample, result in performance.items():
        figures = (
            result.metrics() | {"n_bad": result.n_bad} if isinstance(result, EvaluationResult) else result
        )
        rows.append({"sample": sample, **{k: figures.get(k) for k in PERFORMANCE_COLUMNS}})
    return pd.DataFrame(rows, columns=["sample", *PERFORMANCE_COLUMNS])


def build_model_card(
    *,
    name: str,
    version: int | None,
    model: Any,
    purpose: str,
    population: str,
    label: str,
    maturity: str,
    data_window: str,
    lineage: dict[str, Any],
    performance: dict[str, EvaluationResult | dict[str, float]],
    feature_iv: dict[str, float] | None = None,
    feature_notes: dict[str, str] | None = None,
    stability: dict[str, float] | None = None,
    limitations: list[str] | None = None,
    approval_status: str = "pending",
    approver: str | None = None,
) -> ModelCard:
    """Return the card of a model version; a scorecard brings its IVs, selection notes, points and bands."""
    if not performance:
        raise OrchardError(f"model card of {name}: give the performance of at least one sample")
    if approval_status not in APPROVAL_STATUSES:
        raise OrchardError(
            f"approval status {approval_status!r} is not one of {', '.join(APPROVAL_STATUSES)}"
        )
    estimator = getattr(model, "estimator", None)
    points = bands = None
    iv = dict(feature_iv or {})
    notes = dict(feature_notes or {})
    if isinstance(estimator, Scorecard):
        iv = {**estimator.selection.get("candidate_iv", {}), **iv}
        notes = {**estimator.selection.get("dropped", {}), **notes}
        table = estimator.points_table()
        points = table.loc[:, list(POINTS_COLUMNS)]
        bands = estimator.bands_table()
    in_model = list(model.features)
    candidates = in_model + sorted(f for f in iv if f not in in_model)
    features = pd.DataFrame(
        {
            "feature": candidates,
            "iv": [iv.get(f) for f in candidates],
            "in_model": [f in in_model for f in candidates],
            "note": [notes.get(f, "") for f in candidates],
        }
    )
    return ModelCard(
        name=name,
        version=version,
        kind=str(getattr(model, "kind", type(model).__name__)),
        purpose=purpose,
        population=population,
        label=label,
        maturity=maturity,
        data_window=data_window,
        lineage=dict(lineage),
        features=features,
        performance=_performance_frame(performance),
        points_table=points,
        bands=bands,
        stability=dict(stability or {}),
        limitations=list(limitations or []),
        approval_status=approval_status,
        approver=approver,
    )


def log_model_card(settings: Settings, name: str, version: int, card: ModelCard) -> dict[str, str]:
    """Log the card (Markdown + HTML) as artifacts of the version's run; return the artifact paths."""
    client = mlflow_client(settings)
    model_version = get_version(client, name, version)
    if not model_version.run_id:
        raise OrchardError(f"model {name!r} version {version} has no run to attach a card to")
    paths = {"markdown": f"{CARD_DIR}/{MARKDOWN_FILE}", "html": f"{CARD_DIR}/{HTML_FILE}"}
    client.log_text(model_version.run_id, card.to_markdown(), paths["markdown"])
    client.log_text(model_version.run_id, card.to_html(), paths["html"])
    client.set_model_version_tag(name, str(version), CARD_TAG, paths["markdown"])
    log.info("logged the model card of %s v%s to run %s", name, version, model_version.run_id)
    return paths
