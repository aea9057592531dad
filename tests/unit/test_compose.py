"""No Docker engine runs here, so the compose file is checked against the code instead:
services present, commands valid for our CLI, every variable a real setting."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from cli.main import build_parser
from core.settings import Settings

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())


def _env_names() -> set[str]:
    names = {"DATABASE_URL", "KAFKA_BOOTSTRAP_SERVERS", "HF_HUB_OFFLINE"}
    for name, field in Settings.model_fields.items():
        names.add(field.alias or f"ARXIV_STREAM_{name.upper()}")
    return names


def test_services(compose: dict[str, Any]) -> None:
    services = compose["services"]
    assert set(services) >= {
        "kafka",
        "postgres",
        "migrate",
        "ingester",
        "worker",
        "trainer",
        "api",
        "prometheus",
    }
    kafka = services["kafka"]
    assert kafka["image"].startswith("apache/kafka")
    assert kafka["environment"]["KAFKA_PROCESS_ROLES"] == "broker,controller"  # KRaft
    assert services["postgres"]["image"].startswith("pgvector/pgvector:pg")  # with pgvector
    assert services["migrate"]["restart"] == "no"
    for name in ("ingester", "worker", "trainer"):
        assert services[name]["depends_on"]["migrate"]["condition"] == (
            "service_completed_successfully"
        )


def test_commands_parse_with_our_cli(compose: dict[str, Any]) -> None:
    parser = build_parser()
    for name in ("migrate", "ingester", "worker", "trainer", "api"):
        command = compose["services"][name]["command"]
        assert command[0] == "arxiv-stream"
        args = parser.parse_args(command[1:])
        assert callable(args.handler), name


def test_every_variable_is_a_setting(compose: dict[str, Any]) -> None:
    known = _env_names()
    for name, service in compose["services"].items():
        if name in ("kafka", "postgres", "prometheus"):
            continue
        env = service["environment"]
        assert "DATABASE_URL" in env and env["KAFKA_BOOTSTRAP_SERVERS"] == "kafka:9092"
        unknown = set(env) - known
        assert not unknown, f"{name}: {unknown} are not settings"
        # and the values validate
        values = {k: v for k, v in env.items() if k.startswith("ARXIV_STREAM_")}
        for key, value in values.items():
            field = key.removeprefix("ARXIV_STREAM_").lower()
            if field in Settings.model_fields:
                Settings.model_validate({field: value})


def test_prometheus_scrapes_the_ports_the_services_listen_on() -> None:
    scrape = yaml.safe_load((ROOT / "prometheus.yml").read_text())
    jobs = {job["job_name"]: job for job in scrape["scrape_configs"]}
    defaults = Settings()
    assert jobs["arxiv-stream-api"]["static_configs"][0]["targets"] == [f"api:{defaults.api_port}"]
    assert jobs["arxiv-stream-worker"]["dns_sd_configs"][0]["port"] == (
        defaults.worker_metrics_port
    )
    assert jobs["arxiv-stream-ingester"]["static_configs"][0]["targets"] == [
        f"ingester:{defaults.ingester_metrics_port}"
    ]
