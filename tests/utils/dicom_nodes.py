"""Real DICOM receivers for the PACS tests: DCMTK's ``storescp`` and Debian's Orthanc, each
started on free ports of 127.0.0.1 with its own folders (no system service, no network).

``make dicom-tools`` installs both (``make test`` runs it); a test that needs one skips, saying
so, where it is not installed.
"""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pydicom
import pytest

from app.supervise import die_with_parent
from tests.utils.ports import free_port

ORTHANC = shutil.which("Orthanc") or "/usr/sbin/Orthanc"


def need(program: str) -> str:
    """The path of a DCMTK / Orthanc program, or skip the test saying how to install it."""
    path = shutil.which(program) or (ORTHANC if program == "Orthanc" else None)
    if path is None or not Path(path).exists():
        pytest.skip(f"{program} is not installed (make dicom-tools installs dcmtk and orthanc)")
    return path


def _stop(proc: subprocess.Popen[bytes]) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=15)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def _wait_port(port: int, proc: subprocess.Popen[bytes], timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"the receiver exited with {proc.returncode} before listening")
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.1)
    raise RuntimeError(f"nothing listens on 127.0.0.1:{port} after {timeout} s")


@dataclass
class Storescp:
    """A running ``storescp``: AE title, port and the folder it writes each object to."""

    ae_title: str
    port: int
    out: Path

    @property
    def destination(self) -> str:
        return f"{self.ae_title}@127.0.0.1:{self.port}"

    def received(self) -> list[pydicom.Dataset]:
        return [pydicom.dcmread(p) for p in sorted(self.out.iterdir()) if p.is_file()]

    def wait(self, n: int, timeout: float = 60) -> list[pydicom.Dataset]:
        """The received objects once there are at least ``n`` (fails after ``timeout``)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if len(list(self.out.iterdir())) >= n:
                time.sleep(0.3)  # the last file may still be written
                return self.received()
            time.sleep(0.2)
        raise AssertionError(f"storescp got {len(self.received())} object(s), expected {n}")


@contextmanager
def storescp(out: Path, port: int | None = None, ae_title: str = "STORESCP") -> Iterator[Storescp]:
    """DCMTK's storage SCP on 127.0.0.1 (``port``: a given one, else a free one), one file
    per received object under ``out``."""
    program = need("storescp")
    out.mkdir(parents=True, exist_ok=True)
    port = port or free_port()
    log = (out.parent / f"storescp-{port}.log").open("ab")
    proc = subprocess.Popen(
        [program, "-aet", ae_title, "-od", str(out), "-ta", "10", "-ts", "10", str(port)],
        stdout=log,
        stderr=log,
        preexec_fn=die_with_parent,
    )
    try:
        _wait_port(port, proc)
        yield Storescp(ae_title, port, out)
    finally:
        _stop(proc)
        log.close()


@dataclass
class Orthanc:
    """A running Orthanc: its DICOM AE title and port, and its REST API's URL."""

    ae_title: str
    dicom_port: int
    url: str

    @property
    def destination(self) -> str:
        return f"{self.ae_title}@127.0.0.1:{self.dicom_port}"

    def get(self, path: str) -> Any:
        with urllib.request.urlopen(self.url + path, timeout=10) as reply:
            return json.loads(reply.read())

    def instances(self) -> list[dict[str, Any]]:
        """Every stored instance's tags (``/instances/{id}/simplified-tags``)."""
        return [self.get(f"/instances/{i}/simplified-tags") for i in self.get("/instances")]

    def wait(self, n: int, timeout: float = 60) -> list[dict[str, Any]]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if len(self.get("/instances")) >= n:
                return self.instances()
            time.sleep(0.2)
        raise AssertionError(f"Orthanc has {len(self.get('/instances'))} instance(s), expected {n}")


@contextmanager
def orthanc(folder: Path, ae_title: str = "ORTHANC") -> Iterator[Orthanc]:
    """Debian's Orthanc with a configuration of its own: storage under ``folder``, HTTP and
    DICOM on free ports of 127.0.0.1, no authentication, no plugins."""
    program = need("Orthanc")
    folder.mkdir(parents=True, exist_ok=True)
    http_port, dicom_port = free_port(), free_port()
    config = {
        "Name": "amaqc-test",
        "StorageDirectory": str(folder / "storage"),
        "IndexDirectory": str(folder / "index"),
        "HttpPort": http_port,
        "DicomPort": dicom_port,
        "DicomAet": ae_title,
        "RemoteAccessAllowed": False,
        "AuthenticationEnabled": False,
        "DicomCheckCalledAet": True,
        "DicomAlwaysAllowStore": True,
        "Plugins": [],
        "HttpsCACertificates": "",
    }
    path = folder / "orthanc.json"
    path.write_text(json.dumps(config, indent=2))
    log = (folder / "orthanc.log").open("ab")
    proc = subprocess.Popen(
        [program, "--logdir=" + str(folder), str(path)],
        stdout=log,
        stderr=log,
        preexec_fn=die_with_parent,
    )
    try:
        _wait_port(http_port, proc, timeout=60)
        _wait_port(dicom_port, proc, timeout=30)
        yield Orthanc(ae_title, dicom_port, f"http://127.0.0.1:{http_port}")
    finally:
        _stop(proc)
        log.close()
