"""The decision API: FastAPI app factory, API-key check, body-size limit, and the decision/score routes.

The decision and score routes are plain (sync) functions: FastAPI runs them in its thread pool, so the Feast
read, the scoring and the wait for the decision log's group commit never block the event loop, and /health
keeps answering while they queue.
"""

from __future__ import annotations

import hmac
import logging
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, FastAPI, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import HTMLResponse, JSONResponse
from fastapi.security import APIKeyHeader
from feast import FeatureStore
from pydantic import BaseModel
from starlette.exceptions import HTTPException as StarletteHTTPException

from orchard import __version__
from orchard.errors import OrchardError
from orchard.feature_store import open_store
from orchard.model_specs import ModelSpec, model_spec, served_specs
from orchard.serving.decision_log import (
    DecisionLogUnavailable,
    DecisionLogWriter,
    DecisionRecord,
    DecisionSink,
    new_request_id,
    open_sink,
)
from orchard.serving.models import ChampionCache
from orchard.serving.online import OnlineFeatureReader, OnlineRow
from orchard.serving.schemas import (
    DecisionResponse,
    ErrorResponse,
    FieldError,
    HealthResponse,
    ReadyResponse,
    ScoreRequest,
    ScoreResponse,
    application_request,
    check_request_fields,
    request_columns,
)
from orchard.serving.scoring import DecisionPolicy, decide, score_row
from orchard.settings import ServingConfig, Settings
from orchard.sources import source_specs

log = logging.getLogger(__name__)

API_KEY_HEADER = "X-API-Key"
DECISION_MODEL = "application"
_KEY_HEADER = APIKeyHeader(name=API_KEY_HEADER, auto_error=False, description="the API key from settings")
_ERRORS: dict[int | str, dict[str, Any]] = {
    code: {"model": ErrorResponse, "description": text}
    for code, text in {
        401: "missing or wrong API key",
        404: "unknown model or customer",
        413: "request body too large",
        422: "a field is missing, mistyped or out of range",
        503: "no champion loaded yet, or the decision log cannot record the answer",
    }.items()
}


class ApiError(Exception):
    """A request the API answers with a 4xx/503 and a message naming the field."""

    def __init__(self, status: int, message: str, field: str = "") -> None:
        self.status = status
        self.message = message
        self.field = field
        super().__init__(message)


@dataclass(frozen=True)
class ServedPortfolio:
    """What the API serves of the portfolio: its served models, the decision's models, request columns."""

    served: dict[str, ModelSpec]
    pd_model: ModelSpec | None
    fraud_model: ModelSpec | None
    columns: dict[str, Any]

    @classmethod
    def of(cls, settings: Settings) -> ServedPortfolio:
        """Return what the settings' portfolio serves."""
        portfolio = settings.portfolio_def
        decision = portfolio.decision
        fraud = decision.fraud_model if decision else None
        return cls(
            served=served_specs(portfolio),
            pd_model=model_spec(portfolio, decision.pd_model) if decision else None,
            fraud_model=model_spec(portfolio, fraud) if fraud else None,
            columns=request_columns(source_specs(portfolio)),
        )


@dataclass
class Runtime:
    """What the app holds while it runs: the store readers, the champion cache and the decision log."""

    readers: dict[str, OnlineFeatureReader]
    champions: ChampionCache
    log_writer: DecisionLogWriter
    policy: DecisionPolicy
    portfolio: ServedPortfolio

    def close(self) -> None:
        """Stop watching champions and flush the decision log."""
        self.champions.stop()
        self.log_writer.close()


def start_runtime(
    settings: Settings,
    config: ServingConfig,
    store: FeatureStore | None = None,
    sink: DecisionSink | None = None,
) -> Runtime:
    """Open the Feast store once, load the champions, start the alias watcher and the log writer."""
    store = store or open_store(settings)
    portfolio = ServedPortfolio.of(settings)
    services = {spec.feature_service for spec in portfolio.served.values()}
    readers = {service: OnlineFeatureReader(store, service) for service in services}
    champions = ChampionCache(settings, portfolio.served, config.champion_poll_seconds)
    champions.start()
    writer = DecisionLogWriter(
        sink or open_sink(settings, config),
        config.decision_flush_rows,
        config.decision_queue_max,
        config.decision_log_timeout_seconds,
    )
    writer.start()
    policy = DecisionPolicy(config.approve_max_pd, config.decline_min_pd, config.fraud_refer_min)
    log.info("decision API ready: champions %s", champions.snapshot().versions)
    return Runtime(
        readers=readers, champions=champions, log_writer=writer, policy=policy, portfolio=portfolio
    )


def _too_large(max_bytes: int) -> str:
    return f"request body exceeds max_body_bytes={max_bytes}"


class _BodyLimitMiddleware:
    """ASGI middleware refusing a body over max_bytes with 413 (declared length or streamed bytes)."""

    def __init__(self, app: Any, max_bytes: int) -> None:
        self._app = app
        self._max_bytes = max_bytes

    async def __call__(
        self, scope: dict[str, Any], receive: Callable[..., Any], send: Callable[..., Any]
    ) -> None:
        if scope["type"] != "http":
            await self._app(scope, receive, send)
            return
        limit = self._max_bytes
        declared = dict(scope.get("headers") or []).get(b"content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > limit):
            errors = [{"field": "body", "message": f"at most {limit} bytes"}]
            await _error(413, _too_large(limit), errors)(scope, receive, send)
            return
        seen = 0

        async def counted() -> dict[str, Any]:
            nonlocal seen
            message = await receive()
            seen += len(message.get("body", b""))
            if seen > limit:
                # raised inside the route's body read: FastAPI passes HTTPException through to its handler
                raise HTTPException(status_code=413, detail=_too_large(limit))
            return message

        await self._app(scope, counted, send)


def _error(status: int, message: str, errors: list[dict[str, str]] | None = None) -> JSONResponse:
    return JSONResponse(status_code=status, content={"error": message, "errors": errors or []})


def _field_name(loc: tuple[Any, ...]) -> str:
    parts = [str(p) for p in loc if p not in ("body", "query", "path", "header")]
    # a union's member name ('float', 'int') is not a field
    parts = [p for p in parts if p not in {"float", "int", "str", "none", "function-after[...]"}]
    return ".".join(parts) or "body"


def _freshness(row: OnlineRow) -> dict[str, dict[str, Any]]:
    return {view: f.to_dict() for view, f in row.freshness.items()}


def _scalar_request(values: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in values.items() if k != "customer_id"}


def _log_or_503(runtime: Runtime, record: DecisionRecord) -> None:
    """Log a record durably before its answer goes out; fail closed with 503 if it cannot be logged."""
    try:
        runtime.log_writer.append(record)
    except DecisionLogUnavailable as exc:
        raise ApiError(503, f"not decided: {exc}") from None


def decide_application_request(runtime: Runtime, fields: dict[str, Any]) -> DecisionResponse:
    """Decide one validated application on one snapshot of the champions, and log it (the route's work)."""
    pd_spec, fraud_spec = runtime.portfolio.pd_model, runtime.portfolio.fraud_model
    if pd_spec is None:
        raise ApiError(404, "this portfolio declares no application decision (its decision block)")
    models = runtime.champions.snapshot()  # one immutable snapshot for the whole request
    pd_model = models.get(pd_spec.name)
    if pd_model is None:
        raise ApiError(503, f"no champion for {pd_spec.name}: nothing can decide yet")
    row = runtime.readers[pd_spec.feature_service].read(fields["customer_id"])
    inputs = {**row.values, **_scalar_request(fields)} if row.known else None
    fraud_model = models.get(fraud_spec.name) if fraud_spec else None
    outcome = decide(pd_model, fraud_model, inputs, runtime.policy)
    request_id = new_request_id()
    freshness = _freshness(row)
    _log_or_503(
        runtime,
        DecisionRecord(
            request_id=request_id,
            kind="decision",
            logged_at=datetime.now(UTC),
            customer_id=fields["customer_id"],
            model=DECISION_MODEL,
            model_versions=outcome.model_versions,
            inputs=inputs,
            request=_scalar_request(fields),
            feature_freshness=freshness,
            policy=runtime.policy.to_dict(),
            result={**outcome.result_dict(), "notes": outcome.notes},
        ),
    )
    return DecisionResponse(
        request_id=request_id, feature_freshness=freshness, notes=outcome.notes, **outcome.result_dict()
    )


def create_app(
    settings: Settings,
    *,
    config: ServingConfig | None = None,
    store: FeatureStore | None = None,
    sink: DecisionSink | None = None,
) -> FastAPI:
    """Return the decision API over the settings' Feast store, MLflow registry and decision log."""
    config = config or settings.serving
    if config.api_key is None or not config.api_key.get_secret_value():
        raise OrchardError("the decision API needs an API key: set ORCHARD_API_KEY")
    expected_key = config.api_key.get_secret_value().encode()
    portfolio = ServedPortfolio.of(settings)
    headline = portfolio.pd_model.name if portfolio.pd_model else next(iter(portfolio.served), None)

    def require_key(key: Annotated[str | None, Depends(_KEY_HEADER)]) -> None:
        """Refuse a request without the right API key (constant-time comparison)."""
        if key is None or not hmac.compare_digest(key.encode(), expected_key):
            raise ApiError(401, f"missing or wrong {API_KEY_HEADER} header", API_KEY_HEADER)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        runtime = start_runtime(settings, config, store, sink)
        app.state.runtime = runtime
        try:
            yield
        finally:
            runtime.close()

    docs_deps = [] if config.api_public_docs else [Depends(require_key)]
    app = FastAPI(
        title="Orchard decision API",
        version=__version__,
        description="Real-time credit decisions and scores from the champion models on Feast online features.",
        lifespan=lifespan,
        docs_url=None,
        redoc_url=None,
        openapi_url=None,
    )

    @app.exception_handler(ApiError)
    async def api_error(_: Request, exc: ApiError) -> JSONResponse:
        errors = [{"field": exc.field, "message": exc.message}] if exc.field else []
        return _error(exc.status, exc.message, errors)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        field = "body" if exc.status_code == 413 else ""
        errors = [{"field": field, "message": str(exc.detail)}] if field else []
        return _error(exc.status_code, str(exc.detail), errors)

    @app.exception_handler(RequestValidationError)
    async def invalid(_: Request, exc: RequestValidationError) -> JSONResponse:
        errors = [
            {
                "field": "body" if e.get("type") == "json_invalid" else _field_name(tuple(e.get("loc", ()))),
                "message": e["msg"],
            }
            for e in exc.errors()
        ]
        return _error(422, "; ".join(f"{e['field']}: {e['message']}" for e in errors), errors)

    @app.get("/openapi.json", include_in_schema=False, dependencies=docs_deps)
    async def openapi() -> JSONResponse:
        return JSONResponse(app.openapi())

    @app.get("/docs", include_in_schema=False, dependencies=docs_deps)
    async def docs() -> HTMLResponse:
        return get_swagger_ui_html(openapi_url="/openapi.json", title="Orchard decision API")

    @app.get("/health", response_model=HealthResponse, tags=["operations"])
    async def health() -> HealthResponse:
        """Liveness: the process answers."""
        return HealthResponse(status="ok")

    @app.get(
        "/ready", response_model=ReadyResponse, tags=["operations"], responses={503: {"model": ReadyResponse}}
    )
    async def ready(request: Request) -> JSONResponse:
        """Readiness: the online store is open and the deciding model's champion is loaded."""
        runtime: Runtime | None = getattr(request.app.state, "runtime", None)
        loaded = runtime.champions.snapshot().versions if runtime else {}
        versions = {name: loaded.get(name) for name in portfolio.served}
        ok = runtime is not None and headline is not None and versions.get(headline) is not None
        body = ReadyResponse(
            ready=ok,
            model_versions=versions,
            detail="" if ok else f"no {headline or 'served'} champion loaded",
        )
        return JSONResponse(status_code=200 if ok else 503, content=body.model_dump())

    v1 = APIRouter(prefix="/v1", dependencies=[Depends(require_key)], responses=_ERRORS)

    def runtime_of(request: Request) -> Runtime:
        runtime: Runtime | None = getattr(request.app.state, "runtime", None)
        if runtime is None:
            raise ApiError(503, "the API is starting: no champion loaded yet")
        return runtime

    def decide_application(application: BaseModel, request: Request) -> DecisionResponse:
        """Decide a loan application: approve, decline or refer, with PD, score, band and reasons."""
        return decide_application_request(runtime_of(request), application.model_dump())

    if portfolio.pd_model is not None:
        # the request model is the portfolio's: FastAPI reads it from the signature's annotation
        decide_application.__annotations__["application"] = application_request(
            portfolio.pd_model, portfolio.columns
        )
        v1.add_api_route(
            "/decisions/application",
            decide_application,
            methods=["POST"],
            response_model=DecisionResponse,
            tags=["decisions"],
        )

    @v1.post("/scores/{model}", response_model=ScoreResponse, tags=["scores"])
    def score_model(model: str, body: ScoreRequest, request: Request) -> ScoreResponse:
        """Score one customer with the champion of any registered model."""
        spec = portfolio.served.get(model)
        if spec is None:
            raise ApiError(
                404, f"unknown model {model!r}; known: {', '.join(sorted(portfolio.served))}", "model"
            )
        runtime = runtime_of(request)
        served = runtime.champions.snapshot().get(model)
        if served is None:
            raise ApiError(503, f"model {model} has no champion yet")
        try:
            fields = check_request_fields(spec, body.fields, portfolio.columns)
        except FieldError as exc:
            raise ApiError(422, str(exc), exc.field) from None
        row = runtime.readers[spec.feature_service].read(body.customer_id)
        if not row.known:
            raise ApiError(
                404, f"customer_id {body.customer_id!r} is unknown to the feature store", "customer_id"
            )
        inputs = {**row.values, **fields}
        scored = score_row(served, inputs)
        result = {
            "model": model,
            "version": served.version,
            "pd": float(scored.pd[0]),
            "score": float(scored.score[0]),
            "band": str(scored.band[0]),
            "reasons": scored.reasons[0],
        }
        request_id = new_request_id()
        freshness = _freshness(row)
        _log_or_503(
            runtime,
            DecisionRecord(
                request_id=request_id,
                kind="score",
                logged_at=datetime.now(UTC),
                customer_id=body.customer_id,
                model=model,
                model_versions={model: served.version},
                inputs=inputs,
                request=fields,
                feature_freshness=freshness,
                policy={},
                result=result,
            ),
        )
        return ScoreResponse(request_id=request_id, feature_freshness=freshness, **result)

    app.include_router(v1)
    app.add_middleware(_BodyLimitMiddleware, max_bytes=config.max_body_bytes)
    return app


def serve_command(settings: Settings, host: str = "127.0.0.1", port: int = 8000) -> None:
    """Run the decision API under uvicorn until interrupted (`orchard serve`); several workers if configured."""
    import uvicorn  # deferred: only `orchard serve` runs a server

    if settings.serving.api_workers > 1:
        # worker processes build their own app from the same ORCHARD_* environment
        uvicorn.run(
            "orchard.serving.asgi:app_from_environment",
            factory=True,
            host=host,
            port=port,
            log_level="warning",
            access_log=False,
            workers=settings.serving.api_workers,
        )
        return
    uvicorn.run(create_app(settings), host=host, port=port, log_level="warning", access_log=False)
