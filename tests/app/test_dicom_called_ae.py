"""``AMAQC_DICOM_AE_TITLE_STRICT``: the listener rejects an association addressed to another
AE title (pynetdicom's SCU, as a scanner sends); by default any called AE title is accepted."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest
from pynetdicom import AE
from pynetdicom.sop_class import MRImageStorage, Verification  # type: ignore[attr-defined]

from app.config import Settings
from app.dicom_listener import DicomListener
from tests.utils.ports import free_port


def _associate(listener: DicomListener, called: str) -> tuple[bool, int | None]:
    """(established, the rejection's reason code) of an association from MR1 to ``called``."""
    scu = AE(ae_title="MR1")
    scu.add_requested_context(Verification)
    scu.add_requested_context(MRImageStorage)
    assoc = scu.associate("127.0.0.1", listener.port, ae_title=called)
    established, reason = assoc.is_established, None
    if assoc.is_rejected:
        reason = int(assoc.acceptor.primitive.diagnostic)
    elif established:
        assert assoc.send_c_echo().Status == 0x0000
        assoc.release()
    return established, reason


@pytest.mark.parametrize("strict", [False, True])
def test_the_called_ae_title_is_enforced_only_when_strict(settings: Settings, strict: bool) -> None:
    strict_settings = settings.model_copy(update={"dicom_ae_title_strict": strict})
    with DicomListener(strict_settings, host="127.0.0.1", port=0, ae_title="QC") as listener:
        assert _associate(listener, "QC") == (True, None)
        wrong = _associate(listener, "SOMEONE_ELSE")
    # 7: called AE title not recognised (PS3.8 Table 9-21, service-user reasons)
    assert wrong == ((False, 7) if strict else (True, None))


def test_the_setting_is_read_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AMAQC_DICOM_AE_TITLE_STRICT", "true")
    assert Settings().dicom_ae_title_strict is True
    monkeypatch.delenv("AMAQC_DICOM_AE_TITLE_STRICT")
    assert Settings().dicom_ae_title_strict is False


def test_amaqc_dicom_listen_enforces_it_from_the_environment(settings: Settings) -> None:
    port = free_port()
    env = {
        **os.environ,
        "AMAQC_DATA_DIR": str(settings.data_dir),
        "AMAQC_DICOM_AE_TITLE_STRICT": "true",
    }
    command = [sys.executable, "-m", "app", "dicom-listen", "--port", str(port), "--ae-title", "QC"]
    proc = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        scu = AE(ae_title="MR1")
        scu.add_requested_context(Verification)
        deadline = time.monotonic() + 60
        while True:  # until the listener is up
            right = scu.associate("127.0.0.1", port, ae_title="QC")
            if right.is_established or time.monotonic() > deadline or proc.poll() is not None:
                break
            time.sleep(0.2)
        assert right.is_established, proc.stdout.read().decode() if proc.stdout else ""
        right.release()
        wrong = scu.associate("127.0.0.1", port, ae_title="AMAQC")
        assert wrong.is_rejected and not wrong.is_established
    finally:
        proc.send_signal(signal.SIGTERM)
        output = proc.communicate(timeout=30)[0].decode()
    assert "called AE title enforced" in output, output
