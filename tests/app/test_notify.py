"""Notify: a series verdict is pushed to a webhook (a real local HTTP receiver, no mocks)."""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import update

from app.config import Settings
from app.db.models import SeriesVerdict
from app.db.session import session_scope
from app.notify import DeliveryFailed, notify_series, series_event
from tests.app.conftest import auth, new_key
from tests.app.test_end_to_end import _client, _wait_done
from tests.utils.service import scored_series, series_files

SECRET = "webhook-test-secret"


@dataclass
class Receiver:
    url: str
    status: int = 200
    events: list[tuple[dict[str, str], bytes]] = field(default_factory=list)

    def wait(self, n: int, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while len(self.events) < n and time.monotonic() < deadline:
            time.sleep(0.1)
        assert len(self.events) >= n, f"{len(self.events)} event(s) arrived, expected {n}"


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    state: dict[str, Receiver] = {}

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["Content-Length"]))
            rec = state["r"]
            rec.events.append((dict(self.headers.items()), body))
            self.send_response(rec.status)
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    state["r"] = Receiver(url=f"http://127.0.0.1:{server.server_port}/hook")
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield state["r"]
    server.shutdown()
    server.server_close()


@pytest.fixture
def worker_env(receiver: Receiver) -> dict[str, str]:
    """The stack's worker sends every verdict to the receiver, signed."""
    return {
        "AMAQC_WEBHOOK_URL": receiver.url,
        "AMAQC_WEBHOOK_EVENTS": "all",
        "AMAQC_WEBHOOK_SECRET": SECRET,
    }


def _set_label(settings: Settings, series_id: int, label: int) -> None:
    with session_scope(settings.database_url) as session:
        session.execute(
            update(SeriesVerdict).where(SeriesVerdict.series_id == series_id).values(label=label)
        )


def _hooked(settings: Settings, receiver: Receiver, **changes: Any) -> Settings:
    return settings.model_copy(
        update={"webhook_url": receiver.url, "webhook_secret": SECRET, **changes}
    )


def test_a_flagged_verdict_is_posted_signed_and_without_patient_data(
    client: TestClient, settings: Settings, scanner: dict[str, str], receiver: Receiver
) -> None:
    series_id, _ = scored_series(client, settings, scanner)
    _set_label(settings, series_id, 1)
    assert notify_series(_hooked(settings, receiver), series_id) == "sent"
    [(headers, body)] = receiver.events
    expected = "sha256=" + hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()
    assert headers["X-Amaqc-Signature"] == expected
    event = json.loads(body)
    assert event["event"] == "series.verdict" and event["series_id"] == series_id
    assert event["label"] == "artifact" and event["slices"] == 2
    assert event["status_url"] == f"/api/v1/series/{series_id}"
    assert "Doe" not in body.decode() and "PatientName" not in body.decode()


def test_only_flagged_verdicts_are_sent_unless_all_are_asked_for(
    client: TestClient, settings: Settings, scanner: dict[str, str], receiver: Receiver
) -> None:
    series_id, _ = scored_series(client, settings, scanner)
    _set_label(settings, series_id, 0)
    assert notify_series(_hooked(settings, receiver), series_id) == "not flagged"
    assert receiver.events == []
    assert notify_series(_hooked(settings, receiver, webhook_events="all"), series_id) == "sent"
    assert json.loads(receiver.events[0][1])["label"] == "clean"
    assert notify_series(settings, series_id) == "no webhook"  # none configured


def test_the_event_id_is_stable_so_receivers_can_drop_duplicates(
    client: TestClient, settings: Settings, scanner: dict[str, str]
) -> None:
    series_id, _ = scored_series(client, settings, scanner)
    first, again = series_event(settings, series_id), series_event(settings, series_id)
    assert first is not None and again is not None and first["event_id"] == again["event_id"]
    _set_label(settings, series_id, 1 - first["label"].startswith("a"))
    changed = series_event(settings, series_id)
    assert changed is not None and changed["event_id"] != first["event_id"]


def test_a_receiver_that_is_down_gets_the_event_again_a_4xx_is_final(
    client: TestClient, settings: Settings, scanner: dict[str, str], receiver: Receiver
) -> None:
    series_id, _ = scored_series(client, settings, scanner)
    hooked = _hooked(settings, receiver, webhook_events="all")
    receiver.status = 503
    with pytest.raises(DeliveryFailed, match="503"):
        notify_series(hooked, series_id)
    receiver.status = 410
    assert notify_series(hooked, series_id) == "refused (410)"
    unreachable = hooked.model_copy(update={"webhook_url": "http://127.0.0.1:9/hook"})
    with pytest.raises(DeliveryFailed, match="unreachable"):
        notify_series(unreachable, series_id)


@pytest.mark.slow
def test_the_worker_pushes_each_new_verdict(stack: Settings, receiver: Receiver) -> None:
    headers = auth(new_key(stack, "scanner"))
    with _client(stack) as client:
        accepted = client.post("/api/v1/series", files=series_files(3), headers=headers).json()
        body = _wait_done(client, accepted["status_url"], headers, stack)
    receiver.wait(1)
    headers_sent, raw = receiver.events[0]
    assert headers_sent["X-Amaqc-Signature"].startswith("sha256=")
    event = json.loads(raw)
    assert event["series_id"] == accepted["series_id"] and event["slices"] == 3
    assert event["label"] == body["verdict"]["label"]
    assert event["probability"] == pytest.approx(body["verdict"]["probability"])
