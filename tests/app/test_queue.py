"""Publishing to the real local broker (kombu's SQLAlchemy transport on a SQLite file): a pooled
producer whose channel kombu closed under it must not make a reachable broker look down."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pytest

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
