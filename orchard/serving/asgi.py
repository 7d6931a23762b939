"""The decision API as an ASGI factory over the environment: what the container and multi-worker serve run."""

from __future__ import annotations

from fastapi import FastAPI

from orchard.serving.app import create_app
from orchard.settings import Settings

FACTORY = "orchard.serving.asgi:app_from_environment"


def app_from_environment() -> FastAPI:
    """Return the decision API over settings read from ORCHARD_* variables (and .env), as `uvicorn --factory`."""
    return create_app(Settings())
