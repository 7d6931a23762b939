"""A champion change is picked up without restart, and no response ever mixes two versions."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from orchard.feature_store import open_store
from orchard.serving.app import create_app
from orchard.serving.models import load_served
from orchard.serving.online import OnlineFeatureReader
from orchard.serving.scoring import score_row
from orchard.settings import Settings
from orchard.testing.demo import demo_model
from orchard.testing.serving_home import HEADERS, applications, live_server, promote, serving_config
from tests.integration.serving_home import serving_home_fixture  # noqa: F401  (registers the fixture)

APPLICATION_FRAUD = demo_model("application_fraud")
APPLICATION_PD = demo_model("application_pd")

pytestmark = pytest.mark.slow  # the shared lifecycle home takes ~1-2 minutes to build once per session

THREADS = 4
SWAPS = 6


def _expected(settings: Settings, versions: list[int], bodies: list[dict]) -> dict[tuple[int, str], tuple]:
    """Return (pd, reason codes) of every body under every version, computed outside the API."""
    reader = OnlineFeatureReader(open_store(settings), APPLICATION_PD.feature_service)
    expected = {}
    for version in versions:
        served = load_served(settings, APPLICATION_PD.name, version)
        for body in bodies:
            inputs = {**reader.read(body["customer_id"]).values, **body}
            scored = score_row(served, inputs)
            expected[(version, body["customer_id"])] = (float(scored.pd[0]), scored.reasons[0])
    return expected


def test_alias_moves_under_concurrent_load_and_no_response_mixes_versions(
    serving_home: tuple[Settings, dict[str, list[int]]],
) -> None:
    settings, registered = serving_home
    versions = registered[APPLICATION_PD.name]
    promote(settings, APPLICATION_PD.name, versions[0], "2019-06")
    bodies = applications(settings, n=8)
    expected = _expected(settings, versions, bodies)
    differing = [
        b
        for b in bodies
        if expected[(versions[0], b["customer_id"])][0] != expected[(versions[1], b["customer_id"])][0]
    ]
    assert len(differing) == len(bodies), "the two versions must score every test customer differently"
    stop = threading.Event()
    responses: list[dict] = []
    errors: list[str] = []

    def hammer(base_url: str, offset: int) -> None:
        with httpx.Client(base_url=base_url, headers=HEADERS, timeout=10) as client:
            i = offset
            while not stop.is_set():
                response = client.post("/v1/decisions/application", json=bodies[i % len(bodies)])
                if response.status_code != 200:
                    errors.append(f"{response.status_code}: {response.text[:200]}")
                else:
                    responses.append(
                        {**response.json(), "customer_id": bodies[i % len(bodies)]["customer_id"]}
                    )
                i += 1

    def answered_by(version: int, since: int) -> None:
        """Wait until a response after the first `since` ones names `version` (the server swapped to it)."""
        deadline = time.monotonic() + 60
        while not any(r["model_versions"][APPLICATION_PD.name] == version for r in responses[since:]):
            assert time.monotonic() < deadline and not errors, f"v{version} never answered: {errors[:3]}"
            time.sleep(0.01)

    # Given a live server polling the alias every 0.05 s, hammered by several client threads
    app = create_app(settings, config=serving_config(champion_poll_seconds=0.05))
    with live_server(app) as base_url, ThreadPoolExecutor(THREADS) as pool:
        futures = [pool.submit(hammer, base_url, k) for k in range(THREADS)]
        try:
            answered_by(versions[0], 0)
            # When the champion alias flips between the two versions several times, each flip once the server
            # answers with the version before it
            for swap in range(SWAPS):
                target, since = versions[(swap + 1) % 2], len(responses)
                promote(settings, APPLICATION_PD.name, target, f"2019-0{7 + swap % 2}")
                answered_by(target, since)
        finally:
            stop.set()
            for future in futures:
                future.result()
            promote(settings, APPLICATION_PD.name, versions[0], "2019-06")

    # Then no request failed, and both versions answered
    assert not errors, errors[:3]
    seen = {r["model_versions"][APPLICATION_PD.name] for r in responses}
    assert seen == set(versions), (
        f"expected both versions to answer, saw {seen} in {len(responses)} responses"
    )
    # And every response is entirely the version it names: its PD and reasons are that version's
    for r in responses:
        version = r["model_versions"][APPLICATION_PD.name]
        pd_value, reasons = expected[(version, r["customer_id"])]
        assert r["pd"] == pd_value, f"response names v{version} but its PD is not v{version}'s"
        codes = [x["code"] for x in r["reasons"] if x["code"] != "RC_FRAUD_SUSPECTED"]
        assert codes == [x["code"] for x in reasons][: len(codes)], (version, codes, reasons)
        assert r["model_versions"][APPLICATION_FRAUD.name] == registered[APPLICATION_FRAUD.name][0]
