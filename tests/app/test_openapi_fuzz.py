"""Hostile input: schemathesis over the app's OpenAPI schema (issue 20).

Every operation of ``/openapi.json`` gets requests generated from its schema (valid ones and,
where the schema allows, ones that break it), sent to the ASGI app in-process, with an admin
key (every route admits it: the test reaches the handlers, not just the 401) on a real migrated
SQLite data dir with the tiny model active and one analysed series. Checked on each response:
no 5xx (``not_a_server_error``), the body matches the documented schema of its status
(``response_schema_conformance``) and the documented content type (``content_type_conformance``).
The event streams are left out (they answer with an endless stream by design), and so is
STOW-RS (``multipart/related``: schemathesis has no serializer for it; its bodies are DICOM
files, which test_fuzz_decoders.py mutates through the same decoder).

Bounded: ``AMAQC_SCHEMATHESIS_EXAMPLES`` examples per operation (default 12, derandomised;
``AMAQC_FUZZ_RANDOM=1`` for new ones each run).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
)

from app.api.main import app
from app.config import get_settings
from app.db.session import session_scope
from app.migrate import upgrade
from app.model_versions import register_checkpoint
from tests.app.conftest import auth, make_settings, new_key
from tests.utils.service import scored_series

EXAMPLES = int(os.environ.get("AMAQC_SCHEMATHESIS_EXAMPLES", "12"))
RANDOM = os.environ.get("AMAQC_FUZZ_RANDOM", "") == "1"  # new examples each run
# from_asgi would fetch /openapi.json through the app's lifespan at import, starting a sweeper
# on the default data dir: the schema is taken from the app object instead, then sent to it
_loaded = schemathesis.openapi.from_dict(app.openapi())
_loaded.app, _loaded.location = app, "/openapi.json"
schema = _loaded.exclude(path_regex=r".*/events$").exclude(path_regex=r"^/dicomweb/")
CHECKS = [not_a_server_error, response_schema_conformance, content_type_conformance]


@pytest.fixture(scope="module")
def admin_key(tmp_path_factory: pytest.TempPathFactory, checkpoint: Path) -> Iterator[str]:
    from fastapi.testclient import TestClient

    settings_ = make_settings(tmp_path_factory.mktemp("openapi") / "data", checkpoint)
    upgrade(settings_.database_url)
    with session_scope(settings_.database_url) as session:
        register_checkpoint(session, checkpoint)
    key = new_key(settings_, "admin", "fuzz")
    app.dependency_overrides[get_settings] = lambda: settings_
    try:
        with TestClient(app) as client:
            scored_series(client, settings_, auth(key), n=1)  # ids 1 exist: deeper paths
        yield key
    finally:
        app.dependency_overrides.clear()


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore::UserWarning")
@schema.parametrize()
@settings(
    max_examples=EXAMPLES,
    deadline=None,
    derandomize=not RANDOM,
    database=None,
    suppress_health_check=list(HealthCheck),
)
def test_no_operation_answers_a_5xx_or_off_its_schema(
    case: schemathesis.Case, admin_key: str
) -> None:
    case.call_and_validate(headers=auth(admin_key), checks=CHECKS)
