"""The decision API as an ASGI factory over the environment: what the container and multi-worker serve run."""

from __future__ import annotations

from fastapi import FastAPI

from orchard.runtime import load_settings
from orchard.serving.app import create_app

FACTORY = "orchard.serving.asgi:app_from_environment"


def app_from_environment() -> FastAPI:
    """Return the decision API over settings read from ORCHARD_* variables (and .env), as `uvicorn --factory`.

    A bad setting is one line naming its variable, never the values around it (the API key among them).
    """
    return create_app(load_settings())
