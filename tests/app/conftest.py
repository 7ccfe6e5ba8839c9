"""Fixtures for the service: a tiny checkpoint, a migrated SQLite data dir, an API client, and
the full stack (database + broker + a real worker) both ways."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import create_engine, text

from app.config import Settings, get_settings
from app.db import repo
from app.db.session import session_scope
from app.migrate import upgrade
from app.model_versions import register_checkpoint
from tests.utils.service import start_worker, stop_process, tiny_checkpoint

REDIS_URL = "redis://127.0.0.1:6379/13"


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


@contextmanager
def app_client(settings: Settings, base_url: str = "http://testserver") -> Iterator[TestClient]:
    """A client of the API (its startup and shutdown run) with ``settings`` in place of the
    environment's; the override is gone afterwards, however the block ends."""
    from app.api.main import app

    app.dependency_overrides[get_settings] = lambda: settings
    try:
        with TestClient(app, base_url=base_url) as test_client:
            yield test_client
    finally:
        app.dependency_overrides.clear()


@pytest.fixture
def client(settings: Settings) -> Iterator[TestClient]:
    with app_client(settings) as test_client:
        yield test_client


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


@contextmanager
def pg_database() -> Iterator[str]:
    """A fresh PostgreSQL database on 127.0.0.1, dropped when the block ends."""
    name = f"amaqc_test_{uuid.uuid4().hex[:10]}"
    admin = create_engine(PG_ADMIN, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
    except Exception as exc:  # pragma: no cover - depends on the machine
        pytest.fail(f"PostgreSQL on 127.0.0.1:5432 is not usable: {exc}")
    try:
        yield f"postgresql+psycopg://postgres@127.0.0.1:5432/{name}"
    finally:
        from app.db.session import get_engine

        get_engine.cache_clear()  # (engines of this process hold connections to it)
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@pytest.fixture(scope="session")
def pg_url() -> Iterator[str]:
    """A fresh PostgreSQL database for this test session."""
    with pg_database() as url:
        yield url


@contextmanager
def backend_settings(
    kind: str,
    data: Path,
    checkpoint: Path,
    *,
    redis_url: str = REDIS_URL,
    register: bool = True,
    **overrides: object,
) -> Iterator[Settings]:
    """Settings on a migrated database: ``sqlite`` (SQLite + the local broker under ``data``)
    or ``postgresql`` (a database of its own, dropped afterwards, + Redis at ``redis_url``,
    flushed first); the tiny checkpoint registered as the active model when ``register``."""
    with ExitStack() as cleanup:
        if kind == "postgresql":
            import redis

            redis.Redis.from_url(redis_url).flushdb()
            url = cleanup.enter_context(pg_database())
            overrides = {"database_url": url, "broker_url": redis_url, **overrides}
        settings = make_settings(data, checkpoint, **overrides)
        data.mkdir(parents=True, exist_ok=True)
        upgrade(settings.database_url)
        if register:
            with session_scope(settings.database_url) as session:
                register_checkpoint(session, checkpoint)
        yield settings


@pytest.fixture
def worker_env() -> dict[str, str]:
    """Extra environment of the stack's worker process (a test module overrides this)."""
    return {}


@pytest.fixture(params=["sqlite", "postgresql"])
def stack(
    request: pytest.FixtureRequest, tmp_path: Path, checkpoint: Path, worker_env: dict[str, str]
) -> Iterator[Settings]:
    """Migrated database + broker + a real worker process: SQLite and the local SQLAlchemy
    broker, or PostgreSQL (a database of its own) and Redis on 127.0.0.1 (database 13,
    flushed first)."""
    with backend_settings(
        request.param, tmp_path / "data", checkpoint, series_stable_seconds=1
    ) as settings:
        worker = start_worker(settings, env=worker_env)
        try:
            yield settings
        finally:
            stop_process(worker)


def set_threshold(settings: Settings, threshold: float) -> None:
    """Make the active model's verdicts deterministic whatever the tiny model outputs:
    0.0 flags every slice (probability >= 0), 1.01 flags none."""
    with session_scope(settings.database_url) as session:
        version = repo.active_model_version(session)
        assert version is not None
        version.threshold = threshold


@pytest.fixture
def web(settings: Settings) -> Iterator[TestClient]:
    """An API client on https://testserver, so the Secure session cookie is kept and sent."""
    with app_client(settings, base_url="https://testserver") as test_client:
        yield test_client


def sign_in(client: TestClient, key: str) -> str:
    """Sign ``client`` in with ``key``; returns the page's CSRF token."""
    r = client.post("/login", data={"api_key": key}, follow_redirects=False)
    assert r.status_code == 303, r.text
    page = client.get("/").text
    return page.split('name="csrf-token" content="', 1)[1].split('"', 1)[0]
