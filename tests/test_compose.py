"""docker-compose.yml, read as data: no Docker engine runs here, so this is the proof that it is
well formed and that every service the README names is there with its command, health check
and dependencies."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
APP_SERVICES = ("migrate", "api", "worker", "beat")


@pytest.fixture(scope="module")
def services() -> dict[str, Any]:
    document = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    found: dict[str, Any] = document["services"]
    return found


def readme_compose_services() -> set[str]:
    """The services the README's Docker Compose section names (in backquotes)."""
    text = (ROOT / "README.md").read_text()
    section = text.split("## Docker Compose", 1)[1].split("\n## ", 1)[0]
    return set(re.findall(r"`([a-z]+)`", section)) & {
        "postgres", "redis", "migrate", "api", "worker", "beat", "flower"
    }  # fmt: skip


def test_every_service_the_readme_names_is_in_the_compose_file(services: dict[str, Any]) -> None:
    named = readme_compose_services()
    assert {"postgres", "redis", "migrate", "api", "worker", "beat", "flower"} <= named
    assert named <= set(services)


def test_each_long_running_service_has_a_health_check(services: dict[str, Any]) -> None:
    for name in ("postgres", "redis", "api", "worker", "beat", "flower"):
        check = services[name].get("healthcheck")
        assert check and check["test"], name
    # The API is healthy only when it is ready: Postgres, Redis and storage answer.
    assert "/readyz" in " ".join(services["api"]["healthcheck"]["test"])
    assert "9100" in " ".join(services["worker"]["healthcheck"]["test"])


def test_the_app_services_run_the_projects_commands_from_one_image(
    services: dict[str, Any],
) -> None:
    commands = {name: services[name]["command"] for name in APP_SERVICES}
    assert commands["migrate"] == ["bulkredeem", "migrate"]
    assert commands["api"][:2] == ["uvicorn", "api.app:app"]
    worker = commands["worker"]
    assert worker[:4] == ["celery", "-A", "worker.app:celery_app", "worker"]
    assert worker[worker.index("-Q") + 1] == "bulkredeem"  # settings.queue_name's default
    assert commands["beat"][:4] == ["celery", "-A", "worker.app:celery_app", "beat"]
    assert len({services[name]["image"] for name in APP_SERVICES}) == 1
    assert services["flower"]["command"][-2:] == ["flower", "--port=5555"]


def test_services_start_after_what_they_need(services: dict[str, Any]) -> None:
    def needs(name: str) -> dict[str, str]:
        return {dep: spec["condition"] for dep, spec in services[name]["depends_on"].items()}

    assert needs("migrate") == {"postgres": "service_healthy"}
    ready = {
        "postgres": "service_healthy",
        "redis": "service_healthy",
        "migrate": "service_completed_successfully",
    }
    assert needs("api") == ready
    assert needs("worker") == ready
    assert needs("beat") == {
        "redis": "service_healthy",
        "migrate": "service_completed_successfully",
    }
    assert needs("flower") == {"redis": "service_healthy"}


def test_workers_scale_and_share_what_they_must(services: dict[str, Any]) -> None:
    worker = services["worker"]
    # --scale worker=N needs no fixed container name and no host port.
    assert "container_name" not in worker and "ports" not in worker
    for name in ("api", "worker", "beat"):
        environment = services[name]["environment"]
        # One file store for all (a shared volume here; S3 by STORAGE_URL otherwise).
        assert environment["STORAGE_URL"] == "file:///data/files"
        assert "files:/data" in services[name]["volumes"]
        # The service's own role, never the owner, for requests and chunks.
        assert environment["DATABASE_URL"].startswith("postgresql://bulkredeem_app:")
        assert environment["DATABASE_ADMIN_URL"].startswith("postgresql://bulkredeem:")
    assert services["postgres"]["volumes"] and services["redis"]["volumes"]


def test_workers_weigh_less_than_the_api_for_the_cpu(services: dict[str, Any]) -> None:
    """Nice orders processes inside one container only: across containers the weights do."""
    default = 1024
    assert services["worker"]["cpu_shares"] < services["api"].get("cpu_shares", default)
