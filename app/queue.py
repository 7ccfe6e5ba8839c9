"""The Celery app factory and the publishing side of the queue (torch-free: the API uses it).

Queues: ``inference`` (analyse_series) and ``training`` (train_model, consumed by a separate
worker process with concurrency 1: ``amaqc worker --queues training``). The default local
broker is kombu's SQLAlchemy transport on a SQLite file (``sqla+sqlite:///<data_dir>/broker.db``):
it needs no server, works across processes (the API publishes, a separate worker consumes) and keeps
messages on disk; the filesystem transport would also work, but it drops a message when it is
read, so a worker killed mid-job would lose it (with SQLAlchemy the sweeper still catches up).
That broker runs on :class:`LocalTransport`, which looks at an empty queue every
``LOCAL_POLL_SECONDS`` instead of kombu's default second, its SQLite file in WAL mode.
"""

from __future__ import annotations

import logging
import threading
from typing import Any

from celery import Celery
from kombu.entity import Exchange, Queue
from kombu.exceptions import OperationalError
from kombu.transport import sqlalchemy as kombu_sqlalchemy
from sqlalchemy import event

ANALYSE_SERIES = "amaqc.analyse_series"
TRAIN_MODEL = "amaqc.train_model"
SEND_REPORTS = "amaqc.send_reports"
QUEUES = ("inference", "training")

logger = logging.getLogger(__name__)

#: seconds between two looks at an empty queue of the local broker: the longest an idle worker
#: waits for a new job (kombu's default, 1 s, was most of an idle series' latency); each look
#: is one short SQLite transaction
LOCAL_POLL_SECONDS = 0.1


def _wal(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.close()


class LocalChannel(kombu_sqlalchemy.Channel):
    """kombu's SQLAlchemy channel on a SQLite file in WAL mode, as the service's own database:
    a commit (each publish, each job taken) is one fsync of the log instead of the rollback
    journal's several (4 ms instead of 13.5 ms on the bench host), and as durable."""

    def _engine_from_config(self) -> Any:
        engine = super()._engine_from_config()  # type: ignore[no-untyped-call]
        event.listen(engine, "connect", _wal)
        return engine


class LocalTransport(kombu_sqlalchemy.Transport):
    """kombu's SQLAlchemy transport, polling an empty queue every ``LOCAL_POLL_SECONDS``, its
    SQLite file in WAL mode (:class:`LocalChannel`).

    Set on the class because the transport hands every transport option, ``polling_interval``
    included, to ``create_engine``, which refuses the ones it does not know.
    """

    Channel = LocalChannel
    polling_interval = LOCAL_POLL_SECONDS


def _local_broker(broker_url: str) -> tuple[str, str | None]:
    """(the URL kombu connects to, the transport to use): ``sqla+sqlite:///...`` becomes the
    SQLAlchemy URL with :class:`LocalTransport` named explicitly (a ``sqla+`` prefix would pick
    kombu's own class); any other URL is kept, with the transport its scheme names."""
    if broker_url.startswith("sqla+sqlite"):
        return broker_url.removeprefix("sqla+"), f"{__name__}:{LocalTransport.__name__}"
    return broker_url, None


def make_celery(broker_url: str) -> Celery:
    """A Celery app for ``broker_url`` with the service's queues and delivery guarantees."""
    url, transport = _local_broker(broker_url)
    app = Celery("amaqc", broker=url, set_as_current=False)
    options: dict[str, object] = {}
    if transport is not None:
        # kombu hands these to create_engine: wait for SQLite's lock instead of failing at once
        options = {"connect_args": {"timeout": 30}}
    elif broker_url.startswith("redis"):
        # a job not acked within this long is redelivered (keep it above the slowest job)
        options = {"visibility_timeout": 3600}
    app.conf.update(
        task_queues=[Queue(name, Exchange(name), routing_key=name) for name in QUEUES],
        task_default_queue="inference",
        task_default_exchange="inference",
        task_default_routing_key="inference",
        task_routes={ANALYSE_SERIES: {"queue": "inference"}, TRAIN_MODEL: {"queue": "training"}},
        task_acks_late=True,  # ack after the job ran: a worker that dies loses nothing
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        task_ignore_result=True,
        broker_transport=transport,
        broker_transport_options=options,
        broker_connection_retry_on_startup=True,
        worker_hijack_root_logger=False,
        worker_redirect_stdouts=False,
    )
    return app


_publishers: dict[str, Celery] = {}
_publishers_lock = threading.Lock()
_RETRY_POLICY = {"max_retries": 2, "interval_start": 0.2, "interval_step": 0.5}


def publisher(broker_url: str, *, fresh: bool = False) -> Celery:
    """The process's publishing app for ``broker_url``; ``fresh`` replaces it with a new one
    (new connection and producer pools)."""
    with _publishers_lock:
        app = _publishers.get(broker_url)
        if app is None or fresh:
            app = _publishers[broker_url] = make_celery(broker_url)
        return app


def _send(broker_url: str, task: str, job_id: int, queue: str) -> None:
    """Publish ``task(job_id)`` to ``queue``. kombu retries connection errors itself; any other
    error comes from a pooled producer whose channel was closed under it (seen with the SQLAlchemy
    transport as "'NoneType' object has no attribute 'client'"), so it is sent once more on a
    fresh app instead of reporting a reachable broker as down."""
    options: dict[str, Any] = {
        "args": [job_id],
        "queue": queue,
        "retry": True,
        "retry_policy": _RETRY_POLICY,
    }
    try:
        publisher(broker_url).send_task(task, **options)
    except (OperationalError, OSError):
        raise
    except Exception as exc:
        logger.info("publishing %s(%s) failed (%r); once more, fresh", task, job_id, exc)
        publisher(broker_url, fresh=True).send_task(task, **options)


def enqueue_analysis(broker_url: str, series_id: int) -> bool:
    """Send ``analyse_series(series_id)``; False (logged) when the broker is unreachable: the
    series stays queued in the database and the sweeper sends it again."""
    try:
        _send(broker_url, ANALYSE_SERIES, series_id, "inference")
    except Exception as exc:  # broker down: the database row is the source of truth
        logger.warning("could not enqueue series %s (%s); the sweeper will retry", series_id, exc)
        return False
    return True


def enqueue_reports(broker_url: str, series_id: int) -> bool:
    """Send ``send_reports(series_id)`` (the PACS outbox); False (logged) when the broker is
    unreachable: the rows stay pending and the sweeper tries again."""
    try:
        _send(broker_url, SEND_REPORTS, series_id, "inference")
    except Exception as exc:
        logger.warning("could not enqueue the PACS reports of series %s (%s)", series_id, exc)
        return False
    return True


def enqueue_training(broker_url: str, job_id: int) -> bool:
    """Send ``train_model(job_id)`` to the ``training`` queue; False (logged) when the broker
    is unreachable (the caller fails the job: nothing re-sends training jobs)."""
    try:
        _send(broker_url, TRAIN_MODEL, job_id, "training")
    except Exception as exc:
        logger.warning("could not enqueue training job %s (%s)", job_id, exc)
        return False
    return True


def queue_depth(broker_url: str, queue: str = "inference") -> int | None:
    """Messages waiting in ``queue``; None when the broker cannot tell or is unreachable."""
    try:
        with publisher(broker_url).connection_for_write() as conn:
            _, count, _ = conn.default_channel.queue_declare(queue=queue, passive=True)
            return int(count)
    except Exception:
        return None


def broker_reachable(broker_url: str) -> bool:
    try:
        with publisher(broker_url).connection_for_write() as conn:
            conn.ensure_connection(max_retries=1, timeout=2)
        return True
    except Exception:
        return False


def broker_identity(broker_url: str) -> str | None:
    """Which broker server answers now: Redis's ``run_id``, new at every start of the server, so
    a change means a restart (and, without persistence, lost messages). None when it cannot be
    reached, and always for brokers that cannot tell (the local SQLAlchemy broker)."""
    if not broker_url.startswith(("redis://", "rediss://")):
        return None
    import redis

    try:
        client = redis.Redis.from_url(broker_url, socket_connect_timeout=2, socket_timeout=2)
        try:
            return str(client.info("server")["run_id"])
        finally:
            client.close()
    except (redis.RedisError, OSError, KeyError):
        return None
