"""Request and response models of the decision API; field ranges and levels come from the portfolio's sources."""

from __future__ import annotations

import math
from datetime import datetime
from functools import cache
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StrictFloat,
    StrictInt,
    StrictStr,
    TypeAdapter,
    create_model,
)
from pydantic import ValidationError as PydanticValidationError

from orchard.model_specs import ModelSpec
from orchard.sources import ColumnSpec, SourceSpec

CUSTOMER_ID_PATTERN = r"^[A-Za-z0-9_.:-]{1,64}$"
MAX_SCORE_FIELDS = 64
_STRICT = ConfigDict(extra="forbid", strict=True, allow_inf_nan=False)

CustomerId = Annotated[
    str,
    Field(
        pattern=CUSTOMER_ID_PATTERN,
        description="partner-platform user id of the applicant (the Feast entity key user_id)",
        examples=["u000042"],
    ),
]


class FieldError(ValueError):
    """A request field that is missing, mistyped or out of range (answered with 422 naming the field)."""

    def __init__(self, field: str, message: str) -> None:
        self.field = field
        self.message = message
        super().__init__(f"{field}: {message}")


def request_columns(sources: dict[str, SourceSpec]) -> dict[str, ColumnSpec]:
    """Return the column a request field is validated like: the first source (in order) that has it."""
    columns: dict[str, ColumnSpec] = {}
    for source in sources.values():
        for column in source.columns:
            columns.setdefault(column.name, column)
    return columns


def column_type(column: ColumnSpec | None, name: str = "") -> Any:
    """Return the validated type of a request field: its source column's type, range and levels."""
    if column is None:
        return Annotated[StrictFloat | StrictInt | StrictStr | None, Field(description=name)]
    if column.categories:
        return Annotated[Literal[column.categories], Field(description=column.description)]
    base: Any = int if column.dtype == "int" else float
    bounds: dict[str, Any] = {"ge": column.min_value, "le": column.max_value}
    return Annotated[
        base,
        Field(description=column.description, **{k: v for k, v in bounds.items() if v is not None}),
    ]


def application_request(spec: ModelSpec, columns: dict[str, ColumnSpec]) -> type[BaseModel]:
    """Return the request model of an application decision: the customer id plus the PD model's case fields."""
    fields: dict[str, Any] = {"customer_id": (CustomerId, ...)}
    fields.update({name: (column_type(columns.get(name), name), ...) for name in spec.request_features})
    model = create_model("ApplicationRequest", __config__=_STRICT, **fields)
    model.__doc__ = "A loan application: the customer id plus the fields the application form carries."
    return model


class ScoreRequest(BaseModel):
    """A request to score one customer with one model: the customer id and the model's request fields."""

    model_config = _STRICT

    customer_id: CustomerId
    fields: dict[Annotated[str, Field(max_length=64)], StrictFloat | StrictInt | StrictStr | None] = Field(
        default_factory=dict,
        max_length=MAX_SCORE_FIELDS,
        description="the model's request fields by name (e.g. requested_amount); validated like the application",
    )


@cache
def _adapter(column: ColumnSpec | None, name: str) -> TypeAdapter[Any]:
    return TypeAdapter(column_type(column, name), config=_STRICT)


def check_request_fields(
    spec: ModelSpec, fields: dict[str, Any], columns: dict[str, ColumnSpec]
) -> dict[str, Any]:
    """Return the model's request fields validated by type, range and level, or raise FieldError naming one."""
    unknown = sorted(set(fields) - set(spec.request_features))
    if unknown:
        raise FieldError(f"fields.{unknown[0]}", f"not a request field of model {spec.name}")
    values: dict[str, Any] = {}
    for name in spec.request_features:
        if name not in fields:
            raise FieldError(f"fields.{name}", "field required")
        value = fields[name]
        if isinstance(value, float) and not math.isfinite(value):
            raise FieldError(f"fields.{name}", "must be a finite number")
        try:
            values[name] = _adapter(columns.get(name), name).validate_python(value)
        except PydanticValidationError as exc:
            raise FieldError(f"fields.{name}", exc.errors()[0]["msg"]) from None
    return values


class Reason(BaseModel):
    """One reason code: a stable code, its text, and the score points it cost."""

    code: str = Field(examples=["RC_LATE_BILL_PAYMENTS_12M"])
    text: str
    points_lost: float | None = Field(description="score points this reason cost (None for policy reasons)")


class Freshness(BaseModel):
    """How recent the online features of one Feast feature view are for this customer."""

    found: bool
    event_time: datetime | None
    age_days: float | None


class DecisionResponse(BaseModel):
    """The decision on an application, with what it was based on."""

    request_id: str
    decision: Literal["approve", "decline", "refer"]
    rule: str = Field(description="the policy rule that decided, e.g. 'pd <= approve_max_pd'")
    pd: float | None = Field(description="application_pd probability of default")
    score: float | None = Field(description="score points: 600 at odds 50:1, 20 points to double the odds")
    band: str | None = Field(description="risk band A (safest) .. E")
    fraud_pd: float | None = Field(description="application_fraud probability (None when no champion)")
    reasons: list[Reason] = Field(description="top reasons (up to 4), largest first")
    model_versions: dict[str, int | None]
    feature_freshness: dict[str, Freshness]
    notes: list[str] = Field(default_factory=list)


class ScoreResponse(BaseModel):
    """The score of one customer by one model's champion."""

    request_id: str
    model: str
    version: int
    pd: float
    score: float
    band: str
    reasons: list[Reason]
    feature_freshness: dict[str, Freshness]


class ErrorItem(BaseModel):
    """One problem with a request, naming the field."""

    field: str
    message: str


class ErrorResponse(BaseModel):
    """A request the API refused: a one-line message and the fields at fault."""

    error: str
    errors: list[ErrorItem] = Field(default_factory=list)


class HealthResponse(BaseModel):
    """Liveness: the process answers."""

    status: Literal["ok"]


class ReadyResponse(BaseModel):
    """Readiness: the online store is open and the decision champions are loaded."""

    ready: bool
    model_versions: dict[str, int | None]
    detail: str = ""
