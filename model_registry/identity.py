"""Who is acting: the authenticated identity recorded on approvals, promotions, rollbacks and overrides.

Production: the MLflow basic-auth user, proven by asking the MLflow server who the credentials belong to.
Embedded: the configured `identity` setting, else the operating-system user; recorded as such (`configured`,
`os-user`), so nobody mistakes a local name for an authenticated one.
"""

from __future__ import annotations

import getpass
from dataclasses import dataclass

import httpx

from orchard.errors import OrchardError
from orchard.settings import GovernanceConfig, Settings

AUTH_TIMEOUT_SECONDS = 10.0


@dataclass(frozen=True)
class Identity:
    """A name and how it was established (mlflow-basic-auth, configured, os-user)."""

    name: str
    source: str


def _mlflow_user(settings: Settings) -> Identity:
    """Return the MLflow basic-auth user of the settings, after the MLflow server accepted its password."""
    if not settings.production.mlflow_username or settings.production.mlflow_password is None:
        raise OrchardError(
            "the production profile needs ORCHARD_MLFLOW_USERNAME and ORCHARD_MLFLOW_PASSWORD: approvals, "
            "promotions, rollbacks and overrides are recorded under the MLflow user that made them"
        )
    url = f"{settings.tracking_uri.rstrip('/')}/api/2.0/mlflow/users/get"
    auth = (settings.production.mlflow_username, settings.production.mlflow_password.get_secret_value())
    try:
        response = httpx.get(
            url,
            params={"username": settings.production.mlflow_username},
            auth=auth,
            timeout=AUTH_TIMEOUT_SECONDS,
        )
    except httpx.HTTPError as exc:
        raise OrchardError(
            f"cannot authenticate {settings.production.mlflow_username!r} at MLflow ({url}): {exc}"
        ) from exc
    if response.status_code != 200:
        raise OrchardError(
            f"MLflow refused the credentials of {settings.production.mlflow_username!r} "
            f"(HTTP {response.status_code}): no identity, nothing recorded"
        )
    return Identity(settings.production.mlflow_username, "mlflow-basic-auth")


def current_identity(settings: Settings) -> Identity:
    """Return who is acting: the authenticated MLflow user in production, else configured or OS user."""
    if settings.profile == "production":
        return _mlflow_user(settings)
    if settings.governance.identity:
        return Identity(settings.governance.identity, "configured")
    return Identity(getpass.getuser(), "os-user")


def four_eyes_on(settings: Settings) -> bool:
    """Return whether an approver must differ from whoever trained the version (on by default in production)."""
    return (
        settings.profile == "production"
        if settings.governance.four_eyes is None
        else settings.governance.four_eyes
    )


def may_override(governance: GovernanceConfig, identity: Identity) -> bool:
    """Return whether an identity holds the override role (nobody does unless configured)."""
    return identity.name in governance.override_identities
