"""The bring-your-own-data spec (a YAML file): which file, which columns, and how to split out of time."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import zoneinfo
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from orchard.credit.binning import Trend
from orchard.errors import OrchardError
from orchard.portfolio.spec import SelectionDef

NAME_PATTERN = r"^[a-z][a-z0-9_]{0,60}$"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class OotSplit(_Strict):
    """The out-of-time sample: rows at or after a cut-off date, or the last (or a random) fraction."""

    cutoff: dt.date | None = Field(default=None, description="rows with event time >= cutoff are out of time")
    fraction: float | None = Field(
        default=None, gt=0.0, lt=0.9, description="share held out: the latest by event time, else random"
    )

    @model_validator(mode="after")
    def _one_rule(self) -> OotSplit:
        if (self.cutoff is None) == (self.fraction is None):
            raise ValueError("give exactly one of 'cutoff' or 'fraction'")
        return self


class ByodSpec(_Strict):
    """A user's dataset: file, id, optional event time, target and its bad value, columns, and the OOT split."""

    name: str = Field(pattern=NAME_PATTERN, description="dataset name; models become byod_<name>_<kind>")
    data: Path = Field(description="CSV or Parquet file; a relative path is relative to the spec's folder")
    target: str = Field(min_length=1)
    bad_value: str | int | float | bool = Field(description="the target value that means bad (default)")
    id_column: str | None = Field(default=None, description="unique row id; absent = the row number")
    event_time: str | None = Field(default=None, description="date/time column for an out-of-time split")
    timezone: str = Field(
        default="UTC",
        description="IANA zone of naive event times (zoned ones keep their own); oot.cutoff is a date there",
    )
    categorical: list[str] = Field(default_factory=list, description="text columns are categorical anyway")
    drop: list[str] = Field(default_factory=list, description="columns never used as features")
    oot: OotSplit
    test_fraction: float = Field(default=0.25, gt=0.0, lt=0.9, description="random in-time test share")
    monotone: dict[str, Trend | None] = Field(default_factory=dict, description="per numeric feature")
    selection: SelectionDef = Field(default_factory=SelectionDef)
    seed: int = 7
    description: str | None = None

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        try:
            zoneinfo.ZoneInfo(value)
        except (zoneinfo.ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError(
                f"unknown time zone {value!r} (use an IANA name such as 'Europe/Berlin')"
            ) from exc
        return value

    @model_validator(mode="after")
    def _consistent(self) -> ByodSpec:
        if self.oot.cutoff is not None and self.event_time is None:
            raise ValueError("oot.cutoff needs an event_time column")
        special = [c for c in (self.target, self.id_column, self.event_time) if c is not None]
        if len(set(special)) != len(special):
            raise ValueError("target, id_column and event_time must be different columns")
        clash = sorted(set(self.categorical) & set(self.drop))
        if clash:
            raise ValueError(f"column(s) {', '.join(clash)} are both categorical and dropped")
        return self

    def sha256(self) -> str:
        """Return a hash of the spec's content (part of the training key)."""
        text = json.dumps(self.model_dump(mode="json"), sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()


def _where(loc: tuple[Any, ...]) -> str:
    return ".".join(str(part) for part in loc) or "(top level)"


def _explain(exc: ValidationError, path: Path) -> str:
    messages = []
    for error in exc.errors():
        where = _where(error["loc"])
        if error["type"] == "extra_forbidden":
            messages.append(f"unknown key {where!r}")
        elif error["type"] == "missing":
            messages.append(f"missing key {where!r}")
        else:
            messages.append(f"{where}: {error['msg']}")
    return f"BYOD spec {path}: " + "; ".join(messages)


def load_spec(path: Path) -> ByodSpec:
    """Read and validate a spec file, or raise naming the misspelt, missing or invalid key."""
    path = Path(path)
    if not path.is_file():
        raise OrchardError(f"BYOD spec {path} does not exist")
    try:
        content = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise OrchardError(f"BYOD spec {path} is not valid YAML: {exc}") from exc
    if not isinstance(content, dict):
        raise OrchardError(f"BYOD spec {path} must be a mapping of keys (name, data, target, ...)")
    try:
        return ByodSpec.model_validate(content)
    except ValidationError as exc:
        raise OrchardError(_explain(exc, path)) from exc


def data_path(spec: ByodSpec, spec_path: Path) -> Path:
    """Return the data file's path, resolving a relative one against the spec's folder."""
    return spec.data if spec.data.is_absolute() else (Path(spec_path).resolve().parent / spec.data).resolve()
