"""The README's production sequence, run exactly as written, on the real PostgreSQL and Redis.

The commands come from the README's fenced block that runs ``amaqc migrate``: its ``export``
lines are replaced by this test's database and broker, each ``amaqc ...`` line runs as written
(``&``: in the background, until the test ends). It must end with a service that is ready and
returns a verdict with the served checkpoint, not the tests' tiny one.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from app.config import default_checkpoint
from app.supervise import die_with_parent
from tests.app.conftest import pg_database
from tests.utils.images import phantom
from tests.utils.ports import free_port
from tests.utils.service import dicom_bytes, stop_process

ROOT = Path(__file__).resolve().parents[2]
REDIS_URL = "redis://127.0.0.1:6379/10"
UID = "1.2.826.0.1.3680043.8.498.2301"


def readme_production_commands() -> list[str]:
    """The lines of the README's fenced bash block that contains ``amaqc migrate``."""
    blocks = re.findall(r"```bash\n(.*?)```", (ROOT / "README.md").read_text(), re.S)
    block = next(b for b in blocks if "amaqc migrate" in b)
    return [line.split("  #")[0].strip() for line in block.splitlines() if line.strip()]


def _amaqc(line: str) -> list[str]:
    words = shlex.split(line.removesuffix("&"))
    assert words[0] == "amaqc", f"README production line is not an amaqc command: {line!r}"
    return [sys.executable, "-m", "app", *words[1:]]


@pytest.fixture
def production_env(tmp_path: Path) -> Iterator[dict[str, str]]:
    import redis

    redis.Redis.from_url(REDIS_URL).flushdb()
    env = {k: v for k, v in os.environ.items() if not k.startswith("AMAQC_")}
    with pg_database() as url:
        yield {
            **env,
            "AMAQC_DATABASE_URL": url,
            "AMAQC_BROKER_URL": REDIS_URL,
            "AMAQC_DATA_DIR": str(tmp_path / "data"),
            "AMAQC_PORT": str(free_port()),
        }


def _run_readme(env: dict[str, str], logs: Path) -> tuple[list[subprocess.Popen[bytes]], str]:
    """Run the README's lines; returns the background processes and the last printed line of
    ``amaqc keys create`` (the key)."""
    background: list[subprocess.Popen[bytes]] = []
    key = ""
    for index, line in enumerate(readme_production_commands()):
        if line.startswith("export "):
            continue  # the database and broker are this test's
        if line.endswith("&"):
            log = (logs / f"{index}.log").open("wb")
            background.append(
                subprocess.Popen(
                    _amaqc(line), env=env, stdout=log, stderr=log, preexec_fn=die_with_parent
                )
            )
            continue
        done = subprocess.run(_amaqc(line), env=env, capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, f"{line}: {done.stdout}{done.stderr}"
        if line.startswith("amaqc keys create"):
            key = done.stdout.strip().splitlines()[-1]
    return background, key


def _wait_for(check: object, what: str, seconds: float = 240) -> None:
    deadline = time.monotonic() + seconds
    while True:
        try:
            if check():  # type: ignore[operator]
                return
        except httpx.HTTPError:
            pass
        assert time.monotonic() < deadline, what
        time.sleep(0.5)


def test_the_readme_production_sequence_serves_verdicts(
    production_env: dict[str, str], tmp_path: Path
) -> None:
    background, key = _run_readme(production_env, tmp_path)
    base = f"http://127.0.0.1:{production_env['AMAQC_PORT']}"
    headers = {"Authorization": f"Bearer {key}"}
    try:
        _wait_for(lambda: httpx.get(f"{base}/readyz").json()["ready"], "/readyz never became ready")
        files = [
            ("files", (f"s{i}.dcm", dicom_bytes(phantom(128, i), series_uid=UID, instance=i + 1)))
            for i in range(2)
        ]
        r = httpx.post(f"{base}/api/v1/series", files=files, headers=headers, timeout=60)
        assert r.status_code == 202, r.text
        status_url = base + r.json()["status_url"]
        _wait_for(
            lambda: httpx.get(status_url, headers=headers).json()["status"] == "done",
            "the series got no verdict",
        )
        body = httpx.get(status_url, headers=headers).json()
        assert body["verdict"]["label"] in ("artifact", "clean")
    finally:
        for proc in background:
            stop_process(proc)
    from app.db import repo
    from app.db.session import get_engine, session_scope

    with session_scope(production_env["AMAQC_DATABASE_URL"]) as session:
        active = repo.active_model_version(session)
        assert active is not None
        assert Path(active.checkpoint_path) == default_checkpoint().resolve()
    get_engine.cache_clear()


def test_migrate_activates_the_checkpoint_once(
    tmp_path: Path, checkpoint: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A second ``amaqc migrate`` keeps the active version (no second registration)."""
    from typer.testing import CliRunner

    from app.cli import app
    from app.config import get_settings
    from app.db import repo
    from app.db.models import ModelVersion
    from app.db.session import session_scope

    monkeypatch.setenv("AMAQC_DATA_DIR", str(tmp_path))  # (--data-dir sets it; restored)
    env = {"AMAQC_CHECKPOINT": str(checkpoint)}
    args = ["migrate", "--data-dir", str(tmp_path / "data")]
    first = CliRunner().invoke(app, args, env=env)
    second = CliRunner().invoke(app, args, env=env)
    get_settings.cache_clear()
    assert first.exit_code == 0 and second.exit_code == 0, first.output + second.output
    assert "registered and activated model version" in first.output
    url = f"sqlite:///{(tmp_path / 'data').resolve() / 'amaqc.db'}"
    with session_scope(url) as session:
        active = repo.active_model_version(session)
        assert active is not None and Path(active.checkpoint_path) == checkpoint.resolve()
        assert session.query(ModelVersion).count() == 1
