"""Fixtures for the service: a tiny checkpoint, a migrated SQLite data dir, an API client."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import create_engine, text

from app.config import Settings, get_settings
from app.db import repo
from app.db.session import session_scope
from app.migrate import upgrade
from app.model_versions import register_checkpoint
from tests.utils.service import tiny_checkpoint


@pytest.fixture(scope="session")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tiny_checkpoint(tmp_path_factory.mktemp("ckpt") / "tiny.safetensors")


def make_settings(data_dir: Path, checkpoint: Path, **overrides: object) -> Settings:
    return Settings(data_dir=data_dir, checkpoint=checkpoint, sweep_interval_seconds=0, **overrides)


@pytest.fixture
def settings(tmp_path: Path, checkpoint: Path) -> Settings:
    """A migrated SQLite database with the tiny checkpoint as the active model."""
    s = make_settings(tmp_path / "data", checkpoint, max_upload_mb=2)
    upgrade(s.database_url)
    with session_scope(s.database_url) as session:
        register_checkpoint(session, checkpoint)
    return s


@pytest.fixture
def client(settings: Settings) -> Iterator[TestClient]:
    from app.api.main import app

    app.dependency_overrides[get_settings] = lambda: settings
    with TestClient(app) as test_client:
        yield test_client
    app.dependency_overrides.clear()


def new_key(settings: Settings, role: str, name: str = "test") -> str:
    with session_scope(settings.database_url) as session:
        _, plain = repo.create_api_key(session, name, role)
    return plain


def auth(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


@pytest.fixture
def scanner(settings: Settings) -> dict[str, str]:
    return auth(new_key(settings, "scanner", "scanner 1"))


@pytest.fixture
def radiographer(settings: Settings) -> dict[str, str]:
    return auth(new_key(settings, "radiographer"))


PG_ADMIN = "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"


@pytest.fixture(scope="session")
def pg_url() -> Iterator[str]:
    """A fresh PostgreSQL database on 127.0.0.1 for this test session, dropped afterwards."""
    name = f"amaqc_test_{uuid.uuid4().hex[:10]}"
    admin = create_engine(PG_ADMIN, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
    except Exception as exc:  # pragma: no cover - depends on the machine
        pytest.fail(f"PostgreSQL on 127.0.0.1:5432 is not usable: {exc}")
    yield f"postgresql+psycopg://postgres@127.0.0.1:5432/{name}"
    from app.db.session import get_engine

    get_engine.cache_clear()  # (engines of this process hold connections to it)
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()
