"""PostgreSQL stopped mid-series and started again, in production mode (issue 20).

A PostgreSQL cluster of the test's own (``initdb`` as user postgres, a free port, nothing shared:
the shared server on 5432 is never restarted) and a redis-server of its own; a real Celery
worker; the API in-process with its sweeper. Three series are uploaded; while the worker is in
the middle of one, PostgreSQL is stopped (``pg_ctl stop -m fast``: every connection is cut,
the worker's and the API's pooled ones too). An upload while it is down must be a 503 with
Retry-After, never a 500; after ``pg_ctl start``, the same upload is accepted, and every series
gets its verdict, exactly one per slice. Prints ``[db-restart] ...``; asserts no time.
Needs root (to run PostgreSQL as user postgres) and PostgreSQL's binaries; skipped otherwise.
"""

from __future__ import annotations

import glob
import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from sqlalchemy import create_engine, func, select, text

from app.config import Settings
from app.db.models import Instance, InstanceVerdict, Series, SeriesVerdict
from app.db.session import session_scope
from app.migrate import upgrade
from app.model_versions import register_checkpoint
from app.supervise import die_with_parent
from tests.app.conftest import app_client, auth, make_settings, new_key
from tests.utils.images import phantom
from tests.utils.ports import free_port
from tests.utils.service import dicom_bytes, start_worker, stop_process

BIN = sorted(glob.glob("/usr/lib/postgresql/*/bin"))
DEADLINE = 240  # far below the sweeper's 300 s stuck rule


class OwnPostgres:
    """A throwaway cluster in ``root``, run as user postgres on a free loopback port."""

    def __init__(self, root: Path) -> None:
        self.root, self.port, self.bin = root, free_port(), Path(BIN[-1])
        self.data = root / "pgdata"

    def _as_postgres(self, *args: str) -> None:
        subprocess.run(
            ["runuser", "-u", "postgres", "--", *args],
            check=True,
            capture_output=True,
            timeout=120,
        )

    def init(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        shutil.chown(self.root, "postgres")
        self._as_postgres(
            str(self.bin / "initdb"), "-D", str(self.data), "-A", "trust", "-U", "postgres"
        )

    def start(self) -> None:
        options = f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1 -c fsync=off"
        self._as_postgres(
            str(self.bin / "pg_ctl"), "-D", str(self.data), "-l", str(self.root / "log"),
            "-o", options, "-w", "start",
        )  # fmt: skip

    def stop(self) -> None:
        self._as_postgres(
            str(self.bin / "pg_ctl"), "-D", str(self.data), "-m", "fast", "-w", "stop"
        )

    def url(self, database: str = "postgres") -> str:
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/{database}"


@pytest.fixture
def own_postgres() -> Iterator[OwnPostgres]:
    if os.geteuid() != 0 or not BIN or shutil.which("runuser") is None:
        pytest.skip("needs root, runuser and PostgreSQL's binaries")
    # not under tmp_path: pytest's folders are root's alone, and postgres must enter this one
    server = OwnPostgres(Path(tempfile.mkdtemp(prefix="amaqc-pg-")))
    server.init()
    server.start()
    try:
        admin = create_engine(server.url(), isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:
            conn.execute(text("CREATE DATABASE amaqc"))
        admin.dispose()
        yield server
    finally:
        from app.db.session import get_engine

        get_engine.cache_clear()
        subprocess.run(
            ["runuser", "-u", "postgres", "--", str(server.bin / "pg_ctl"), "-D",
             str(server.data), "-m", "immediate", "stop"],
            capture_output=True, check=False,
        )  # fmt: skip
        shutil.rmtree(server.root, ignore_errors=True)


@pytest.fixture
def own_redis_url(tmp_path: Path) -> Iterator[str]:
    port = free_port()
    with (tmp_path / "redis.log").open("ab") as log:
        proc = subprocess.Popen(
            ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no"],
            stdout=log, stderr=log, preexec_fn=die_with_parent,
        )  # fmt: skip
    try:
        _wait(lambda: _pings(port), "own redis-server did not start", 30)
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def _pings(port: int) -> bool:
    import redis

    try:
        return bool(redis.Redis(port=port).ping())
    except Exception:
        return False


def _wait(condition: Callable[[], bool], what: str, seconds: float = DEADLINE) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, what
        time.sleep(0.1)


def _files(uid: str, n: int = 8) -> list[tuple[str, tuple[str, bytes, str]]]:
    def one(i: int) -> bytes:
        return dicom_bytes(phantom(256, seed=i), series_uid=uid, instance=i + 1)

    return [("files", (f"{i}.dcm", one(i), "application/dicom")) for i in range(n)]


def _statuses(settings: Settings) -> dict[int, str]:
    with session_scope(settings.database_url) as session:
        return dict(session.execute(select(Series.id, Series.status)).all())


def _counts(settings: Settings) -> tuple[int, int, int, int]:
    """(instances, instances with exactly one verdict, extra verdicts, series verdicts)."""
    with session_scope(settings.database_url) as session:
        instances = session.scalar(select(func.count()).select_from(Instance)) or 0
        per = session.execute(
            select(InstanceVerdict.instance_id, func.count()).group_by(InstanceVerdict.instance_id)
        ).all()
        series_verdicts = session.scalar(select(func.count()).select_from(SeriesVerdict)) or 0
    return instances, sum(1 for _, n in per if n == 1), sum(n - 1 for _, n in per), series_verdicts


@pytest.mark.slow
def test_postgresql_stopped_mid_series_and_started_again_loses_nothing(
    own_postgres: OwnPostgres,
    own_redis_url: str,
    tmp_path: Path,
    checkpoint: Path,
    record_property: Callable[[str, object], None],
) -> None:
    settings = make_settings(
        tmp_path / "data",
        checkpoint,
        database_url=own_postgres.url("amaqc"),
        broker_url=own_redis_url,
    ).model_copy(update={"sweep_interval_seconds": 1})
    settings.data_dir.mkdir(parents=True)
    upgrade(settings.database_url)
    with session_scope(settings.database_url) as session:
        register_checkpoint(session, checkpoint)
    scanner = auth(new_key(settings, "scanner", "mr1"))
    worker = start_worker(settings)
    try:
        with app_client(settings) as client:
            ids = []
            for n in range(3):
                r = client.post("/api/v1/series", files=_files(f"2.25.5030{n}"), headers=scanner)
                assert r.status_code == 202, r.text
                ids.append(r.json()["series_id"])
            _wait(lambda: "processing" in _statuses(settings).values(), "none processing")
            at_stop = _statuses(settings)
            own_postgres.stop()
            down = client.post("/api/v1/series", files=_files("2.25.50309"), headers=scanner)
            time.sleep(8)  # the worker meets the outage mid-series
            own_postgres.start()
            back = time.monotonic()
            again = client.post("/api/v1/series", files=_files("2.25.50309"), headers=scanner)
            assert again.status_code == 202, again.text
            ids.append(again.json()["series_id"])
            _wait(
                lambda: all(_statuses(settings).get(i) in ("done", "failed") for i in ids),
                f"not every series finished: {_statuses(settings)}",
            )
            drained = time.monotonic() - back
    finally:
        stop_process(worker)
    statuses = _statuses(settings)
    instances, one_verdict, extra, series_verdicts = _counts(settings)
    figures = (
        f"at the stop {at_stop}; an upload while down: {down.status_code} "
        f"(Retry-After {down.headers.get('retry-after')}); after the start all {len(ids)} series "
        f"{set(statuses.values())} in {drained:.1f} s; {instances} slices, {one_verdict} with one "
        f"verdict, {extra} extra verdicts, {series_verdicts} series verdicts"
    )
    print(f"\n[db-restart] {figures}")
    record_property("db_restart", figures)
    assert down.status_code == 503 and down.headers.get("retry-after"), (down, down.text)
    assert set(statuses.values()) == {"done"}, figures
    assert (instances, one_verdict, extra, series_verdicts) == (32, 32, 0, 4), figures
