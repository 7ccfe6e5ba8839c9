"""The PACS outbox: reports C-STOREd to a real DCMTK ``storescp``, kept and retried while a
destination is down, never sent twice at once; and the worker sending them after a verdict."""

from __future__ import annotations

import time
from datetime import timedelta
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from pydicom.uid import ComprehensiveSRStorage, SecondaryCaptureImageStorage
from sqlalchemy import select, update

from app.config import Settings
from app.db.models import PacsDelivery, SeriesVerdict
from app.db.session import session_scope
from app.db.types import utcnow
from app.pacs import outbox
from app.pacs.destinations import parse_destination, parse_destinations
from app.sweeper import wake_reports
from tests.app.conftest import auth, new_key, set_threshold
from tests.app.test_end_to_end import _client, _wait_done
from tests.utils.dicom_nodes import storescp
from tests.utils.ports import free_port
from tests.utils.service import scored_series, series_files, start_worker, stop_process


def _rows(settings: Settings) -> list[PacsDelivery]:
    with session_scope(settings.database_url) as session:
        rows = list(session.scalars(select(PacsDelivery).order_by(PacsDelivery.id)))
        session.expunge_all()
    return rows


def _due_now(settings: Settings) -> None:
    with session_scope(settings.database_url) as session:
        session.execute(update(PacsDelivery).values(next_attempt_at=utcnow()))


def _to(settings: Settings, *destinations: str, **changes: object) -> Settings:
    return settings.model_copy(
        update={"pacs_destinations": ", ".join(destinations), "pacs_retry_seconds": 0.2, **changes}
    )


@pytest.fixture
def flagged(client: TestClient, settings: Settings, scanner: dict[str, str]) -> int:
    """A scored DICOM series of 2 slices, both flagged."""
    set_threshold(settings, 0.0)
    return scored_series(client, settings, scanner, n=2)[0]


def test_destinations_parse_and_bad_ones_are_refused_by_name() -> None:
    assert [str(d) for d in parse_destinations("PACS@pacs.example:104, QC@[fd00::7]:11112")] == [
        "PACS@pacs.example:104",
        "QC@[fd00::7]:11112",
    ]
    assert parse_destinations("") == []
    assert parse_destination(" A@h:1 ").port == 1
    for bad in ("PACS@host", "host:104", "PACS@host:0", "PACS@host:x", "@host:104"):
        with pytest.raises(ValueError, match="AE|must read"):
            parse_destination(bad)
    with pytest.raises(ValueError, match="PACS destination"):
        Settings(pacs_destinations="PACS@nohost")


def test_the_report_and_heatmaps_arrive_in_storescp(
    settings: Settings, flagged: int, tmp_path: Path
) -> None:
    with storescp(tmp_path / "scp") as scp:
        s = _to(settings, scp.destination)
        assert outbox.queue_reports(s, flagged) == 1
        done = outbox.deliver(s)
        assert (done.sent, done.failed) == (1, 0)
        received = scp.received()
    classes = sorted(str(ds.SOPClassUID) for ds in received)
    assert classes == sorted([ComprehensiveSRStorage, *[SecondaryCaptureImageStorage] * 2])
    [row] = _rows(s)
    assert row.status == "sent" and row.objects == 3 and row.attempts == 1
    [sr] = [ds for ds in received if ds.Modality == "SR"]
    assert row.sr_uid == sr.SOPInstanceUID and sr.PatientID == "PID-SECRET-42"


def test_a_destination_that_is_down_gets_the_report_once_it_is_up(
    settings: Settings, flagged: int, tmp_path: Path
) -> None:
    port = free_port()
    s = _to(settings, f"LATER@127.0.0.1:{port}", pacs_timeout_seconds=5, pacs_retry_seconds=30)
    outbox.queue_reports(s, flagged)
    assert outbox.deliver(s).failed == 1
    [row] = _rows(s)
    assert row.status == "pending" and row.attempts == 1 and "unreachable" in row.last_error
    assert row.next_attempt_at > utcnow()  # backed off: not due at once
    assert outbox.deliver(s).failed == 0  # nothing due yet, nothing tried
    with storescp(tmp_path / "scp", port=port, ae_title="LATER") as scp:
        _due_now(s)
        assert outbox.deliver(s).sent == 1
        assert len(scp.received()) == 3
    [row] = _rows(s)
    assert row.status == "sent" and row.attempts == 2 and row.last_error is None


def test_backoff_doubles_from_the_first_retry_up_to_the_cap(settings: Settings) -> None:
    s = settings.model_copy(update={"pacs_retry_seconds": 5.0, "pacs_retry_max_seconds": 60.0})
    assert [outbox.backoff_seconds(s, n) for n in range(1, 7)] == [5, 10, 20, 40, 60, 60]


def test_the_next_attempt_is_backed_off_after_each_failure(
    settings: Settings, flagged: int
) -> None:
    s = _to(settings, f"DOWN@127.0.0.1:{free_port()}", pacs_retry_seconds=10)
    outbox.queue_reports(s, flagged)
    waits = []
    for _ in range(3):
        _due_now(s)
        before = utcnow()
        outbox.deliver(s)
        waits.append((_rows(s)[0].next_attempt_at - before).total_seconds())
    assert [round(w / 10) for w in waits] == [1, 2, 4]


def test_an_unreachable_destination_holds_all_its_reports_for_one_retry(
    client: TestClient, settings: Settings, scanner: dict[str, str], flagged: int
) -> None:
    """One connection attempt per retry round, not one per waiting report."""
    other = scored_series(client, settings, scanner, uid="1.2.826.0.1.3680043.8.498.8")[0]
    s = _to(settings, f"DOWN@127.0.0.1:{free_port()}", pacs_retry_seconds=30)
    outbox.queue_reports(s, flagged)
    outbox.queue_reports(s, other)
    with session_scope(s.database_url) as session:  # the other series' report due in 1 s
        session.execute(
            update(PacsDelivery)
            .where(PacsDelivery.series_id == other)
            .values(next_attempt_at=utcnow() + timedelta(seconds=1))
        )
    assert outbox.deliver(s).failed == 1
    first, second = _rows(s)
    assert first.attempts == 1 and second.attempts == 0  # the second was not tried ...
    assert second.next_attempt_at == first.next_attempt_at  # ... and waits with the first
    assert (first.next_attempt_at - utcnow()).total_seconds() > 20


def test_one_verdict_is_queued_once_per_destination(settings: Settings, flagged: int) -> None:
    s = _to(settings, "A@127.0.0.1:1", "B@127.0.0.1:2")
    assert outbox.queue_reports(s, flagged) == 2
    assert outbox.queue_reports(s, flagged) == 0  # a redelivered job adds nothing
    assert sorted(r.destination for r in _rows(s)) == ["A@127.0.0.1:1", "B@127.0.0.1:2"]
    assert outbox.queue_reports(settings, flagged) == 0  # no destinations configured


def test_metrics_count_the_reports_by_delivery_status(
    client: TestClient, settings: Settings, flagged: int
) -> None:
    outbox.queue_reports(_to(settings, "A@127.0.0.1:1", "B@127.0.0.1:2"), flagged)
    text = client.get("/metrics").text
    assert 'amaqc_pacs_reports{status="pending"} 2.0' in text
    assert 'amaqc_pacs_reports{status="sent"} 0.0' in text


def test_only_flagged_verdicts_when_asked(
    client: TestClient, settings: Settings, scanner: dict[str, str]
) -> None:
    set_threshold(settings, 1.01)
    clean = scored_series(client, settings, scanner, n=2)[0]
    assert outbox.queue_reports(_to(settings, "A@127.0.0.1:1", pacs_send="flagged"), clean) == 0
    assert outbox.queue_reports(_to(settings, "A@127.0.0.1:1"), clean) == 1


def test_a_claimed_row_is_not_sent_by_a_second_sender(settings: Settings, flagged: int) -> None:
    s = _to(settings, "A@127.0.0.1:1")
    outbox.queue_reports(s, flagged)
    first = outbox._claim(s, None)
    assert len(first) == 1
    assert outbox._claim(s, None) == []  # leased to the first sender


def test_a_changed_verdict_supersedes_the_unsent_report(
    settings: Settings, flagged: int, tmp_path: Path
) -> None:
    with storescp(tmp_path / "scp") as scp:
        s = _to(settings, scp.destination)
        outbox.queue_reports(s, flagged)
        with session_scope(s.database_url) as session:
            session.scalars(select(SeriesVerdict)).one().label = 0
        outbox.queue_reports(s, flagged)  # the new verdict's row
        done = outbox.deliver(s)
        received = scp.received()
    assert (done.sent, done.superseded) == (1, 1)
    assert [r.status for r in _rows(s)] == ["superseded", "sent"]
    [sr] = [ds for ds in received if ds.Modality == "SR"]
    assert sr.ContentSequence[0].ConceptCodeSequence[0].CodeMeaning == "Artifact-free"


def test_the_sweeper_wakes_reports_long_overdue(settings: Settings, flagged: int) -> None:
    s = _to(settings, "A@127.0.0.1:1")
    outbox.queue_reports(s, flagged)
    assert wake_reports(s) == []  # due now: its task is coming
    with session_scope(s.database_url) as session:
        late = utcnow() - timedelta(seconds=outbox.OVERDUE_SECONDS + 5)
        session.execute(update(PacsDelivery).values(next_attempt_at=late))
    assert wake_reports(s) == [flagged]
    assert wake_reports(s) == []  # woken once
    assert abs((_rows(s)[0].next_attempt_at - utcnow()).total_seconds()) < 30


@pytest.fixture
def scp_port() -> int:
    return free_port()


@pytest.fixture
def worker_env(scp_port: int) -> dict[str, str]:
    """The stack's worker sends reports to a storescp on ``scp_port``, retrying quickly."""
    return {
        "AMAQC_PACS_DESTINATIONS": f"STORESCP@127.0.0.1:{scp_port}",
        "AMAQC_PACS_RETRY_SECONDS": "0.5",
        "AMAQC_PACS_RETRY_MAX_SECONDS": "1",
    }


@pytest.mark.slow
def test_the_worker_sends_the_report_after_the_verdict_and_again_until_accepted(
    stack: Settings, scp_port: int, tmp_path: Path
) -> None:
    """The destination is down when the verdict is written: the verdict is not held up, the
    worker keeps trying, and the report arrives once storescp is up."""
    set_threshold(stack, 0.0)
    headers = auth(new_key(stack, "scanner"))
    with _client(stack) as client:
        accepted = client.post("/api/v1/series", files=series_files(2), headers=headers).json()
        body = _wait_done(client, accepted["status_url"], headers, stack)
    assert body["verdict"]["label"] == "artifact"
    deadline = time.monotonic() + 60
    while not any(r.attempts >= 2 for r in _rows(stack)) and time.monotonic() < deadline:
        time.sleep(0.2)
    [row] = _rows(stack)
    assert row.status == "pending" and row.attempts >= 2, row.last_error
    with storescp(tmp_path / "scp", port=scp_port) as scp:
        received = scp.wait(3)
        deadline = time.monotonic() + 30
        while _rows(stack)[0].status != "sent" and time.monotonic() < deadline:
            time.sleep(0.2)
    assert sorted(ds.Modality for ds in received) == ["OT", "OT", "SR"]
    assert _rows(stack)[0].status == "sent"


@pytest.mark.slow
def test_a_restarted_worker_sends_what_the_outbox_kept(
    tmp_path: Path, settings: Settings, flagged: int
) -> None:
    """Reports queued while no worker ran go out once one starts and the sweeper wakes them."""
    with storescp(tmp_path / "scp") as scp:
        s = _to(settings, scp.destination)
        outbox.queue_reports(s, flagged)
        with session_scope(s.database_url) as session:
            late = utcnow() - timedelta(seconds=outbox.OVERDUE_SECONDS + 5)
            session.execute(update(PacsDelivery).values(next_attempt_at=late))
        worker = start_worker(s, env={"AMAQC_PACS_DESTINATIONS": scp.destination})
        try:
            assert wake_reports(s) == [flagged]  # the message the sweeper sends
            assert len(scp.wait(3)) == 3
        finally:
            stop_process(worker)
