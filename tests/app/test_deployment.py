"""No Docker engine here: parse docker-compose.yml and check what it would run exists."""

from __future__ import annotations

from pathlib import Path

import yaml
from typer.main import get_command

from app.cli import app

ROOT = Path(__file__).resolve().parents[2]


def _compose() -> dict:
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())


def test_compose_has_the_production_topology() -> None:
    assert set(_compose()["services"]) == {
        "postgres",
        "redis",
        "migrate",
        "api",
        "worker",
        "dicom",
        "trainer",
    }


def test_the_dicom_service_publishes_the_port_it_listens_on() -> None:
    dicom = _compose()["services"]["dicom"]
    command = dicom["command"]
    port = command[command.index("--port") + 1]
    assert command[command.index("--host") + 1] == "0.0.0.0"
    assert f"{port}:{port}" in dicom["ports"] and port in " ".join(dicom["healthcheck"]["test"])


def test_every_amaqc_command_in_compose_exists() -> None:
    known = set(get_command(app).commands)  # type: ignore[attr-defined]
    for name, service in _compose()["services"].items():
        command = service.get("command")
        if service.get("image", "").startswith("amaqc") and command:
            assert command[0] in known, f"service {name} runs unknown `amaqc {command[0]}`"


def test_training_jobs_run_on_their_own_worker() -> None:
    services = _compose()["services"]
    assert services["worker"]["command"][-1] == "inference"
    trainer = services["trainer"]["command"]
    assert trainer[trainer.index("--queues") + 1] == "training"


def test_worker_reserves_an_nvidia_gpu() -> None:
    devices = _compose()["services"]["worker"]["deploy"]["resources"]["reservations"]["devices"]
    assert devices[0]["driver"] == "nvidia" and "gpu" in devices[0]["capabilities"]


def test_dockerfile_base_image_is_a_build_arg() -> None:
    text = (ROOT / "Dockerfile").read_text()
    assert "ARG BASE_IMAGE=python:3.11-slim" in text and "FROM ${BASE_IMAGE}" in text


def test_every_long_running_service_is_started_again_when_it_dies() -> None:
    """A worker the OOM killer ends comes back; its series is then sent again (heartbeat)."""
    for name, service in _compose()["services"].items():
        if name not in ("postgres", "redis", "migrate"):
            assert service.get("restart") == "unless-stopped", name
    assert _compose()["services"]["migrate"]["restart"] == "no"
