"""docker-compose.yaml as a Compose implementation resolves it (`scripts/compose config`).

No Docker engine is needed: where Docker has no compose plugin, scripts/compose installs the
pinned docker-compose 1.29.2 on first use. Both its output and Docker Compose v2's are read.
"""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml

from tests.conftest import REPO

pytestmark = pytest.mark.integration

COMPOSE = REPO / "scripts" / "compose"
AIRFLOW_INIT = "airflow-init"
AIRFLOW_DAEMONS = (
    "airflow-apiserver",
    "airflow-scheduler",
    "airflow-dag-processor",
    "airflow-triggerer",
)
AIRFLOW = (AIRFLOW_INIT, *AIRFLOW_DAEMONS)
SERVICES = {*AIRFLOW, "postgres", "pubsub", "bigquery", "api"}
# What .env must provide (scripts/compose-env writes it); the file itself holds none of them.
SECRETS = (
    "POSTGRES_PASSWORD",
    "AIRFLOW_ADMIN_PASSWORD",
    "AIRFLOW_FERNET_KEY",
    "AIRFLOW_JWT_SECRET",
    "AIRFLOW_API_SECRET_KEY",
    "QUOTESTREAM_API_KEY",
)
SECRET_NAME = re.compile(r"(PASSWORD|SECRET|_KEY|TOKEN|SQL_ALCHEMY_CONN)$")


def compose(env_file: Path, *args: str) -> subprocess.CompletedProcess[str]:
    # Secrets from the caller's shell would hide a missing one in env_file.
    env = {name: value for name, value in os.environ.items() if name not in SECRETS}
    return subprocess.run(
        [str(COMPOSE), "--env-file", str(env_file), *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )


def read_env_file(path: Path) -> dict[str, str]:
    pairs = (line.split("=", 1) for line in path.read_text().splitlines() if "=" in line)
    return {name: value for name, value in pairs if not name.startswith("#")}


@pytest.fixture(scope="module")
def env_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A .env as a user gets it from scripts/compose-env: fresh random secrets."""
    path = tmp_path_factory.mktemp("compose") / ".env"
    subprocess.run([str(REPO / "scripts" / "compose-env"), str(path)], check=True)
    assert set(read_env_file(path)) == set(SECRETS)
    return path


@pytest.fixture(scope="module")
def secrets(env_file: Path) -> dict[str, str]:
    return read_env_file(env_file)


@pytest.fixture(scope="module")
def services(env_file: Path) -> dict[str, dict[str, Any]]:
    result = compose(env_file, "config")
    assert result.returncode == 0, result.stderr
    resolved: dict[str, dict[str, Any]] = yaml.safe_load(result.stdout)["services"]
    return resolved


def ports(service: dict[str, Any]) -> list[tuple[str, str, int]]:
    """(host ip, published port, container port) of each port; compose 1.x prints strings."""
    found = []
    for port in service.get("ports", []):
        if isinstance(port, dict):
            found.append((port.get("host_ip", ""), str(port.get("published", "")), port["target"]))
            continue
        *published, target = str(port).split("/")[0].split(":")
        host_ip, host_port = ([""] * (2 - len(published)) + published)[-2:]
        found.append((host_ip, host_port, int(target)))
    return found


def mounts(service: dict[str, Any]) -> dict[str, str]:
    """Container path -> host path (absolute) or volume name."""
    found = {}
    for volume in service.get("volumes", []):
        if isinstance(volume, dict):
            found[volume["target"]] = volume["source"]
        else:
            source, target = str(volume).split(":")[:2]
            found[target] = source
    return found


def container_port(services: dict[str, dict[str, Any]], name: str) -> int:
    (port,) = {target for _, _, target in ports(services[name])}
    return port


def test_the_stack_has_airflow_the_emulators_and_the_api(
    services: dict[str, dict[str, Any]],
) -> None:
    assert set(services) == SERVICES
    assert services["postgres"]["image"].startswith("postgres:")


def test_airflow_services_share_one_image_environment_and_mounts(
    services: dict[str, dict[str, Any]], secrets: dict[str, str]
) -> None:
    scheduler = services["airflow-scheduler"]
    assert Path(scheduler["build"]["context"]) == REPO
    assert scheduler["build"]["dockerfile"] == "docker/airflow/Dockerfile"
    assert (REPO / "docker" / "airflow" / "Dockerfile").is_file()
    for name in AIRFLOW:
        service = services[name]
        assert service["image"] == scheduler["image"], name
        assert service["build"] == scheduler["build"], name
        assert mounts(service) == mounts(scheduler), name
        environment = dict(service["environment"])
        if name == AIRFLOW_INIT:
            # Only the init job sets the admin's password.
            assert environment.pop("AIRFLOW_ADMIN_PASSWORD") == secrets["AIRFLOW_ADMIN_PASSWORD"]
        assert environment == scheduler["environment"], name
    commands = {name: services[name]["command"][:2] for name in AIRFLOW_DAEMONS}
    assert commands == {
        "airflow-apiserver": ["airflow", "api-server"],
        "airflow-scheduler": ["airflow", "scheduler"],
        "airflow-dag-processor": ["airflow", "dag-processor"],
        "airflow-triggerer": ["airflow", "triggerer"],
    }
    assert "airflow db migrate" in " ".join(services[AIRFLOW_INIT]["command"])


def test_airflow_runs_the_project_against_the_emulators_and_the_api(
    services: dict[str, dict[str, Any]],
) -> None:
    scheduler = services["airflow-scheduler"]
    environment = scheduler["environment"]
    execution_api = urlsplit(environment["AIRFLOW__CORE__EXECUTION_API_SERVER_URL"])
    assert execution_api.hostname == "airflow-apiserver"
    assert execution_api.port == container_port(services, "airflow-apiserver")
    assert execution_api.path == "/execution/"
    assert environment["AIRFLOW__CORE__EXECUTOR"] == "LocalExecutor"
    assert environment["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"].startswith(
        "postgresql+psycopg2://airflow:"
    )
    assert urlsplit(environment["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"]).hostname == "postgres"

    assert environment["QUOTESTREAM_TARGET"] == "local"
    assert environment["QUOTESTREAM_MESSAGE_ORDERING"] == "false"
    assert environment["PUBSUB_EMULATOR_HOST"] == f"pubsub:{container_port(services, 'pubsub')}"
    bigquery = urlsplit(environment["BIGQUERY_EMULATOR_HOST"])
    assert (bigquery.hostname, bigquery.port) == ("bigquery", 9050)
    assert 9050 in {target for _, _, target in ports(services["bigquery"])}
    assert environment["BIGQUERY_STORAGE_EMULATOR_HOST"] == "bigquery:9060"
    assert 9060 in {target for _, _, target in ports(services["bigquery"])}
    api = urlsplit(environment["QUOTESTREAM_API_URL"])
    assert (api.hostname, api.port) == ("api", container_port(services, "api"))
    api_environment = services["api"]["environment"]
    assert api_environment["PUBSUB_EMULATOR_HOST"] == environment["PUBSUB_EMULATOR_HOST"]

    # Composer 3's layout: the clone's dags/, an empty plugins folder of the image's own, the
    # core installed in the image (nothing on PYTHONPATH); the local jobs run the clone's
    # beam_pipelines/ from the checkout that QUOTESTREAM_LOCAL_CHECKOUT names.
    mounted = mounts(scheduler)
    dags = environment["AIRFLOW__CORE__DAGS_FOLDER"]
    assert Path(mounted[dags]) == REPO / "dags"
    assert environment["AIRFLOW__CORE__PLUGINS_FOLDER"] not in mounted
    assert "PYTHONPATH" not in environment
    checkout = environment["QUOTESTREAM_LOCAL_CHECKOUT"]
    assert Path(mounted[f"{checkout}/beam_pipelines"]) == REPO / "beam_pipelines"
    dockerfile = (REPO / "docker" / "airflow" / "Dockerfile").read_text()
    assert "pip install --no-deps /wheels/*.whl" in dockerfile
    state_dir = environment["QUOTESTREAM_LOCAL_STATE_DIR"]
    assert not mounted[state_dir].startswith("/"), "job state lives on a named volume"


def test_images_are_built_from_the_projects_dockerfiles(
    services: dict[str, dict[str, Any]],
) -> None:
    api = services["api"]["build"]
    assert Path(api["context"]) == REPO
    assert api["dockerfile"] == "api/Dockerfile"
    for name in ("pubsub", "bigquery"):
        context = Path(services[name]["build"]["context"])
        assert context == REPO / "emulators" / name
        assert (context / "Dockerfile").is_file()


def test_airflow_image_installs_the_projects_pins() -> None:
    """docker/airflow/requirements.txt is exported from the lock: no pin may drift from it."""

    def pins(path: Path) -> dict[str, str]:
        found = re.findall(r"^([A-Za-z0-9_.\-]+)==([^\s;]+)", path.read_text(), re.MULTILINE)
        return {name.lower(): version for name, version in found}

    image = pins(REPO / "docker" / "airflow" / "requirements.txt")
    lock = pins(REPO / "requirements.lock")
    assert {name: lock.get(name) for name in image} == image
    for extra in ("apache-airflow", "google-cloud-bigquery", "apache-beam", "pydantic-settings"):
        assert extra in image
    assert {"pytest", "ruff", "mypy"}.isdisjoint(image), "dev tools stay out of the image"
    postgres = pins(REPO / "docker" / "airflow" / "requirements-postgres.txt")
    assert {"psycopg2-binary", "asyncpg"} <= set(postgres)


def test_published_ports_are_on_the_hosts_loopback_only(
    services: dict[str, dict[str, Any]],
) -> None:
    published = {name: ports(service) for name, service in services.items()}
    for name in ("airflow-apiserver", "api", "pubsub", "bigquery"):
        assert published[name], f"{name} publishes no port"
    assert published["postgres"] == []
    exposed = [(name, port) for name, found in published.items() for port in found]
    exposed = [(name, port) for name, port in exposed if port[0] != "127.0.0.1"]
    assert exposed == []


def test_services_start_in_order_and_report_health(
    services: dict[str, dict[str, Any]],
) -> None:
    for name, service in services.items():
        if name != AIRFLOW_INIT:
            assert service.get("healthcheck", {}).get("test"), f"{name} has no health check"
        for dependency, how in service.get("depends_on", {}).items():
            assert how["condition"] in {"service_healthy", "service_completed_successfully"}
            if how["condition"] == "service_healthy":
                assert "healthcheck" in services[dependency], (name, dependency)
    for name in AIRFLOW_DAEMONS:
        depends_on = services[name]["depends_on"]
        assert depends_on[AIRFLOW_INIT]["condition"] == "service_completed_successfully"
        assert depends_on["postgres"]["condition"] == "service_healthy"
    # LocalExecutor: the tasks run in the scheduler and talk to these.
    scheduler = services["airflow-scheduler"]["depends_on"]
    assert {"airflow-apiserver", "pubsub", "bigquery", "api"} <= set(scheduler)


def test_secrets_come_from_the_env_file_only(
    services: dict[str, dict[str, Any]], secrets: dict[str, str]
) -> None:
    environment = services["airflow-scheduler"]["environment"]
    assert environment["AIRFLOW__CORE__FERNET_KEY"] == secrets["AIRFLOW_FERNET_KEY"]
    assert environment["AIRFLOW__API_AUTH__JWT_SECRET"] == secrets["AIRFLOW_JWT_SECRET"]
    assert environment["AIRFLOW__API__SECRET_KEY"] == secrets["AIRFLOW_API_SECRET_KEY"]
    database = urlsplit(environment["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"])
    assert database.password == secrets["POSTGRES_PASSWORD"]
    assert services["postgres"]["environment"]["POSTGRES_PASSWORD"] == database.password
    assert services["api"]["environment"]["QUOTESTREAM_API_KEY"] == secrets["QUOTESTREAM_API_KEY"]

    # In the file itself, every value of a secret's variable is a required interpolation.
    raw = yaml.safe_load((REPO / "docker-compose.yaml").read_text())
    literal = [
        (service, name, value)
        for service, definition in raw["services"].items()
        for name, value in dict(definition.get("environment") or {}).items()
        if SECRET_NAME.search(name) and not re.search(r"\$\{[A-Z_]+:\?", str(value))
    ]
    assert literal == []


def test_a_missing_secret_is_refused_by_name(env_file: Path, tmp_path: Path) -> None:
    incomplete = tmp_path / ".env"
    incomplete.write_text(
        "".join(
            line + "\n"
            for line in env_file.read_text().splitlines()
            if not line.startswith("AIRFLOW_JWT_SECRET=")
        )
    )
    result = compose(incomplete, "config")
    assert result.returncode != 0
    assert "AIRFLOW_JWT_SECRET" in result.stderr
