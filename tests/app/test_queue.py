"""Publishing to the real local broker (kombu's SQLAlchemy transport on a SQLite file): a pooled
producer whose channel kombu closed under it must not make a reachable broker look down; an idle
consumer of that broker looks for jobs every ``LOCAL_POLL_SECONDS``, not every second."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pytest
from kombu import Consumer
from kombu.transport.virtual import base as kombu_virtual

from app import queue


def _break(app: Any, monkeypatch: pytest.MonkeyPatch, calls: list[str]) -> None:
    """Make ``app.send_task`` fail the way a closed pooled channel does, noting each call."""

    def send_task(name: str, *args: object, **kwargs: object) -> None:
        calls.append(name)
        raise AttributeError("'NoneType' object has no attribute 'client'")

    monkeypatch.setattr(app, "send_task", send_task)


@pytest.mark.parametrize(
    ("enqueue", "queue_name"),
    [(queue.enqueue_analysis, "inference"), (queue.enqueue_training, "training")],
)
def test_a_closed_pooled_channel_is_published_again_on_a_fresh_connection(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, enqueue: Any, queue_name: str
) -> None:
    url = f"sqla+sqlite:///{tmp_path / 'broker.db'}"
    stale = queue.publisher(url)
    calls: list[str] = []
    _break(stale, monkeypatch, calls)

    assert enqueue(url, 7) is True
    assert len(calls) == 1  # the stale app was tried first
    assert queue.publisher(url) is not stale  # and replaced
    assert queue.queue_depth(url, queue_name) == 1  # the message reached the broker


def test_a_broker_that_keeps_failing_is_reported_down(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    url = f"sqla+sqlite:///{tmp_path / 'broker.db'}"
    calls: list[str] = []
    _break(queue.publisher(url), monkeypatch, calls)
    real_make = queue.make_celery

    def make_broken(broker_url: str) -> Any:
        app = real_make(broker_url)
        _break(app, monkeypatch, calls)
        return app

    monkeypatch.setattr(queue, "make_celery", make_broken)
    with caplog.at_level(logging.WARNING, logger="app.queue"):
        assert queue.enqueue_analysis(url, 3) is False
    assert calls == [queue.ANALYSE_SERIES] * 2  # one retry on a fresh app, not a loop
    assert "could not enqueue series 3" in caplog.text


def test_an_unreachable_broker_is_not_retried_on_a_fresh_app(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    made: list[str] = []
    real_make = queue.make_celery

    def make_noted(broker_url: str) -> Any:
        made.append(broker_url)
        return real_make(broker_url)

    monkeypatch.setattr(queue, "make_celery", make_noted)
    monkeypatch.setattr(queue, "_publishers", {})  # no app cached by an earlier test
    url = "redis://127.0.0.1:1/0"  # nothing listens on port 1
    assert queue.enqueue_training(url, 5) is False
    assert made == [url]  # kombu already retried the connection; no second app


class _Slept(Exception):
    """Raised by the stand-in for kombu's ``sleep`` so the drain loop stops at its first wait."""


def test_an_idle_local_consumer_looks_again_after_the_local_poll_interval(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    waits: list[float] = []

    def sleep(seconds: float) -> None:
        waits.append(seconds)
        raise _Slept

    monkeypatch.setattr(kombu_virtual, "sleep", sleep)  # the wait between polls of an empty queue
    app = queue.make_celery(f"sqla+sqlite:///{tmp_path / 'broker.db'}")
    with app.connection_for_read() as conn:
        inference = next(q for q in app.conf.task_queues if q.name == "inference")
        consumer = Consumer(conn, queues=[inference], callbacks=[lambda body, message: None])
        with consumer, pytest.raises(_Slept):
            conn.drain_events(timeout=10)
    assert isinstance(conn.transport, queue.LocalTransport)
    assert waits == [queue.LOCAL_POLL_SECONDS]
    assert queue.LOCAL_POLL_SECONDS <= 0.1  # kombu's default second was most of an idle wait


def test_a_job_on_the_local_broker_reaches_its_consumer(tmp_path: Path) -> None:
    url = f"sqla+sqlite:///{tmp_path / 'broker.db'}"
    assert queue.enqueue_analysis(url, 11) is True
    received: list[Any] = []
    app = queue.make_celery(url)
    with app.connection_for_read() as conn:
        inference = next(q for q in app.conf.task_queues if q.name == "inference")
        with Consumer(conn, queues=[inference], callbacks=[lambda b, m: received.append(m)]):
            conn.drain_events(timeout=5)
    assert [m.headers["task"] for m in received] == [queue.ANALYSE_SERIES]
    assert [m.headers["argsrepr"] for m in received] == ["[11]"]


def test_other_brokers_keep_the_transport_their_url_names() -> None:
    app = queue.make_celery("redis://127.0.0.1:6379/0")
    assert app.conf.broker_transport is None
    assert type(app.connection_for_write().transport).__module__ == "kombu.transport.redis"


def test_the_local_broker_file_is_in_wal_mode(tmp_path: Path) -> None:
    """Issue 18: a publish and a job taken are one commit each; in WAL mode that is one fsync
    of the log instead of the rollback journal's several. The job still arrives."""
    import sqlite3

    path = tmp_path / "broker.db"
    url = f"sqla+sqlite:///{path}"
    assert queue.enqueue_analysis(url, 12) is True
    with sqlite3.connect(path) as conn:  # the mode is kept in the file
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    received: list[Any] = []
    app = queue.make_celery(url)
    with app.connection_for_read() as conn:
        inference = next(q for q in app.conf.task_queues if q.name == "inference")
        with Consumer(conn, queues=[inference], callbacks=[lambda b, m: received.append(m)]):
            conn.drain_events(timeout=5)
    assert [m.headers["argsrepr"] for m in received] == ["[12]"]
