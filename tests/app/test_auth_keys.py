from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from fastapi.testclient import TestClient
from sqlalchemy import select

from app.config import Settings
from app.db.models import ApiKey
from app.db.session import session_scope
from app.security import hash_key
from tests.app.conftest import auth, new_key
from tests.utils.service import series_files


def test_keys_create_prints_the_key_alone_on_the_last_line_of_a_fresh_data_dir(
    tmp_path: Path,
) -> None:
    env = {**os.environ, "AMAQC_DATA_DIR": str(tmp_path / "fresh")}
    out = subprocess.run(
        [sys.executable, "-m", "app", "keys", "create", "--role", "scanner", "--name", "mr1"],
        env=env,
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    ).stdout
    key = out.strip().splitlines()[-1]
    assert key.startswith("amaqc_") and " " not in key
    settings = Settings(data_dir=tmp_path / "fresh")
    with session_scope(settings.database_url) as session:
        stored = session.scalars(select(ApiKey)).one()
    assert stored.key_hash == hash_key(key) and key not in stored.prefix + stored.name


def test_missing_key_is_401(client: TestClient) -> None:
    r = client.post("/api/v1/series", files=series_files(1))
    assert r.status_code == 401 and "missing API key" in r.json()["detail"]


def test_unknown_key_is_401(client: TestClient) -> None:
    r = client.post("/api/v1/series", files=series_files(1), headers=auth("amaqc_nope"))
    assert r.status_code == 401 and "unknown" in r.json()["detail"]


def test_radiographer_may_not_upload(client: TestClient, radiographer: dict[str, str]) -> None:
    r = client.post("/api/v1/series", files=series_files(1), headers=radiographer)
    assert r.status_code == 403 and "radiographer" in r.json()["detail"]


def test_scanner_cannot_read_another_scanners_series(
    client: TestClient, settings: Settings, scanner: dict[str, str]
) -> None:
    series_id = client.post("/api/v1/series", files=series_files(1), headers=scanner).json()[
        "series_id"
    ]
    other = auth(new_key(settings, "scanner", "scanner 2"))
    assert client.get(f"/api/v1/series/{series_id}", headers=other).status_code == 404
    assert client.get(f"/api/v1/series/{series_id}", headers=scanner).status_code == 200


def test_radiographer_reads_every_series(
    client: TestClient, scanner: dict[str, str], radiographer: dict[str, str]
) -> None:
    series_id = client.post("/api/v1/series", files=series_files(1), headers=scanner).json()[
        "series_id"
    ]
    assert client.get(f"/api/v1/series/{series_id}", headers=radiographer).status_code == 200
