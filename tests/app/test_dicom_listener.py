"""The DICOM C-STORE listener, driven by pynetdicom's SCU the way a scanner talks to it, on a
free loopback port: SQLite + the local broker and PostgreSQL + Redis, a real worker where a
verdict is expected."""

from __future__ import annotations

import logging
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path

import pytest
from pydicom.dataset import Dataset
from pydicom.uid import ExplicitVRLittleEndian, ImplicitVRLittleEndian, RLELossless
from pynetdicom import AE
from pynetdicom.association import Association
from pynetdicom.sop_class import (  # type: ignore[attr-defined]
    BasicTextSRStorage,
    MRImageStorage,
    Verification,
)
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from app.config import Settings
from app.db import repo
from app.db.models import ApiKey, Instance, Series
from app.db.session import session_scope
from app.dicom_listener import DicomListener, ListenerKeyError
from tests.app.conftest import backend_settings
from tests.utils.dicomweb import mr_dataset, sr_dataset
from tests.utils.ports import free_port
from tests.utils.service import worker_log

SERIES = "1.2.826.0.1.3680043.8.498.4001"
SCANNER_AE = "MR_SCANNER_1"


@pytest.fixture(params=["sqlite", "postgresql"])
def backend(request: pytest.FixtureRequest, tmp_path: Path, checkpoint: Path) -> Iterator[Settings]:
    """A migrated database and its broker, no worker: SQLite + the local broker, or
    PostgreSQL (a database of its own) + Redis on 127.0.0.1."""
    with backend_settings(request.param, tmp_path / "data", checkpoint, register=False) as settings:
        yield settings


@contextmanager
def listening(settings: Settings, **options: object) -> Iterator[DicomListener]:
    with DicomListener(settings, host="127.0.0.1", port=0, **options) as listener:  # type: ignore[arg-type]
        yield listener


@contextmanager
def association(listener: DicomListener, calling: str = SCANNER_AE) -> Iterator[Association]:
    """An association like a scanner's: MR images (uncompressed or RLE), SR, Verification."""
    scu = AE(ae_title=calling)
    scu.add_requested_context(Verification)
    scu.add_requested_context(MRImageStorage, [ExplicitVRLittleEndian, ImplicitVRLittleEndian])
    scu.add_requested_context(MRImageStorage, [RLELossless])
    scu.add_requested_context(BasicTextSRStorage)
    assoc = scu.associate("127.0.0.1", listener.port, ae_title=listener.ae_title)
    assert assoc.is_established, f"association with {listener.ae_title} was not established"
    try:
        yield assoc
    finally:
        assoc.release()


def store(assoc: Association, ds: Dataset) -> tuple[int, str]:
    """C-STORE ``ds``: the response status and Error Comment."""
    response = assoc.send_c_store(ds)
    assert "Status" in response, "no C-STORE response (association aborted?)"
    return int(response.Status), str(response.get("ErrorComment", ""))


def instance_count(settings: Settings, series_uid: str) -> int:
    with session_scope(settings.database_url) as session:
        query = select(func.count(Instance.id)).join(Series).where(Series.series_uid == series_uid)
        return int(session.scalar(query) or 0)


def series_count(settings: Settings) -> int:
    with session_scope(settings.database_url) as session:
        return int(session.scalar(select(func.count(Series.id))) or 0)


def stored_objects(settings: Settings) -> list[Path]:
    return [p for p in settings.storage_dir.rglob("*") if p.is_file()]


def _series(session: Session, uid: str) -> Series | None:
    """The series of this UID, whoever uploaded it (here: only the listener does)."""
    return session.scalar(select(Series).where(Series.series_uid == uid))


def test_c_echo_succeeds(backend: Settings) -> None:
    with listening(backend) as listener, association(listener) as assoc:
        assert assoc.send_c_echo().Status == 0x0000


@pytest.mark.slow
def test_a_series_sent_in_one_association_gets_its_series_verdict(stack: Settings) -> None:
    # the listener's own sweeper closes the series once no instance came for 1 s (the stack's
    # AMAQC_SERIES_STABLE_SECONDS): no API process runs here
    settings = stack.model_copy(update={"sweep_interval_seconds": 0.3})
    datasets = [mr_dataset(SERIES, i) for i in range(1, 6)]
    with listening(settings) as listener:
        with association(listener) as assoc:
            statuses = [store(assoc, ds) for ds in datasets]
        assert statuses == [(0x0000, "")] * 5
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            with session_scope(settings.database_url) as session:
                series = _series(session, SERIES)
                version = repo.active_model_version(session)
                assert series is not None and version is not None
                verdict = repo.series_verdict(session, series.id, version.id)
                if series.status in ("done", "failed") and verdict is not None:
                    ids = [i.id for i in repo.series_instances(session, series.id)]
                    scored = repo.instance_verdicts(session, ids, version.id)
                    break
            time.sleep(0.3)
        else:
            log = worker_log(settings).read_text()[-3000:]
            raise AssertionError(f"no series verdict within 120 s\nworker log:\n{log}")
    assert series.status == "done" and series.complete, series.error
    assert verdict.label in (0, 1) and len(ids) == len(scored) == 5
    assert series_count(settings) == 1


def test_sending_a_series_again_stores_nothing_twice(backend: Settings) -> None:
    datasets = [mr_dataset(SERIES, i) for i in range(1, 4)]
    with listening(backend) as listener:
        for _ in range(2):
            with association(listener) as assoc:
                assert [store(assoc, ds)[0] for ds in datasets] == [0x0000] * 3
    assert instance_count(backend, SERIES) == 3 and series_count(backend) == 1
    assert len(stored_objects(backend)) == 3


def test_parallel_associations_of_one_new_series_all_succeed(backend: Settings) -> None:
    # senders that create the same series at once: the ones that lose the race on the unique
    # Series Instance UID are stored on a second try, not refused
    senders = 4
    ready = threading.Barrier(senders)

    def send(first: int) -> list[int]:
        with association(listener) as assoc:
            datasets = [mr_dataset(SERIES, n) for n in range(first, first + 3)]
            ready.wait(timeout=30)
            return [store(assoc, ds)[0] for ds in datasets]

    with listening(backend) as listener, ThreadPoolExecutor(senders) as pool:
        results = list(pool.map(send, [1 + 3 * i for i in range(senders)]))
    assert results == [[0x0000] * 3] * senders
    assert series_count(backend) == 1 and instance_count(backend, SERIES) == 3 * senders


def test_an_sr_gets_a_failure_with_its_reason_and_is_not_stored(backend: Settings) -> None:
    with listening(backend) as listener, association(listener) as assoc:
        status, comment = store(assoc, sr_dataset())
    assert status == 0x0122, comment
    assert comment == "not an image: Basic Text SR Storage"
    assert series_count(backend) == 0 and stored_objects(backend) == []


def test_a_truncated_instance_fails_while_the_others_are_stored(backend: Settings) -> None:
    broken = mr_dataset(SERIES, 2)
    broken.PixelData = broken.PixelData[:1000]  # 64x64 16-bit needs 8192 bytes
    with listening(backend) as listener, association(listener) as assoc:
        results = [
            store(assoc, ds) for ds in (mr_dataset(SERIES, 1), broken, mr_dataset(SERIES, 3))
        ]
    assert [status for status, _ in results] == [0x0000, 0xC000, 0x0000]
    assert "pixel data" in results[1][1].lower() and len(results[1][1]) <= 64
    assert instance_count(backend, SERIES) == 2 and len(stored_objects(backend)) == 2


def test_an_instance_over_the_pixel_limit_is_refused_as_out_of_resources(
    backend: Settings,
) -> None:
    settings = backend.model_copy(update={"max_pixels": 32 * 32})
    with listening(settings) as listener, association(listener) as assoc:
        status, comment = store(assoc, mr_dataset(SERIES, 1))
    assert status == 0xA700 and "AMAQC_MAX_PIXELS" in comment, comment
    assert series_count(settings) == 0


def test_an_instance_over_the_byte_limit_is_refused_or_its_association_aborted(
    backend: Settings,
) -> None:
    settings = backend.model_copy(update={"max_upload_mb": 0.1})  # 104857 bytes
    with listening(settings) as listener:
        with association(listener) as assoc:
            assert store(assoc, mr_dataset(SERIES, 1))[0] == 0x0000
            # received whole (within the slack for PDU headers), then refused
            status, comment = store(assoc, mr_dataset(SERIES, 2, size=230))
            assert status == 0xA700 and "AMAQC_MAX_UPLOAD_MB=0.1" in comment, comment
        scu = AE(ae_title=SCANNER_AE)
        scu.add_requested_context(MRImageStorage)
        assoc = scu.associate("127.0.0.1", listener.port, ae_title=listener.ae_title)
        # 512 KiB of pixels: aborted while it arrives, never held in memory whole
        assert "Status" not in assoc.send_c_store(mr_dataset(SERIES, 3, size=512))
        deadline = time.monotonic() + 10
        while not assoc.is_aborted and time.monotonic() < deadline:
            time.sleep(0.05)
        assert assoc.is_aborted
    assert instance_count(settings, SERIES) == 1


def test_an_rle_compressed_instance_is_stored(backend: Settings) -> None:
    ds = mr_dataset(SERIES, 1)
    ds.compress(RLELossless)
    with listening(backend) as listener, association(listener) as assoc:
        assert store(assoc, ds) == (0x0000, "")
        (context,) = [c for c in assoc.accepted_contexts if c.transfer_syntax[0] == RLELossless]
    assert context.abstract_syntax == MRImageStorage
    assert instance_count(backend, SERIES) == 1


def test_a_calling_ae_title_not_in_the_allow_list_is_rejected(backend: Settings) -> None:
    settings = backend.model_copy(update={"dicom_allowed_aes": "MR1, MR2"})
    with listening(settings) as listener:
        intruder = AE(ae_title="INTRUDER")
        intruder.add_requested_context(MRImageStorage)
        assoc = intruder.associate("127.0.0.1", listener.port, ae_title=listener.ae_title)
        assert assoc.is_rejected and not assoc.is_established
        with association(listener, calling="MR2") as allowed:
            assert store(allowed, mr_dataset(SERIES, 1))[0] == 0x0000
    assert instance_count(settings, SERIES) == 1


def test_the_listener_records_its_own_scanner_key_as_uploader(backend: Settings) -> None:
    with listening(backend) as listener, association(listener) as assoc:
        assert store(assoc, mr_dataset(SERIES, 1))[0] == 0x0000
    with session_scope(backend.database_url) as session:
        (key,) = repo.api_keys_named(session, backend.dicom_key_name)
        series = _series(session, SERIES)
        assert key.role == "scanner" and series is not None and series.uploader_key_id == key.id


def test_a_revoked_listener_key_stores_nothing(backend: Settings) -> None:
    with listening(backend) as listener, association(listener) as assoc:
        with session_scope(backend.database_url) as session:
            for key in repo.api_keys_named(session, backend.dicom_key_name):
                key.revoked = True
        status, comment = store(assoc, mr_dataset(SERIES, 1))
    assert status == 0x0124 and "revoked" in comment
    assert series_count(backend) == 0
    with pytest.raises(ListenerKeyError, match="is revoked"):
        DicomListener(backend, port=0).start()


def test_patient_identifiers_are_not_logged(
    backend: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    broken = mr_dataset(SERIES, 2)
    broken.PixelData = broken.PixelData[:10]
    with (
        caplog.at_level(logging.DEBUG),
        listening(backend) as listener,
        association(listener) as assoc,
    ):
        store(assoc, mr_dataset(SERIES, 1))
        store(assoc, broken)
        store(assoc, sr_dataset())
    assert "refused 0xc000" in caplog.text and "refused 0x0122" in caplog.text
    for secret in ("PID-SECRET-42", "Doe^Jane", SERIES):
        assert secret not in caplog.text


def test_the_listener_key_is_created_once(backend: Settings) -> None:
    for _ in range(2):
        with listening(backend):
            pass
    with session_scope(backend.database_url) as session:
        assert session.scalar(select(func.count(ApiKey.id))) == 1


def test_amaqc_dicom_listen_answers_c_echo_and_stops_on_sigterm(settings: Settings) -> None:
    port = free_port()
    env = {**os.environ, "AMAQC_DATA_DIR": str(settings.data_dir)}
    command = [sys.executable, "-m", "app", "dicom-listen", "--port", str(port), "--ae-title", "QC"]
    proc = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        scu = AE(ae_title=SCANNER_AE)
        scu.add_requested_context(Verification)
        deadline = time.monotonic() + 60
        while True:  # until the listener is up
            assoc = scu.associate("127.0.0.1", port, ae_title="QC")
            if assoc.is_established or time.monotonic() > deadline or proc.poll() is not None:
                break
            time.sleep(0.2)
        assert assoc.is_established, proc.stdout.read().decode() if proc.stdout else ""
        assert assoc.send_c_echo().Status == 0x0000
        assoc.release()
    finally:
        proc.send_signal(signal.SIGTERM)
        output = proc.communicate(timeout=30)[0].decode()
    assert proc.returncode == 0, output
    assert f"AE title QC on 127.0.0.1:{port}" in output and "DICOM listener stopped" in output


def test_amaqc_dicom_listen_on_a_port_in_use_is_a_one_line_error(settings: Settings) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        env = {**os.environ, "AMAQC_DATA_DIR": str(settings.data_dir)}
        command = [sys.executable, "-m", "app", "dicom-listen", "--port", str(port)]
        result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    assert f"cannot listen on 127.0.0.1:{port}: Address already in use" in result.stderr
