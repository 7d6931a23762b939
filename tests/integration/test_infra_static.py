"""infra/ checked statically (no container engine here): files parse; images, ports and env names agree with settings."""

from __future__ import annotations

import json
import re
import tomllib
from pathlib import Path

import yaml

from orchard.production import DATABASES, WORK_POOL
from orchard.settings import setting_names
from tests.services.conftest import ProductionSettings

INFRA = Path(__file__).resolve().parents[2] / "infra"
REPO = INFRA.parent
NOT_SETTINGS = {"ORCHARD_REPO_DIR"}  # read by prefect.yaml's pull step, not by Settings


def _pins() -> dict[str, str]:
    deps = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["dependencies"]
    return {re.split(r"[\[=]", d)[0]: d.split("==")[1] for d in deps}


def _compose() -> dict:
    return yaml.safe_load((INFRA / "compose.yaml").read_text())


def _k8s() -> list[dict]:
    return [d for d in yaml.safe_load_all((INFRA / "k8s" / "orchard.yaml").read_text()) if d]


def _orchard_env_names(text: str) -> set[str]:
    return set(re.findall(r"\b(ORCHARD_[A-Z_]+)\s*[:=]", text)) | set(
        re.findall(r"name: (ORCHARD_[A-Z_]+)", text)
    )


def test_compose_has_every_service_with_pinned_images() -> None:
    # Given the compose file
    services = _compose()["services"]
    # Then every component of the production profile is there
    expected = {
        "postgres",
        "redis",
        "minio",
        "mlflow",
        "prefect-server",
        "prefect-worker",
        "evidently-ui",
        "decision-api",
    }
    assert expected <= set(services), f"missing: {expected - set(services)}"
    # And the MLflow and Prefect images carry the locked versions
    pins = _pins()
    assert services["mlflow"]["image"].endswith(f":v{pins['mlflow']}"), services["mlflow"]["image"]
    assert services["prefect-server"]["image"].startswith(f"prefecthq/prefect:{pins['prefect']}-python3.11")
    assert "--app-name=basic-auth" in services["mlflow"]["command"], "MLflow runs with basic-auth"


def test_ports_agree_with_the_settings_defaults() -> None:
    settings = ProductionSettings(_env_file=None)  # type: ignore[call-arg]
    services = _compose()["services"]
    assert f"127.0.0.1:{settings.production.mlflow_server_port}:5000" in services["mlflow"]["ports"]
    assert f"127.0.0.1:{settings.production.prefect_server_port}:4200" in services["prefect-server"]["ports"]
    assert (
        "127.0.0.1:5432:5432" in services["postgres"]["ports"]
        and "127.0.0.1:6379:6379" in services["redis"]["ports"]
    )
    assert settings.production.redis_url.startswith("redis://127.0.0.1:6379")
    k8s_ports = {
        d["metadata"]["name"]: d["spec"]["ports"][0]["port"] for d in _k8s() if d["kind"] == "Service"
    }
    assert (
        k8s_ports["mlflow"] == 5000 and k8s_ports["prefect-server"] == 4200 and k8s_ports["postgres"] == 5432
    )


def test_every_orchard_variable_is_a_setting() -> None:
    # Given the ORCHARD_ variables the compose file, the manifests and the profile configs set
    fields = {f"ORCHARD_{name.upper()}" for name in setting_names()}
    texts = [
        (INFRA / p).read_text()
        for p in ("compose.yaml", "k8s/orchard.yaml", "loopback.env", "production.env.example")
    ]
    names = set().union(*(_orchard_env_names(t) for t in texts)) - NOT_SETTINGS
    # Then each one is a field of Settings (a typo would be silently ignored by pydantic-settings)
    assert names, "no ORCHARD_ variables found"
    assert names <= fields, f"not settings: {sorted(names - fields)}"


def test_no_secret_has_a_default() -> None:
    compose = (INFRA / "compose.yaml").read_text()
    # every ${VAR...} in compose is a required variable (:?) — no fallback values
    for match in re.finditer(r"\$\{([A-Z0-9_]+)([^}]*)\}", compose):
        assert match.group(2).startswith(":?"), f"${{{match.group(1)}}} must be required, not defaulted"
    for doc in _k8s():
        assert doc["kind"] != "Secret", "no Secret with values in git"
    example = (INFRA / "production.env.example").read_text()
    assert all(line.endswith("=") for line in example.splitlines() if line and not line.startswith("#"))


def test_databases_and_work_pool_agree_with_the_code() -> None:
    init = (INFRA / "postgres-init.sql").read_text()
    # every service database, plus the decision log's own (the API appends there and nowhere else)
    assert set(re.findall(r"CREATE DATABASE (\w+)", init)) == {*DATABASES.values(), "orchard_decisions"}
    assert (INFRA / "work-pool.json").read_text().count(f'"{WORK_POOL}"') == 1
    prefect_yaml = yaml.safe_load((REPO / "prefect.yaml").read_text())
    assert {d["work_pool"]["name"] for d in prefect_yaml["deployments"]} == {WORK_POOL}
    for service in ("prefect-worker",):
        assert WORK_POOL in _compose()["services"][service]["command"]


def test_the_api_command_is_one_command_everywhere_and_the_tests_run_it() -> None:
    # Given the image's CMD (the command tests/integration/test_api_attacks.py runs locally, on loopback)
    from orchard.testing.serving_home import container_command

    cmd_line = next(
        line for line in (INFRA / "Dockerfile").read_text().splitlines() if line.startswith("CMD ")
    )
    image = json.loads(cmd_line.removeprefix("CMD "))
    # Then compose and Kubernetes run exactly it, and the tests run it with only host and worker count changed
    assert _compose()["services"]["decision-api"]["command"] == image
    (api,) = [d for d in _k8s() if d["kind"] == "Deployment" and d["metadata"]["name"] == "decision-api"]
    assert api["spec"]["template"]["spec"]["containers"][0]["command"] == image
    local = container_command(8080, workers=2)[2:]  # after "python -m"
    assert local == ["127.0.0.1" if arg == "0.0.0.0" else arg for arg in image], (local, image)
    # And Orchard's image runs as a non-root user
    assert "USER 10001:10001" in (INFRA / "Dockerfile").read_text()
