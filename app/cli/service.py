"""``amaqc`` subcommands of the QC service: migrate, register, api, worker, dicom-listen, and
``up`` (all in one); the ``keys`` group is :mod:`app.cli.keys`.

Nothing here imports torch; the worker loads it lazily.
"""

from __future__ import annotations

import os
import signal
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from app.supervise import Supervisor

from .common import DataDir, console, fail, load_settings, upgrade_schema

if TYPE_CHECKING:
    from app.config import Settings
    from app.dicom_listener import DicomListener

app = typer.Typer()

#: open worklist event streams do not end by themselves: stop waiting for them after this
GRACEFUL_SECONDS = 5


@app.command()
def migrate(data_dir: DataDir = None) -> None:
    """Bring the database schema up to date (Alembic) and, when no model version is active,
    register and activate the served checkpoint (AMAQC_CHECKPOINT), as ``amaqc up`` does."""
    settings = load_settings(data_dir)
    upgrade_schema(settings.database_url)
    console.print("database schema is up to date")
    _ensure_model(settings)


@app.command()
def register(
    checkpoint: Annotated[Path, typer.Argument(help="A checkpoint (.safetensors).")],
    name: Annotated[
        str | None, typer.Option(help="Version name (default: file stem + hash).")
    ] = None,
    activate: Annotated[
        bool, typer.Option(help="Serve it now (the worker picks it up with the next job).")
    ] = False,
    data_dir: DataDir = None,
) -> None:
    """Add a checkpoint (e.g. one from `amaqc calibrate` or `amaqc train`) to the service's model
    registry; the file is referenced where it is, by path and SHA-256, so leave it there."""
    from app.db import repo, repo_training
    from app.db.session import session_scope
    from app.model_versions import CheckpointUnusable, register_checkpoint

    settings = load_settings(data_dir)
    upgrade_schema(settings.database_url)
    try:
        with session_scope(settings.database_url) as session:
            if name is not None and repo_training.model_version_by_name(session, name):
                raise fail(f"a model version named {name!r} exists already")
            version = register_checkpoint(session, checkpoint, name=name, activate=activate)
            active = repo.active_model_version(session)
            line = (
                f"model version {version.id} {version.name!r} ({version.arch}, threshold "
                f"{version.threshold:.3f}); active: "
                + (f"{active.id} {active.name!r}" if active else "none")
            )
    except CheckpointUnusable as exc:
        raise fail(str(exc)) from None
    console.print(line)


@app.command()
def api(
    host: Annotated[str | None, typer.Option(help="Bind address (default AMAQC_HOST).")] = None,
    port: Annotated[int | None, typer.Option(help="Port (default AMAQC_PORT).")] = None,
    data_dir: DataDir = None,
) -> None:
    """Serve the HTTP API (uvicorn). Run ``amaqc migrate`` first."""
    import uvicorn

    settings = load_settings(data_dir)
    uvicorn.run(
        "app.api.main:app",
        host=host or settings.host,
        port=port or settings.port,
        timeout_graceful_shutdown=GRACEFUL_SECONDS,
    )


@app.command()
def worker(
    concurrency: Annotated[int, typer.Option(help="Worker processes (prefork pool).")] = 1,
    pool: Annotated[str, typer.Option(help="solo (one process) or prefork.")] = "solo",
    queues: Annotated[
        str,
        typer.Option(
            help="Comma-separated queues: inference (verdicts) and/or training (training "
            "jobs). Production runs one worker per kind: --queues inference on the GPU "
            "inference hosts, --queues training (one at a time) on the trainer."
        ),
    ] = "inference",
    data_dir: DataDir = None,
) -> None:
    """Run a Celery worker (default: the inference queue)."""
    from app.queue import QUEUES

    unknown = [q for q in queues.split(",") if q.strip() not in QUEUES]
    if unknown or not queues.strip():
        raise fail(f"--queues: unknown queue(s) {unknown}; choose from {', '.join(QUEUES)}")
    load_settings(data_dir)
    from app.worker.celery_app import celery_app

    args = ["worker", "-Q", queues, "--pool", pool, "-l", "INFO"]
    if pool != "solo":
        args += ["--concurrency", str(concurrency)]
    args += ["-n", f"{queues.replace(',', '+')}@%h"]
    celery_app.worker_main([*args, "--without-gossip", "--without-mingle", "--without-heartbeat"])


def _start_listener(
    settings: Settings,
    *,
    host: str | None = None,
    port: int | None = None,
    ae_title: str | None = None,
    sweep: bool = True,
) -> DicomListener:
    """A started :class:`app.dicom_listener.DicomListener`, or a clear error and exit 2."""
    from sqlalchemy.exc import SQLAlchemyError

    from app.dicom_listener import DicomListener, ListenerKeyError

    try:
        listener = DicomListener(settings, host=host, port=port, ae_title=ae_title, sweep=sweep)
        listener.start()
    except (ListenerKeyError, ValueError) as exc:
        raise fail(str(exc)) from None
    except OSError as exc:
        raise fail(f"cannot listen on {listener.host}:{listener.port}: {exc.strerror}") from None
    except SQLAlchemyError as exc:
        raise fail(f"database not usable ({type(exc).__name__}); run `amaqc migrate`") from None
    console.print(
        f"DICOM listener: AE title {listener.ae_title} on {listener.host}:{listener.port}, "
        f"calling AE titles {', '.join(settings.allowed_aes) or 'any'}"
        + (", called AE title enforced" if settings.dicom_ae_title_strict else "")
    )
    return listener


@app.command("dicom-listen")
def dicom_listen(
    host: Annotated[
        str | None, typer.Option(help="Bind address (default AMAQC_DICOM_HOST, 127.0.0.1).")
    ] = None,
    port: Annotated[
        int | None, typer.Option(help="Port (default AMAQC_DICOM_PORT, 11112).")
    ] = None,
    ae_title: Annotated[
        str | None, typer.Option(help="This AE title (default AMAQC_DICOM_AE_TITLE, AMAQC).")
    ] = None,
    data_dir: DataDir = None,
) -> None:
    """Receive DICOM instances pushed with C-STORE (a scanner or PACS destination); each is
    stored and analysed like POST /api/v1/slices. Run ``amaqc migrate`` first."""
    import logging
    import threading

    settings = load_settings(data_dir)
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    listener = _start_listener(settings, host=host, port=port, ae_title=ae_title)
    try:
        stop.wait()
    finally:
        listener.stop()
        console.print("DICOM listener stopped")


def _ensure_model(settings: Settings) -> None:
    """Register and activate ``AMAQC_CHECKPOINT`` (default: the served checkpoint) when no
    model version is active, so that a migrated database serves verdicts."""
    from app.db import repo
    from app.db.session import session_scope
    from app.model_versions import CheckpointUnusable, register_checkpoint

    with session_scope(settings.database_url) as session:
        active = repo.active_model_version(session)
        if active is not None:
            console.print(f"active model version: {active.name} ({active.arch})")
            return
        try:
            version = register_checkpoint(session, Path(settings.checkpoint))
        except CheckpointUnusable as exc:
            raise fail(f"{exc}; set AMAQC_CHECKPOINT to a trained checkpoint") from None
        console.print(f"registered and activated model version: {version.name} ({version.arch})")


def _bootstrap(settings: Settings) -> str | None:
    """Register the default checkpoint if no model is active; create the first admin key.

    Returns the new admin key, or None when one exists.
    """
    from app.db import repo
    from app.db.session import session_scope

    _ensure_model(settings)
    with session_scope(settings.database_url) as session:
        if repo.count_api_keys(session, "admin"):
            return None
        _, plain = repo.create_api_key(session, "first admin (amaqc up)", "admin")
        return plain


def _release(settings: Settings, pid: int) -> None:
    """A child worker died: enqueue again at once the series it was processing (its heartbeat
    would tell the sweeper only after AMAQC_WORKER_SILENT_SECONDS)."""
    from app.db.heartbeats import process_name
    from app.sweeper import release_worker

    ids = release_worker(settings, process_name(pid))
    if ids:
        console.print(f"[yellow]enqueued again the series it held: {ids}[/]")


@app.command()
def up(
    host: Annotated[str | None, typer.Option(help="Bind address (default 127.0.0.1).")] = None,
    port: Annotated[int | None, typer.Option(help="Port (default 8000).")] = None,
    dicom_port: Annotated[
        int | None,
        typer.Option(
            help="Also receive DICOM C-STORE on this port, bound to --host or AMAQC_DICOM_HOST "
            "(default: no listener)."
        ),
    ] = None,
    data_dir: DataDir = None,
) -> None:
    """Everything on one machine: migrate, register the model, start the inference and the
    training worker and the API (and the DICOM listener with ``--dicom-port``)."""
    import uvicorn

    settings = load_settings(data_dir)
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    upgrade_schema(settings.database_url)
    admin_key = _bootstrap(settings)
    env = {**os.environ, "AMAQC_DATA_DIR": str(settings.data_dir)}
    listener = None  # started first: a port in use stops `up` before the worker exists
    if dicom_port:  # its threads live in this process; the API runs the sweeper
        listener = _start_listener(settings, host=host, port=dicom_port, sweep=False)
    # Two children, each on its own queue: verdicts never wait behind a training job.
    children = Supervisor(
        ["inference", "training"],
        env,
        report=lambda text: console.print(f"[yellow]{text}[/]"),
        on_exit=lambda _name, pid: _release(settings, pid),
    )
    children.start()
    url = f"http://{host or settings.host}:{port or settings.port}"
    console.print(f"amaqc on {url} (docs {url}/docs), data in {settings.data_dir.resolve()}")
    if admin_key:
        console.print("admin key (shown once; create more with `amaqc keys create`):")
        print(admin_key, flush=True)
    server = uvicorn.Server(
        uvicorn.Config(
            "app.api.main:app",
            host=host or settings.host,
            port=port or settings.port,
            timeout_graceful_shutdown=GRACEFUL_SECONDS,
        )
    )

    def stop_serving(_signum: int, _frame: object) -> None:
        # Only a flag, never an exception: a SIGTERM that lands before uvicorn installs its own
        # handler (while it configures logging or builds its loop) must still stop it, and an
        # exception raised there could be swallowed (seen: `up` kept serving, 1 run in 5).
        # uvicorn restores this handler after its graceful shutdown and raises the SIGTERM
        # again: with the default handler the process would die there and leave its workers.
        server.should_exit = True

    signal.signal(signal.SIGTERM, stop_serving)
    try:
        server.run()
        if not server.started:
            raise SystemExit(3)  # as uvicorn.run: the server could not start (e.g. port in use)
    finally:
        if listener is not None:
            listener.stop()
        children.stop()
        console.print("amaqc stopped")
