"""Retraining end to end, no mocks: the API (served by uvicorn on loopback) queues tiny jobs,
a real training worker (``--queues training``) runs them while a real inference worker
(``--queues inference``) scores series; SQLite + the local broker, and PostgreSQL + Redis.
One stack per backend serves every test here (starting two workers costs more than a job)."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import httpx
import pytest

from app.config import Settings, get_settings
from app.db.session import session_scope
from app.model_versions import register_checkpoint
from tests.app.conftest import auth, backend_settings, new_key
from tests.utils.datasets import tiny_dataset
from tests.utils.server import serve
from tests.utils.service import (
    series_files,
    start_worker,
    stop_process,
    tiny_checkpoint,
    worker_log,
)

TINY_JOB = {"epochs": 2, "samples_per_epoch": 20, "batch_size": 10, "patch": 64, "size": 64}
WAIT_S = 240
#: a Redis database of its own: a worker of another test session on conftest's database 13
#: (e.g. on a shared machine) would otherwise take these jobs
REDIS_URL = "redis://127.0.0.1:6379/11"


class Stack:
    def __init__(self, settings: Settings, url: str, admin: dict[str, str]) -> None:
        self.settings, self.url, self.admin = settings, url, admin
        self.http = httpx.Client(base_url=url, headers=admin, timeout=60)

    def logs(self) -> str:
        return "\n".join(
            f"--- {q} worker:\n" + worker_log(self.settings, q).read_text()[-3000:]
            for q in ("inference", "training")
        )

    def wait_job(self, job_id: int, until: tuple[str, ...]) -> dict[str, Any]:
        deadline = time.monotonic() + WAIT_S
        while time.monotonic() < deadline:
            job = self.http.get(f"/api/v1/training-jobs/{job_id}").json()
            if job["status"] in until:
                return job
            time.sleep(0.3)
        raise AssertionError(f"job {job_id} not {until} in {WAIT_S} s: {job}\n{self.logs()}")

    def start(self, path: str = "datasets/tiny", **params: object) -> int:
        body = {"source": {"kind": "dataset", "path": path}, **TINY_JOB, **params}
        r = self.http.post("/api/v1/training-jobs", json=body)
        assert r.status_code == 202, r.text
        return int(r.json()["job_id"])

    def active_id(self) -> int:
        return int(self.http.get("/api/v1/models").json()["active_id"])

    def score_series(self, uid: str, scanner: dict[str, str]) -> dict[str, Any]:
        sid = self.http.post("/api/v1/series", files=series_files(2, uid), headers=scanner).json()[
            "series_id"
        ]
        deadline = time.monotonic() + WAIT_S
        while time.monotonic() < deadline:
            body = self.http.get(f"/api/v1/series/{sid}").json()
            if body["status"] in ("done", "failed"):
                assert body["status"] == "done", body
                return body
            time.sleep(0.3)
        raise AssertionError(f"series {sid} got no verdict: {body}\n{self.logs()}")


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def stack(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, checkpoint: Path
) -> Iterator[Stack]:
    from app.api.main import app

    data = tmp_path_factory.mktemp(request.param) / "data"
    with ExitStack() as cleanup:
        settings = cleanup.enter_context(
            backend_settings(request.param, data, checkpoint, redis_url=REDIS_URL)
        )
        tiny_dataset(data / "datasets" / "tiny", {"train": 4, "val": 2}, size=64)
        (data / "datasets" / "empty").mkdir()
        env = {"AMAQC_TRAINING_LOADER_WORKERS": "0"}
        workers = [start_worker(settings, q, env) for q in ("inference", "training")]
        cleanup.callback(lambda: [stop_process(w) for w in workers])
        app.dependency_overrides[get_settings] = lambda: settings
        cleanup.callback(app.dependency_overrides.clear)
        base = cleanup.enter_context(serve(app))
        yield Stack(settings, base, auth(new_key(settings, "admin")))


def _events(stack: Stack, url: str) -> list[tuple[str, dict[str, Any]]]:
    """Every server-sent event of ``url`` until the stream ends."""
    out, event = [], ""
    deadline = time.monotonic() + WAIT_S
    with stack.http.stream("GET", url, timeout=WAIT_S) as response:
        assert response.headers["content-type"].startswith("text/event-stream")
        for line in response.iter_lines():  # (a keep-alive comes at least every 15 s)
            assert time.monotonic() < deadline, f"stream still open after {WAIT_S} s: {out}"
            if line.startswith("event: "):
                event = line.removeprefix("event: ")
            elif line.startswith("data: "):
                out.append((event, json.loads(line.removeprefix("data: "))))
    return out


@pytest.mark.slow
def test_train_watch_activate_score_and_roll_back(stack: Stack) -> None:
    scanner = auth(new_key(stack.settings, "scanner"))
    first = stack.active_id()
    accepted = stack.http.post(
        "/api/v1/training-jobs",
        json={"source": {"kind": "dataset", "path": "datasets/tiny"}, **TINY_JOB},
    ).json()
    events = _events(stack, accepted["events_url"])
    progress = [data for name, data in events if name == "progress"]
    assert events[-1] == ("end", {"id": accepted["job_id"], "status": "succeeded"}), stack.logs()
    assert progress[0]["status"] in ("queued", "running")
    assert [p["progress"].get("epoch", 0) for p in progress] == sorted(
        p["progress"].get("epoch", 0) for p in progress
    )
    done = progress[-1]
    assert done["status"] == "succeeded" and done["progress"]["epoch"] == 2
    assert "f1" in done["progress"]["val"] and done["log"]
    version_id = done["result_version_id"]
    assert stack.active_id() == first  # registered, not activated

    r = stack.http.post(f"/api/v1/models/{version_id}/activate")
    assert r.status_code == 200, r.text
    # the running inference worker picks the new version for the next series, no restart
    scored = stack.score_series("1.2.826.0.1.3680043.8.498.901", scanner)
    assert scored["model_version"]["id"] == version_id

    assert stack.http.post("/api/v1/models/rollback").json()["version_id"] == first
    scored = stack.score_series("1.2.826.0.1.3680043.8.498.902", scanner)
    assert scored["model_version"]["id"] == first


@pytest.mark.slow
def test_a_running_job_is_cancelled_and_the_active_model_stays(stack: Stack) -> None:
    before = stack.active_id()
    job_id = stack.start(epochs=500)
    deadline = time.monotonic() + WAIT_S
    while not stack.http.get(f"/api/v1/training-jobs/{job_id}").json()["progress"].get("step"):
        assert time.monotonic() < deadline, stack.logs()
        time.sleep(0.3)
    r = stack.http.delete(f"/api/v1/training-jobs/{job_id}")
    assert r.status_code == 202 and r.json()["cancel_requested"] is True
    job = stack.wait_job(job_id, ("succeeded", "failed", "cancelled"))
    assert job["status"] == "cancelled" and "cancelled while running" in job["error"]
    assert job["result_version_id"] is None and stack.active_id() == before


def test_a_crashing_job_fails_with_its_reason_and_the_active_model_stays(stack: Stack) -> None:
    before = stack.active_id()
    job_id = stack.start(path="datasets/empty", auto_activate=True)
    job = stack.wait_job(job_id, ("succeeded", "failed", "cancelled"))
    assert job["status"] == "failed", job
    assert "no clean/ + artifact/ folders" in job["error"] and "unchanged" in job["error"]
    assert job["result_version_id"] is None and stack.active_id() == before


def test_a_shadow_version_scores_new_series_beside_the_active_one(stack: Stack) -> None:
    scanner = auth(new_key(stack.settings, "scanner"))
    path = tiny_checkpoint(stack.settings.data_dir / "models" / "shadow-candidate.safetensors")
    with session_scope(stack.settings.database_url) as session:
        candidate = register_checkpoint(session, path, activate=False).id
    active = stack.active_id()
    assert stack.http.post(f"/api/v1/models/{candidate}/shadow").status_code == 200
    try:
        scored = stack.score_series("1.2.826.0.1.3680043.8.498.950", scanner)
        assert scored["model_version"]["id"] == active  # users see the active version's
        url = f"/api/v1/models/{candidate}/shadow-report"
        deadline = time.monotonic() + WAIT_S
        # the shadow verdict is written after the verdict; the report's numbers and its list
        # are two queries, so a report taken as it lands may count a series it does not list
        while not (report := stack.http.get(url).json())["items"]:
            assert time.monotonic() < deadline, f"no shadow verdict: {report}\n{stack.logs()}"
            time.sleep(0.3)
        (pair,) = report["items"]
        assert report["series"] == 1
        assert pair["series_id"] == scored["id"] and pair["active_version_id"] == active
        assert pair["active_probability"] == scored["verdict"]["probability"]
        assert stack.http.get(f"/api/v1/series/{scored['id']}").json() == scored
    finally:
        assert stack.http.delete(f"/api/v1/models/{candidate}/shadow").status_code == 200
