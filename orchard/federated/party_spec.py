"""Each party's own table, described by its own small spec: id column, typed feature columns, guest label.

A `PartyTable` is a strict pydantic model (unknown keys are errors) so a portfolio YAML can embed it. Nothing
of the other party's schema is needed: the parties agree only on what the id means (`id_semantics`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd
import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from orchard.errors import OrchardError

FeatureType = Literal["float", "int", "bool"]


class FeatureColumn(BaseModel):
    """One feature column of a party's table and its type."""

    model_config = ConfigDict(strict=True, extra="forbid", frozen=True)

    name: str = Field(min_length=1)
    type: FeatureType = "float"


class PartyTable(BaseModel):
    """A party's table: its id column, feature columns (typed) and, on the guest, the label and vintage.

    The host may declare a vintage column too (the period of each row, e.g. 'YYYY-MM'), so that a scoring
    session can be scoped to one period. The guest's label may be missing (rows not labelled yet: scored and
    monitored, never trained on).
    """

    model_config = ConfigDict(strict=True, extra="forbid", frozen=True)

    role: Literal["guest", "host"]
    id_column: str = Field(min_length=1)
    id_semantics: str = Field(default="customer-month", min_length=1)
    features: list[FeatureColumn] = Field(min_length=1)
    label_column: str | None = None
    vintage_column: str | None = None

    @model_validator(mode="after")
    def _consistent(self) -> PartyTable:
        names = [f.name for f in self.features]
        if len(set(names)) != len(names):
            raise ValueError("feature column names must be unique")
        if self.role == "guest" and (self.label_column is None or self.vintage_column is None):
            raise ValueError("the guest's table needs a label_column and a vintage_column")
        if self.role == "host" and self.label_column is not None:
            raise ValueError("the host's table has no label column")
        reserved = {c for c in (self.id_column, self.label_column, self.vintage_column) if c is not None}
        if reserved & set(names):
            raise ValueError(
                f"feature columns overlap the id/label/vintage columns: {sorted(reserved & set(names))}"
            )
        return self

    @property
    def feature_names(self) -> list[str]:
        """Return the feature column names in spec order."""
        return [f.name for f in self.features]

    def check(self, frame: pd.DataFrame) -> pd.DataFrame:
        """Return the frame's spec columns, or raise one error naming every problem.

        Ids and the vintage come back as text, features as float, the label as float 0.0/1.0 with NaN for
        a row not labelled yet.
        """
        problems = []
        columns = [
            self.id_column,
            *([self.vintage_column] if self.vintage_column else []),
            *self.feature_names,
            *([self.label_column] if self.label_column else []),
        ]
        missing = [c for c in columns if c not in frame.columns]
        if missing:
            raise OrchardError(f"the {self.role}'s table lacks column(s) {', '.join(missing)}")
        ids = frame[self.id_column]
        if ids.isna().any() or ids.astype(str).duplicated().any():
            problems.append(f"id column {self.id_column!r} has missing or duplicate values")
        for feature in self.features:
            values = frame[feature.name]
            ok: bool | np.bool_
            if feature.type == "bool":
                ok = values.dropna().isin([0, 1, True, False]).all()
            elif feature.type == "int":
                numeric = pd.to_numeric(values, errors="coerce")
                ok = numeric.notna().sum() == values.notna().sum() and bool(
                    np.all(np.mod(numeric.dropna().to_numpy(dtype=float), 1.0) == 0)
                )
            else:
                ok = pd.to_numeric(values, errors="coerce").notna().sum() == values.notna().sum()
            if not ok:
                problems.append(f"feature {feature.name!r} is not of type {feature.type}")
        if self.vintage_column and frame[self.vintage_column].isna().any():
            problems.append(f"vintage column {self.vintage_column!r} has missing values")
        if self.label_column and not frame[self.label_column].dropna().isin([0, 1, True, False]).all():
            problems.append(
                f"label column {self.label_column!r} must hold only 0/1 (or missing: not labelled yet)"
            )
        if problems:
            raise OrchardError(f"the {self.role}'s table does not match its spec: " + "; ".join(problems))
        out = frame.loc[:, columns].copy()
        out[self.id_column] = out[self.id_column].astype(str)
        for name in self.feature_names:
            out[name] = pd.to_numeric(out[name], errors="coerce").astype(float)
        if self.vintage_column:
            out[self.vintage_column] = out[self.vintage_column].astype(str)
        if self.label_column:
            labels = out[self.label_column]
            labelled = labels.notna().to_numpy()
            label_values = np.full(len(labels), np.nan)
            label_values[labelled] = labels[labelled].astype(float).to_numpy()
            out[self.label_column] = label_values
        return out.reset_index(drop=True)


def load_party_table(path: Path) -> PartyTable:
    """Return the spec stored (YAML or JSON) in a file, or raise one error naming the file and the problem."""
    try:
        raw = yaml.safe_load(Path(path).read_text())
        return PartyTable.model_validate(raw)
    except (OSError, yaml.YAMLError) as exc:
        raise OrchardError(f"cannot read the party table spec {path}: {exc}") from exc
    except ValidationError as exc:
        raise OrchardError(f"party table spec {path} is invalid: {exc}") from exc
