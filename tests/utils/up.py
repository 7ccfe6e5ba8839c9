"""``amaqc up`` as users start it, in a subprocess on a free loopback port: for the load and
fault tests that need the whole embedded service (API, sweeper, supervised workers)."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from contextlib import suppress
from dataclasses import dataclass
from pathlib import Path

import httpx

from tests.utils.ports import free_port


@dataclass
class Up:
    proc: subprocess.Popen[bytes]
    url: str
    log: Path
    data_dir: Path

    @property
    def database_url(self) -> str:
        return f"sqlite:///{self.data_dir.resolve() / 'amaqc.db'}"

    def output(self) -> str:
        return self.log.read_text(errors="replace")


def start_up(data_dir: Path, checkpoint: Path, env: dict[str, str] | None = None) -> Up:
    """Start ``amaqc up --data-dir data_dir`` (its output appended to ``<data_dir>.log``)."""
    port = free_port()
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("AMAQC_")}
    full_env.update(env or {}, AMAQC_CHECKPOINT=str(checkpoint))
    log = data_dir.parent / f"{data_dir.name}.log"
    cmd = [sys.executable, "-m", "app", "up", "--host", "127.0.0.1", "--port", str(port)]
    with log.open("ab") as out:
        proc = subprocess.Popen(
            [*cmd, "--data-dir", str(data_dir)],
            env=full_env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group: up and its workers
        )
    return Up(proc, f"http://127.0.0.1:{port}", log, data_dir)


def wait_ready(up: Up, timeout: float = 180) -> str | None:
    """Block until ``/readyz`` answers 200; the admin key printed on a first start, else None."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if up.proc.poll() is not None:
            raise RuntimeError(f"amaqc up exited with {up.proc.returncode}:\n{up.output()[-3000:]}")
        with suppress(httpx.HTTPError):
            if httpx.get(f"{up.url}/readyz", timeout=5).status_code == 200:
                found = re.search(r"^(amaqc_\S+)$", up.output(), re.MULTILINE)
                return found.group(1) if found else None
        time.sleep(0.3)
    raise RuntimeError(f"amaqc up not ready within {timeout} s:\n{up.output()[-3000:]}")


def stop_up(up: Up, sig: int = signal.SIGTERM, timeout: float = 60) -> int | None:
    """Send ``sig``; wait ``timeout`` s for ``amaqc up`` to exit (its return code), then kill
    what is left of its process group (None: it had to be killed)."""
    if up.proc.poll() is None:
        up.proc.send_signal(sig)
    try:
        return up.proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        return None
    finally:
        with suppress(ProcessLookupError):
            os.killpg(up.proc.pid, signal.SIGKILL)
        up.proc.wait()
