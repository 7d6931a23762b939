"""The one typed settings object (env prefix ORCHARD_), created at the edge and passed down."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Literal, get_origin

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, SecretStr, field_validator, model_validator
from pydantic.fields import FieldInfo
from pydantic_settings import (
    BaseSettings,
    DotEnvSettingsSource,
    EnvSettingsSource,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
)

from orchard.errors import OrchardError
from orchard.months import parse_month
from orchard.portfolio.load import load_portfolio
from orchard.portfolio.spec import Portfolio

DEMO_PORTFOLIO = Path(__file__).resolve().parents[1] / "portfolios" / "demo"


def _month_setting(value: str) -> str:
    """Return a YYYY-MM setting normalised, or raise ValueError (pydantic then names the setting)."""
    try:
        return parse_month(value)
    except OrchardError as exc:
        raise ValueError(str(exc)) from None


def _is_month(text: str) -> bool:
    try:
        parse_month(text)
    except OrchardError:
        return False
    return True


class _Group(BaseModel):
    """A settings group: typed, frozen, unknown keys refused."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class SimulationConfig(_Group):
    """The simulator's population and the events it plants (the demo's story); a lender's own data ignores them."""

    n_users: int = Field(default=12_000, ge=200, le=5_000_000, description="partner-platform population")
    shock_month: str = Field(default="2020-02", description="first month of the pandemic-like shock")
    corrupt_batches: list[str] = Field(
        default=["applications:2019-09"],
        description="'source:YYYY-MM' batches the simulator deliberately corrupts (the demo's bad batch)",
    )
    lender: Literal["champion", "legacy"] = Field(
        default="champion",
        description="who decides the simulated applications: the decision model's champion from the month after "
        "its first promotion (the closed loop; the legacy rule before) or the legacy rule throughout",
    )
    silent_corrupt_batches: list[str] = Field(
        default=["applications:2020-10"],
        description="'source:YYYY-MM' batches the simulator corrupts keeping their schema (every application "
        "declined, ...: orchard.simulate.corrupt.SILENT_CORRUPTION); only the contracts' history checks see it",
    )

    @field_validator("shock_month")
    @classmethod
    def _month(cls, value: str) -> str:
        return _month_setting(value)

    @field_validator("corrupt_batches", "silent_corrupt_batches")
    @classmethod
    def _batches(cls, value: list[str]) -> list[str]:
        for item in value:
            source, _, month = item.partition(":")
            if not source or not month or not _is_month(month):
                raise ValueError(f"corrupt batch {item!r} must look like 'source:YYYY-MM'")
        return value


class GovernanceConfig(_Group):
    """Who acts, and how promotions are approved (model_registry.governance)."""

    auto_approve: bool = Field(
        default=True, description="the demo's policy approves promotions that pass gates"
    )
    policy_approver: str = "orchard-policy"
    identity: str | None = Field(
        default=None, description="who acts on the embedded profile (recorded as configured); None = OS user"
    )
    four_eyes: bool | None = Field(
        default=None, description="approver must differ from the trainer; None = on in production only"
    )
    override_identities: list[str] = Field(
        default_factory=list, description="identities holding the override role (none by default)"
    )


class ServingConfig(_Group):
    """The decision API (`orchard serve`): its key, decision cut-offs, polling, limits and decision log.

    The key has no default: the API refuses to start without one.
    """

    api_key: SecretStr | None = Field(
        default=None, description="X-API-Key required on every route but health"
    )
    approve_max_pd: float = Field(default=0.10, ge=0.0, le=1.0, description="approve when PD is at most this")
    decline_min_pd: float = Field(
        default=0.30, ge=0.0, le=1.0, description="decline when PD is at least this"
    )
    fraud_refer_min: float = Field(
        default=0.20, ge=0.0, le=1.0, description="refer when fraud PD reaches this"
    )
    champion_poll_seconds: float = Field(default=5.0, gt=0.0, description="how often the API checks aliases")
    max_body_bytes: int = Field(default=16_384, ge=256, description="larger request bodies get a 413")
    decision_flush_rows: int = Field(default=500, ge=1, description="most records in one group commit")
    decision_queue_max: int = Field(default=2_000, ge=1, description="answers waiting for the log; more: 503")
    decision_log_timeout_seconds: float = Field(default=5.0, gt=0.0, description="log wait before a 503")
    api_workers: int = Field(default=1, ge=1, description="uvicorn worker processes of `orchard serve`")
    decision_db_url: str | None = Field(
        default=None, description="production decision log; None = governance db"
    )
    api_public_docs: bool = Field(default=False, description="serve /docs and /openapi.json without the key")

    @model_validator(mode="after")
    def _cut_offs(self) -> ServingConfig:
        if self.approve_max_pd > self.decline_min_pd:
            raise ValueError(
                f"decision cut-offs must satisfy approve_max_pd ({self.approve_max_pd}) "
                f"<= decline_min_pd ({self.decline_min_pd})"
            )
        return self


class ProductionConfig(_Group):
    """The production profile's services (see infra/ and docs/production.md); secrets have no default."""

    postgres_url: SecretStr | None = Field(
        default=None, description="PostgreSQL server URL (with credentials)"
    )
    redis_url: str = Field(default="redis://127.0.0.1:6379/0", description="Redis online store")
    mlflow_admin_username: str = "admin"
    mlflow_admin_password: SecretStr | None = None
    mlflow_username: str | None = Field(default=None, description="the MLflow user the flows run as")
    mlflow_password: SecretStr | None = None
    mlflow_secret_key: SecretStr | None = None
    artifact_root: str | None = Field(default=None, description="shared artifact store (S3 URL or path)")
    dask_address: str | None = Field(default=None, description="existing Dask scheduler (tcp://...)")
    dask_workers: int = Field(default=0, ge=0, description="> 0: a Dask LocalCluster with that many workers")
    dask_lightgbm_min_rows: int = Field(
        default=1_000_000,
        ge=1,
        description="with a Dask cluster: the fewest training rows LightGBM's Dask estimator fits on the cluster",
    )
    prefect_server_port: int = Field(default=4200, ge=1, le=65535)
    mlflow_server_port: int = Field(default=5000, ge=1, le=65535)
    database_prefix: str = Field(default="", description="prefix of the per-service database names")


GROUPS: dict[str, type[_Group]] = {
    "simulation": SimulationConfig,
    "governance": GovernanceConfig,
    "serving": ServingConfig,
    "production": ProductionConfig,
}
"""The settings groups; each field is set by its flat variable ORCHARD_<FIELD> (e.g. ORCHARD_API_KEY)."""


class _GroupedEnv(PydanticBaseSettingsSource):
    """The groups' flat ORCHARD_<FIELD> variables (the environment over the .env file), nested under their group."""

    def __init__(
        self, settings_cls: type[BaseSettings], env: EnvSettingsSource, dotenv: DotEnvSettingsSource
    ) -> None:
        super().__init__(settings_cls)
        self._values = {**dotenv.env_vars, **env.env_vars}  # lower-case names: settings are case-insensitive
        self._names = {f"orchard_{field}" for model in GROUPS.values() for field in model.model_fields}

    def get_field_value(self, field: FieldInfo, field_name: str) -> tuple[Any, str, bool]:
        return None, field_name, False  # unused: __call__ returns the whole mapping

    def __call__(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for group, model in GROUPS.items():
            complex_fields = {
                n for n, f in model.model_fields.items() if get_origin(f.annotation) in (list, dict)
            }
            found = {
                f: self._values[f"orchard_{f}"]
                for f in model.model_fields
                if self._values.get(f"orchard_{f}")
            }
            for name in complex_fields & set(found):  # a list is given as JSON, as pydantic-settings reads it
                try:
                    found[name] = json.loads(str(found[name]))
                except json.JSONDecodeError as exc:
                    raise OrchardError(
                        f'ORCHARD_{name.upper()} is not JSON (e.g. ["a", "b"]): {exc}'
                    ) from None
            if found:
                out[group] = found
        return out

    def without_groups(self, dotenv: DotEnvSettingsSource) -> PydanticBaseSettingsSource:
        """Return the .env source minus the groups' variables (read here), which it would call unknown keys."""
        names = self._names

        class _DotEnv(PydanticBaseSettingsSource):
            def get_field_value(self, field: FieldInfo, field_name: str) -> tuple[Any, str, bool]:
                return None, field_name, False

            def __call__(self) -> dict[str, Any]:
                return {k: v for k, v in dotenv().items() if k not in names}

        return _DotEnv(self.settings_cls)


class Settings(BaseSettings):
    """Everything Orchard needs to know; every path derives from `home`."""

    model_config = SettingsConfigDict(
        env_prefix="ORCHARD_", env_file=".env", extra="forbid", frozen=True, validate_default=True
    )

    profile: Literal["embedded", "production"] = "embedded"
    home: Path = Field(default=Path(".orchard"), description="state folder: everything Orchard writes")
    portfolio: Path = Field(
        default=DEMO_PORTFOLIO, description="the portfolio folder (portfolio.yaml); default: the demo's"
    )
    _portfolio_def: tuple[Path, Portfolio] | None = PrivateAttr(default=None)

    # the run: seed of the simulator and every fit, and the months it covers
    seed: int = Field(default=7, description="seed of the simulator and of every model fit")
    start_month: str = "2019-01"
    end_month: str = "2021-12"
    lane_process: bool = Field(
        default=True,
        description="run the work nothing after it reads (the joint model's month, dashboards, drift reports) in "
        "a second process beside the lifecycle; false: in place, for a machine with no core to spare",
    )
    lake_cache_mb: int = Field(
        default=256,
        ge=0,
        description="MB of silver months a process keeps once read (a file written once; the lifecycle reads the "
        "same months every month); 0: read every time",
    )
    # sources read through SQL: connection name (the portfolio's sql.connection) -> SQLAlchemy URL
    sql_urls: dict[str, SecretStr] = Field(default_factory=dict, description="secret URLs of SQL sources")

    # services
    prefect_api_url: str | None = Field(default=None, description="Prefect server; None = temporary server")
    mlflow_tracking_uri: str | None = Field(default=None, description="None = sqlite under home")
    governance_db_url: str | None = Field(default=None, description="alias history; None = sqlite under home")

    # the groups (each field set by its flat ORCHARD_<FIELD> variable: _GroupedEnv)
    simulation: SimulationConfig = Field(default_factory=SimulationConfig)
    governance: GovernanceConfig = Field(default_factory=GovernanceConfig)
    serving: ServingConfig = Field(default_factory=ServingConfig)
    production: ProductionConfig = Field(default_factory=ProductionConfig)

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        """Read the groups' fields from flat ORCHARD_<FIELD> variables, below init values and top-level ones."""
        if not isinstance(env_settings, EnvSettingsSource) or not isinstance(
            dotenv_settings, DotEnvSettingsSource
        ):
            raise TypeError(
                "Settings reads the environment and a .env file through pydantic-settings' sources"
            )
        grouped = _GroupedEnv(settings_cls, env_settings, dotenv_settings)
        return (
            init_settings,
            env_settings,
            grouped.without_groups(dotenv_settings),
            grouped,
            file_secret_settings,
        )

    @model_validator(mode="before")
    @classmethod
    def _into_groups(cls, data: Any) -> Any:
        """Route a group's field given by its own name (api_key=..., as ORCHARD_API_KEY sets it) into its group."""
        if not isinstance(data, dict):
            return data
        data = dict(data)
        for group, model in GROUPS.items():
            flat = {name: data.pop(name) for name in list(data) if name in model.model_fields}
            if flat:
                given = data.get(group) or {}
                data[group] = {**(given.model_dump() if isinstance(given, BaseModel) else given), **flat}
        return data

    @field_validator("start_month", "end_month")
    @classmethod
    def _month(cls, value: str) -> str:
        return _month_setting(value)

    @model_validator(mode="after")
    def _window(self) -> Settings:
        if self.end_month < self.start_month:
            raise ValueError(f"end_month {self.end_month} is before start_month {self.start_month}")
        return self

    @property
    def portfolio_def(self) -> Portfolio:
        """Return the validated portfolio definition (read once per settings object)."""
        if self._portfolio_def is None or self._portfolio_def[0] != self.portfolio:
            self._portfolio_def = (self.portfolio, load_portfolio(self.portfolio))
        return self._portfolio_def[1]

    # --- derived locations (all under home) ---
    @property
    def landing_dir(self) -> Path:
        return self.home / "landing"

    @property
    def lake_dir(self) -> Path:
        return self.home / "lake"

    @property
    def bronze_dir(self) -> Path:
        return self.lake_dir / "bronze"

    @property
    def silver_dir(self) -> Path:
        return self.lake_dir / "silver"

    @property
    def quarantine_dir(self) -> Path:
        return self.lake_dir / "quarantine"

    @property
    def gx_dir(self) -> Path:
        return self.home / "gx"

    @property
    def features_dir(self) -> Path:
        return self.home / "features"

    @property
    def feast_dir(self) -> Path:
        return self.home / "feast"

    @property
    def mlflow_dir(self) -> Path:
        return self.home / "mlflow"

    @property
    def tracking_uri(self) -> str:
        if self.mlflow_tracking_uri:
            return self.mlflow_tracking_uri
        return f"sqlite:///{(self.mlflow_dir / 'mlflow.db').resolve()}"

    @property
    def artifact_location(self) -> str:
        return (self.mlflow_dir / "artifacts").resolve().as_uri()

    @property
    def registry_db_url(self) -> str:
        """Database of the append-only governance records (alias history, approvals)."""
        if self.governance_db_url:
            return self.governance_db_url
        return f"sqlite:///{(self.home / 'registry' / 'history.db').resolve()}"

    @property
    def evidently_dir(self) -> Path:
        return self.home / "evidently"

    @property
    def reports_dir(self) -> Path:
        return self.home / "reports"

    @property
    def prefect_home(self) -> Path:
        return self.home / "prefect"

    @property
    def state_dir(self) -> Path:
        """Progress markers of the lifecycle (which months are done)."""
        return self.home / "state"

    @property
    def portfolio_marker(self) -> Path:
        """Which portfolio this state folder belongs to (written by the first run)."""
        return self.home / "portfolio.json"

    @property
    def references_dir(self) -> Path:
        """Each registered version's frozen monitoring reference (development sample scores and features)."""
        return self.home / "references"

    @property
    def scores_dir(self) -> Path:
        """Batch scores per served model and month."""
        return self.home / "scores"

    @property
    def decisions_dir(self) -> Path:
        """The decision API's append-only decision log."""
        return self.home / "decisions"

    @property
    def alerts_dir(self) -> Path:
        """Governance alerts (JSON lines) for the people on call."""
        return self.home / "alerts"

    @property
    def simulator_dir(self) -> Path:
        """The simulator's own records: the simulated lender's decisions and the declined's counterfactual truth."""
        return self.home / "simulator"

    @property
    def federated_dir(self) -> Path:
        """The federated parties' homes, the vertical split and the joint jobs' records."""
        return self.home / "federated"

    @property
    def logs_dir(self) -> Path:
        """Logs of the servers `orchard ui` and `orchard up` start."""
        return self.home / "logs"

    @property
    def run_dir(self) -> Path:
        """PID files, logs and the MLflow auth file of the production services `orchard up` started."""
        return self.home / "run"

    @property
    def shared_dir(self) -> Path:
        """What the production services share (the MLflow server's artifact store)."""
        return self.home / "shared"

    def service_prefect_home(self, role: str) -> Path:
        """The Prefect home of a production service process (server, worker, or the CLI deploying to them)."""
        return self.home / f"prefect-{role}"


def setting_names() -> set[str]:
    """Return the flat name of every setting (a group's fields by their own names), e.g. `api_key`."""
    top = {name for name in Settings.model_fields if name not in GROUPS}
    return top | {name for model in GROUPS.values() for name in model.model_fields}


def tool_environment(settings: Settings) -> dict[str, str]:
    """Environment for the third-party tools: their state under home, telemetry off."""
    env = {
        "PREFECT_HOME": str(settings.prefect_home.resolve()),
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "90",
        "PREFECT_LOGGING_LEVEL": "WARNING",
        "PREFECT_UI_ENABLED": "true",
        "MLFLOW_DISABLE_TELEMETRY": "true",
        "MLFLOW_TRACKING_URI": settings.tracking_uri,
        "MLFLOW_LOG_UV_FILES": "false",
        "MLFLOW_LOGGING_LEVEL": "ERROR",
        "DO_NOT_TRACK": "1",
        "GX_ANALYTICS_ENABLED": "False",
        "FEAST_USAGE": "False",
        "EVIDENTLY_DISABLE_TELEMETRY": "1",
        "SCARF_NO_ANALYTICS": "true",
    }
    if settings.prefect_api_url:
        env["PREFECT_API_URL"] = settings.prefect_api_url
    env.update(mlflow_credentials(settings.production))
    return env


def mlflow_credentials(production: ProductionConfig) -> dict[str, str]:
    """Basic-auth credentials of the MLflow user the flows run as (the MLflow client reads only these variables)."""
    if not production.mlflow_username or production.mlflow_password is None:
        return {}
    return {
        "MLFLOW_TRACKING_USERNAME": production.mlflow_username,
        "MLFLOW_TRACKING_PASSWORD": production.mlflow_password.get_secret_value(),
    }
