"""A killed worker or a restarted broker costs seconds, not ``AMAQC_STUCK_AFTER_SECONDS``.

Real Celery workers on PostgreSQL and a Redis of the test's own (started on a free port with
nothing persisted, so stopping it loses its messages as a restarted production Redis without
persistence does), and ``amaqc up`` in the embedded mode. Each slow test SIGKILLs the process
that holds a series mid-series (or stops and starts the Redis), then waits, within a deadline far
below the 300 s of the stuck rule, for the outcome: every series done, exactly one verdict per
instance. The recovery time is printed and recorded (``record_property``) as a benchmark
figure for docs/reliability.md, never asserted. The quick tests at the end check how the sweeper
tells that Redis came back.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from app.config import Settings, get_settings
from app.db.models import Instance, InstanceVerdict, Series, SeriesVerdict
from app.db.session import session_scope
from app.supervise import die_with_parent
from tests.app.conftest import auth, backend_settings, new_key
from tests.utils.images import phantom
from tests.utils.ports import free_port
from tests.utils.service import dicom_bytes, start_worker, stop_process, worker_log

#: the wait loops' deadline: generous for 2 busy CPU cores, far below the stuck rule's 300 s
DEADLINE = 150
SLICES = 8

Report = Callable[[str, float, Settings, list[int]], None]


class OwnRedis:
    """A redis-server of the test's own on a free port, stopped and started at will."""

    def __init__(self, log: Path) -> None:
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.log = log
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        import redis

        with self.log.open("ab") as log:
            self.proc = subprocess.Popen(
                [
                    *("redis-server", "--port", str(self.port), "--bind", "127.0.0.1"),
                    *("--save", "", "--appendonly", "no"),
                ],
                stdout=log,
                stderr=log,
                preexec_fn=die_with_parent,
            )
        _wait(lambda: _pings(redis.Redis(port=self.port)), "own redis-server did not start", 30)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(timeout=30)


def _pings(client: object) -> bool:
    try:
        return bool(client.ping())  # type: ignore[attr-defined]
    except Exception:
        return False


def _wait(condition: Callable[[], bool], what: str, seconds: float = DEADLINE) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, what
        time.sleep(0.05)


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[OwnRedis]:
    server = OwnRedis(tmp_path / "redis.log")
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def production(own_redis: OwnRedis, tmp_path: Path, checkpoint: Path) -> Iterator[Settings]:
    """PostgreSQL (a database of its own) + the test's Redis; the API's sweeper on (1 s); the
    heartbeat settings at their defaults, so the figures are the ones production gets."""
    with backend_settings(
        "postgresql", tmp_path / "data", checkpoint, redis_url=own_redis.url
    ) as s:
        yield s.model_copy(update={"sweep_interval_seconds": 1})


@pytest.fixture
def report(record_property: Callable[[str, object], None], capsys: pytest.CaptureFixture) -> Report:
    """``report(scenario, since, settings, ids)``: print and record the seconds from ``since``
    (``time.time()`` of the kill or of the broker's return) to the last verdict of ``ids``, to
    the start of the job that gave it, and how long that job ran."""

    def _report(scenario: str, since: float, settings: Settings, ids: list[int]) -> None:
        rows = [_series(settings, i) for i in ids]
        done = max(r.finished_at.timestamp() for r in rows if r.finished_at) - since
        started = max(r.started_at.timestamp() for r in rows if r.started_at) - since
        ran = max(
            (r.finished_at - r.started_at).total_seconds()
            for r in rows
            if r.finished_at and r.started_at
        )
        record_property(
            scenario,
            {
                "verdict_s": round(done, 1),
                "started_s": round(started, 1),
                "job_s": round(ran, 1),
            },
        )
        with capsys.disabled():
            print(
                f"\n[recovery] {scenario}: verdict after {done:.1f} s "
                f"(its job started again after {started:.1f} s and ran {ran:.1f} s)",
                flush=True,
            )

    return _report


def _api(settings: Settings) -> TestClient:
    """The API in-process with its lifespan (the sweeper thread runs while it is open)."""
    from app.api.main import app

    app.dependency_overrides[get_settings] = lambda: settings
    return TestClient(app)


def _files(uid: str, n: int = SLICES) -> list[tuple[str, tuple[str, bytes, str]]]:
    return [
        (
            "files",
            (f"{i}.dcm", dicom_bytes(phantom(256, seed=i), series_uid=uid, instance=i + 1), "x"),
        )
        for i in range(n)
    ]


def _series(settings: Settings, series_id: int) -> Series:
    with session_scope(settings.database_url) as session:
        series = session.get(Series, series_id)
        assert series is not None
        return series


def _all_done(settings: Settings, ids: list[int]) -> bool:
    statuses = {_series(settings, i).status for i in ids}
    assert "failed" not in statuses, [_series(settings, i).error for i in ids]
    return statuses == {"done"}


def _wait_processing(settings: Settings, series_id: int) -> None:
    _wait(
        lambda: _series(settings, series_id).status == "processing",
        f"series {series_id} never became processing",
    )


def _children(pid: int) -> list[int]:
    """Live child processes of ``pid`` (Linux /proc)."""
    found = []
    for entry in os.listdir("/proc"):
        try:
            with open(f"/proc/{entry}/stat") as stat:
                fields = stat.read().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue  # not a process, or gone
        if fields[0] != "Z" and int(fields[1]) == pid:
            found.append(int(entry))
    return found


def _cmdline(pid: int) -> list[str]:
    with open(f"/proc/{pid}/cmdline", "rb") as cmdline:
        return cmdline.read().decode().split("\0")


def _one_verdict_per_instance(settings: Settings, ids: list[int]) -> None:
    with session_scope(settings.database_url) as session:
        for series_id in ids:
            instances = session.scalars(
                select(Instance.id).where(Instance.series_id == series_id)
            ).all()
            counts = session.execute(
                select(InstanceVerdict.instance_id, func.count())
                .where(InstanceVerdict.instance_id.in_(instances))
                .group_by(InstanceVerdict.instance_id)
            ).all()
            assert sorted(i for i, _ in counts) == sorted(instances)
            assert {n for _, n in counts} == {1}
            verdicts = session.scalar(
                select(func.count()).where(SeriesVerdict.series_id == series_id)
            )
            assert verdicts == 1


def _upload(client: TestClient, headers: dict[str, str], uid: str) -> int:
    r = client.post("/api/v1/series", files=_files(uid), headers=headers)
    assert r.status_code == 202, r.text
    return int(r.json()["series_id"])


@pytest.mark.slow
@pytest.mark.parametrize("pool", ["solo", "prefork"])
def test_a_sigkilled_worker_s_series_gets_one_verdict_within_seconds(
    pool: str, production: Settings, report: Report
) -> None:
    """``solo`` (``amaqc worker``'s default): the OOM killer's SIGKILL ends the whole worker and
    a new one starts (as a service manager does); its heartbeat tells the sweeper. ``prefork``:
    the pool child dies under a living worker, which gives the job back."""
    args = ("--pool", "prefork", "--concurrency", "1") if pool == "prefork" else ()
    headers = auth(new_key(production, "scanner"))
    workers = [start_worker(production, args=args)]
    try:
        with _api(production) as client:
            series_id = _upload(
                client, headers, f"1.2.826.0.1.3680043.8.498.2311.{1 + (pool == 'prefork')}"
            )
            _wait_processing(production, series_id)
            # solo: the worker itself runs the job; prefork (concurrency 1): its one child
            [pid] = _children(workers[0].pid) if pool == "prefork" else [workers[0].pid]
            os.kill(pid, signal.SIGKILL)
            killed = time.time()
            if pool == "solo":
                workers.append(start_worker(production))
            _wait(lambda: _all_done(production, [series_id]), "no verdict after the kill")
            report(f"worker SIGKILL ({pool})", killed, production, [series_id])
    except AssertionError:
        print(worker_log(production).read_text()[-4000:])
        raise
    finally:
        for worker in workers:
            stop_process(worker)
    _one_verdict_per_instance(production, [series_id])


@pytest.mark.slow
def test_a_restarted_redis_loses_no_series_and_uploads_go_on_while_it_is_down(
    production: Settings, own_redis: OwnRedis, report: Report
) -> None:
    """A is processing, B waits in Redis, then Redis stops (B's message is lost with it), C is
    uploaded while it is down (stored: 202) and Redis starts again, empty."""
    headers = auth(new_key(production, "scanner"))
    worker = start_worker(production)
    try:
        with _api(production) as client:
            a = _upload(client, headers, "1.2.826.0.1.3680043.8.498.2312.1")
            _wait_processing(production, a)
            b = _upload(client, headers, "1.2.826.0.1.3680043.8.498.2312.2")
            own_redis.stop()
            c = _upload(client, headers, "1.2.826.0.1.3680043.8.498.2312.3")
            own_redis.start()
            back = time.time()
            _wait(lambda: _all_done(production, [a, b, c]), "series lost with the broker")
            report("Redis stopped and started", back, production, [a, b, c])
    except AssertionError:
        print(worker_log(production).read_text()[-4000:])
        raise
    finally:
        stop_process(worker)
    _one_verdict_per_instance(production, [a, b, c])


@pytest.mark.slow
def test_amaqc_up_re_enqueues_at_once_the_series_its_killed_worker_held(
    tmp_path: Path, checkpoint: Path, report: Report
) -> None:
    """The embedded mode (SQLite, the local broker): the supervisor sees its inference child
    die and enqueues its series again at once. The heartbeat is made slow here
    (600 s of silence), so only the supervisor can finish the series within the deadline."""
    data = tmp_path / "data"
    with backend_settings("sqlite", data, checkpoint) as settings:
        headers = auth(new_key(settings, "scanner"))
    port = free_port()
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("AMAQC_")},
        "AMAQC_CHECKPOINT": str(checkpoint),
        "AMAQC_WORKER_SILENT_SECONDS": "600",
    }
    with (tmp_path / "up.log").open("wb") as log:
        up = subprocess.Popen(
            [sys.executable, "-m", "app", "up", "--data-dir", str(data), "--port", str(port)],
            env=env,
            stdout=log,
            stderr=log,
            preexec_fn=die_with_parent,
        )
    base = f"http://127.0.0.1:{port}"
    try:
        _wait(lambda: _ready(base), "amaqc up did not become ready", 240)
        r = httpx.post(
            f"{base}/api/v1/series",
            files=_files("1.2.826.0.1.3680043.8.498.2313"),
            headers=headers,
            timeout=60,
        )
        assert r.status_code == 202, r.text
        series_id = int(r.json()["series_id"])
        _wait_processing(settings, series_id)
        [pid] = [p for p in _children(up.pid) if "inference" in _cmdline(p)]
        os.kill(pid, signal.SIGKILL)
        killed = time.time()
        _wait(lambda: _all_done(settings, [series_id]), "no verdict after the kill")
        report("amaqc up child SIGKILL", killed, settings, [series_id])
    except AssertionError:
        print((tmp_path / "up.log").read_text()[-4000:])
        raise
    finally:
        stop_process(up, timeout=30)
    _one_verdict_per_instance(settings, [series_id])


def _ready(base: str) -> bool:
    try:
        return bool(httpx.get(f"{base}/readyz", timeout=5).json()["ready"])
    except (httpx.HTTPError, ValueError):
        return False


def test_a_broker_watch_sees_redis_come_back_and_every_queued_series_is_sent_again(
    own_redis: OwnRedis, settings: Settings, scanner: dict[str, str]
) -> None:
    """No worker: the messages stay in Redis, so its queue shows what was sent."""
    from app.queue import queue_depth
    from app.sweeper import BrokerWatch, resend_queued

    on_redis = settings.model_copy(update={"broker_url": own_redis.url})
    with _api(on_redis) as client:
        ids = [_upload(client, scanner, f"1.2.826.0.1.3680043.8.498.2314.{n}") for n in (1, 2)]
    watch = BrokerWatch(own_redis.url)
    assert watch.came_back() is False  # the first look
    assert queue_depth(own_redis.url) == 2
    own_redis.stop()
    assert watch.came_back() is False  # down: nothing to send to
    own_redis.start()  # empty: both messages are gone
    assert queue_depth(own_redis.url) in (0, None)
    assert watch.came_back() is True
    assert watch.came_back() is False  # once
    assert resend_queued(on_redis) is True
    assert queue_depth(own_redis.url) == len(ids)


def test_a_restart_between_two_looks_is_seen_too(own_redis: OwnRedis) -> None:
    from app.sweeper import BrokerWatch

    watch = BrokerWatch(own_redis.url)
    assert watch.came_back() is False
    own_redis.stop()
    own_redis.start()
    assert watch.came_back() is True  # another run_id
