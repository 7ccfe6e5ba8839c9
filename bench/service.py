"""End-to-end service throughput and latency against the raw model compute (issue 4).

One run, one table. The raw ``Predictor`` rate is measured in this process on the same 24-slice
series (256x256, uint16 DICOM, decoded as the worker decodes them) with the same checkpoint,
while no service runs: before the first backend and after each one (the machine drifts; the
median of all rounds is used). For each backend the service is started the way users start it,
``amaqc up`` (migrations, the API, one Celery worker process):

- embedded: SQLite + the local SQLAlchemy broker under a temporary data dir;
- production backends, when PostgreSQL and Redis answer on 127.0.0.1: a throwaway database and
  an empty Redis database number, both removed afterwards.

Load phase: ``--clients`` threads post ``--series`` series with httpx (``POST /api/v1/series``,
or STOW-RS with ``--via stow``); end-to-end slices/s = slices / (first upload start -> last
verdict committed, the worker's ``finished_at``). Idle phase: ``--idle`` series one at a time on
an empty queue; latency = end of the upload -> verdict committed. Targets (issue 18): e2e /
Predictor slices/s >= 0.9; idle p95 <= compute time of 24 slices + 0.5 s. Both times come from
the worker's ``finished_at``, so the bench looks at the database only every ``POLL_S`` (its
looks would take CPU from the worker it measures, not make the numbers more exact).

Checkpoint: ``model/weights/amaqc-default.safetensors`` when it exists, else an untrained
AMAResNet-18 of the served architecture (same compute). Loopback only, every loop bounded; the
service processes and temporary folders are removed at the end, also on Ctrl-C.

    .venv/bin/python bench/service.py [--series 12] [--clients 4] [--idle 8] [--via series|stow]
"""

from __future__ import annotations

import argparse
import os
import re
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack, contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # tests.utils: the phantom and DICOM factories the tests use

from tests.utils.dicomweb import stow_body, stow_headers  # noqa: E402
from tests.utils.images import phantom  # noqa: E402
from tests.utils.service import dicom_bytes  # noqa: E402

SLICES, SIZE = 24, 256
SERVED = ROOT / "model" / "weights" / "amaqc-default.safetensors"
PG_ADMIN = "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
VERDICT_TIMEOUT_S = 300.0
POLL_S = 0.25  # between two looks for verdicts (the times measured are the worker's own)
RATIO_TARGET, LATENCY_MARGIN_S = 0.9, 0.5  # issue 18


@dataclass(frozen=True)
class Backend:
    name: str
    data_dir: Path
    env: dict[str, str]  # AMAQC_* settings for `amaqc up`
    database_url: str  # read by the bench for verdict times


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


# --- data and model --------------------------------------------------------------------


def series_images() -> list[np.ndarray]:
    return [phantom(SIZE, seed=i) for i in range(SLICES)]


def series_files(images: list[np.ndarray]) -> list[bytes]:
    """One series as DICOM files: a new Series and new SOP Instance UIDs every call."""
    series_uid = f"2.25.{uuid.uuid4().int}"
    return [dicom_bytes(im, series_uid=series_uid, instance=i + 1) for i, im in enumerate(images)]


def checkpoint(workdir: Path, given: Path | None) -> Path:
    if given is not None:
        return given
    if SERVED.is_file():
        return SERVED
    import model

    path = workdir / "amaresnet18-untrained.safetensors"
    return model.save_checkpoint(
        path, model.build_model("amaresnet18"), model.CheckpointMeta(arch="amaresnet18")
    )


class RawCompute:
    """``Predictor.predict`` on one series (decoded as the worker decodes it), in this process.

    Timed in rounds before the first backend and after each one, so that the machine's drift
    during the run weighs on both sides of the ratio alike.
    """

    def __init__(self, ckpt: Path, images: list[np.ndarray]) -> None:
        from model import Predictor
        from training.data.readers import read_slices

        with tempfile.TemporaryDirectory() as tmp:
            self.pixels = []
            for i, data in enumerate(series_files(images)):
                path = Path(tmp) / f"{i}.dcm"
                path.write_bytes(data)
                self.pixels.append(read_slices(path)[0].pixels)
        # what the worker runs with its default settings (AMAQC_INFERENCE_PRECISION=auto: the
        # int8 export where one is accepted for this checkpoint), so the ratio compares like
        # with like
        self.predictor = Predictor(ckpt, precision="auto")
        print(f"Predictor: {self.predictor.backend} ({self.predictor.precision})")
        self.predictor.predict(self.pixels)  # warm-up
        self.seconds: list[float] = []

    def measure(self, rounds: int) -> None:
        for _ in range(rounds):
            start = time.perf_counter()
            self.predictor.predict(self.pixels)
            self.seconds.append(time.perf_counter() - start)


# --- backends and the service ----------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def embedded(data_dir: Path) -> Backend:
    url = f"sqlite:///{data_dir.resolve() / 'amaqc.db'}"
    return Backend("SQLite + local broker", data_dir, {}, url)


def _redis(number: int) -> Any:
    import redis

    return redis.Redis(host="127.0.0.1", port=6379, db=number, socket_timeout=3)


@contextmanager
def production(data_dir: Path) -> Iterator[Backend | None]:
    """A throwaway PostgreSQL database and an empty Redis database; None when unreachable."""
    from sqlalchemy import create_engine, text

    admin = create_engine(
        PG_ADMIN, isolation_level="AUTOCOMMIT", connect_args={"connect_timeout": 3}
    )
    name = f"amaqc_bench_{uuid.uuid4().hex[:10]}"
    try:
        number = next(n for n in (14, 15, 12, 11) if _redis(n).dbsize() == 0)
        with admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
    except Exception as exc:  # no server, or no empty Redis database
        log(f"PostgreSQL + Redis on 127.0.0.1 not usable ({type(exc).__name__}): skipped")
        admin.dispose()
        yield None
        return
    url = f"postgresql+psycopg://postgres@127.0.0.1:5432/{name}"
    broker = f"redis://127.0.0.1:6379/{number}"
    try:
        env = {"AMAQC_DATABASE_URL": url, "AMAQC_BROKER_URL": broker}
        yield Backend("PostgreSQL + Redis", data_dir, env, url)
    finally:
        _redis(number).flushdb()
        from app.db.session import get_engine

        get_engine.cache_clear()
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@dataclass(frozen=True)
class Service:
    url: str
    key: str
    database_url: str


@contextmanager
def running(backend: Backend, ckpt: Path) -> Iterator[Service]:
    """``amaqc up`` on a free loopback port until the block ends (then SIGINT, then kill)."""
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("AMAQC_")}
    env.update(backend.env, AMAQC_CHECKPOINT=str(ckpt))
    data_dir = backend.data_dir
    out = data_dir.parent / f"{data_dir.name}.log"
    cmd = [sys.executable, "-m", "app", "up", "--host", "127.0.0.1", "--port", str(port)]
    with out.open("wb") as log_file:
        proc = subprocess.Popen(
            [*cmd, "--data-dir", str(data_dir)],
            env=env,
            stdout=log_file,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group: up + its worker
        )
    try:
        url = f"http://127.0.0.1:{port}"
        key = _wait_ready(proc, url, out)
        yield Service(url, key, backend.database_url)
    finally:
        _stop(proc)


def _wait_ready(proc: subprocess.Popen[bytes], url: str, out: Path) -> str:
    deadline = time.monotonic() + 180
    key = None
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(
                f"amaqc up exited with {proc.returncode}:\n{out.read_text()[-2000:]}"
            )
        found = re.search(r"^(amaqc_\S+)$", out.read_text(errors="replace"), re.MULTILINE)
        key = key or (found.group(1) if found else None)
        try:
            if key and httpx.get(f"{url}/readyz", timeout=5).status_code == 200:
                return key
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    raise RuntimeError(f"amaqc up not ready within 180 s:\n{out.read_text()[-2000:]}")


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGINT)  # uvicorn stops, then `up` stops its worker
        try:
            proc.wait(timeout=40)
            return
        except subprocess.TimeoutExpired:
            pass
    with suppress(ProcessLookupError):  # what is left of the process group we started
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()


# --- the client side -------------------------------------------------------------------


def post_series(client: httpx.Client, service: Service, files: list[bytes], via: str) -> int:
    """Upload one series; returns its id."""
    auth = {"Authorization": f"Bearer {service.key}"}
    if via == "stow":
        r = client.post(
            f"{service.url}/dicomweb/studies", content=stow_body(files), headers=stow_headers(auth)
        )
        r.raise_for_status()
        status_url = r.json()["00081199"]["Value"][0]["00091001"]["Value"][0]
        return int(status_url.rsplit("/", 1)[1])
    parts = [("files", (f"{i}.dcm", data, "application/dicom")) for i, data in enumerate(files)]
    r = client.post(f"{service.url}/api/v1/series", files=parts, headers=auth)
    r.raise_for_status()
    return int(r.json()["series_id"])


def verdict_times(database_url: str, ids: list[int]) -> dict[int, float]:
    """Epoch seconds at which each series' verdict was committed (polls the database every
    ``POLL_S``)."""
    from sqlalchemy import select

    from app.db.models import Series
    from app.db.session import session_scope

    deadline = time.monotonic() + VERDICT_TIMEOUT_S
    while time.monotonic() < deadline:
        with session_scope(database_url) as session:
            rows = session.execute(
                select(Series.id, Series.status, Series.finished_at).where(Series.id.in_(ids))
            ).all()
        failed = [i for i, status, _ in rows if status == "failed"]
        if failed:
            raise RuntimeError(f"series {failed} failed in the worker")
        done = {i: f.timestamp() for i, status, f in rows if status == "done" and f is not None}
        if len(done) == len(ids):
            return done
        time.sleep(POLL_S)
    raise RuntimeError(f"no verdict for some of {len(ids)} series within {VERDICT_TIMEOUT_S} s")


def load_phase(
    service: Service, images: list[np.ndarray], n_series: int, clients: int, via: str
) -> float:
    """End-to-end slices/s: first upload start -> last verdict in the database."""
    payloads = [series_files(images) for _ in range(n_series)]
    with httpx.Client(timeout=120) as client, ThreadPoolExecutor(clients) as pool:
        start = time.time()
        ids = list(pool.map(lambda files: post_series(client, service, files, via), payloads))
    last = max(verdict_times(service.database_url, ids).values())
    return n_series * SLICES / (last - start)


def idle_phase(service: Service, images: list[np.ndarray], n: int, via: str) -> list[float]:
    """Seconds from the end of each upload to its verdict, one series at a time."""
    latencies = []
    with httpx.Client(timeout=120) as client:
        for _ in range(n):
            files = series_files(images)
            series_id = post_series(client, service, files, via)
            uploaded = time.time()
            latencies.append(verdict_times(service.database_url, [series_id])[series_id] - uploaded)
            time.sleep(0.3)
    return latencies


def percentile(values: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(values), q))


# --- main ------------------------------------------------------------------------------


def run_backend(
    backend: Backend, ckpt: Path, images: list[np.ndarray], args: argparse.Namespace
) -> tuple[float, list[float]]:
    with running(backend, ckpt) as service:
        log(f"{backend.name}: up; warm-up series (the worker loads the model)")
        idle_phase(service, images, 1, args.via)
        log(f"{backend.name}: load, {args.series} series from {args.clients} clients")
        rate = load_phase(service, images, args.series, args.clients, args.via)
        log(f"{backend.name}: idle queue, {args.idle} series one at a time")
        latencies = idle_phase(service, images, args.idle, args.via)
    return rate, latencies


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--series", type=int, default=12, help="series in the load phase")
    parser.add_argument("--clients", type=int, default=4, help="concurrent uploading clients")
    parser.add_argument("--idle", type=int, default=8, help="series in the idle-queue phase")
    parser.add_argument(
        "--rounds",
        type=int,
        default=3,
        help="timed Predictor rounds, before and after each backend",
    )
    parser.add_argument("--via", choices=("series", "stow"), default="series")
    parser.add_argument("--checkpoint", type=Path, default=None)
    parser.add_argument("--embedded-only", action="store_true", help="skip PostgreSQL + Redis")
    args = parser.parse_args()
    for name in ("series", "clients", "idle", "rounds"):
        if getattr(args, name) < 1:
            parser.error(f"--{name} must be >= 1, got {getattr(args, name)}")

    import torch

    images = series_images()
    rows: list[tuple[str, float, list[float]]] = []
    with ExitStack() as cleanup:
        tmp = Path(cleanup.enter_context(tempfile.TemporaryDirectory(prefix="amaqc-bench-")))
        ckpt = checkpoint(tmp, args.checkpoint)
        log(f"Predictor on {SLICES} slices, {args.rounds} rounds ({ckpt.name})")
        raw = RawCompute(ckpt, images)
        raw.measure(args.rounds)
        backends: list[Callable[[], Backend | None]] = [lambda: embedded(tmp / "embedded")]
        if not args.embedded_only:
            backends.append(lambda: cleanup.enter_context(production(tmp / "production")))
        for make in backends:
            backend = make()
            if backend is not None:
                rows.append((backend.name, *run_backend(backend, ckpt, images, args)))
                log(f"Predictor again, {args.rounds} rounds")
                raw.measure(args.rounds)
    compute = statistics.median(raw.seconds)
    raw_rate = SLICES / compute
    print(
        f"device: cpu ({torch.get_num_threads()} threads), torch {torch.__version__}; "
        f"checkpoint {ckpt.name}; {SLICES} slices of {SIZE}x{SIZE} uint16 per series; "
        f"ingest via {'STOW-RS' if args.via == 'stow' else 'POST /api/v1/series'}; "
        f"load {args.series} series from {args.clients} clients; idle {args.idle} series\n"
        f"Predictor seconds per series: median {compute:.2f} of {len(raw.seconds)} rounds "
        f"(min {min(raw.seconds):.2f}, max {max(raw.seconds):.2f}), taken before and after "
        "each backend\n"
    )
    print(
        f"| backend | e2e slices/s | Predictor slices/s | ratio (>= {RATIO_TARGET}) "
        f"| idle p50 s | idle p95 s | p95 - compute s (<= {LATENCY_MARGIN_S}) |"
    )
    print("|---|---|---|---|---|---|---|")
    for name, rate, latencies in rows:
        p95 = percentile(latencies, 95)
        print(
            f"| {name} | {rate:.1f} | {raw_rate:.1f} | {rate / raw_rate:.2f} "
            f"| {percentile(latencies, 50):.2f} | {p95:.2f} | {p95 - compute:.2f} |"
        )
    ok = all(
        r / raw_rate >= RATIO_TARGET and percentile(lat, 95) - compute <= LATENCY_MARGIN_S
        for _, r, lat in rows
    )
    print(f"\n{len(rows)} backend(s); targets {'met' if ok else 'NOT met'}")


if __name__ == "__main__":
    main()
