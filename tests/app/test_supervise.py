"""``amaqc up``'s worker children: an exited child is started again, a crash loop gives up."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from app.supervise import Supervisor, worker_command
from tests.utils.ports import free_port


def _sleeper(name: str) -> list[str]:
    return [sys.executable, "-c", "import time; time.sleep(60)"]


def _crasher(name: str) -> list[str]:
    return [sys.executable, "-c", "raise SystemExit(3)"]


def _wait_exit(sup: Supervisor, name: str) -> None:
    deadline = time.monotonic() + 30
    while sup.procs[name].poll() is None:
        assert time.monotonic() < deadline, "child did not exit"
        time.sleep(0.05)


def test_a_killed_child_is_started_again_on_its_own_name() -> None:
    messages: list[str] = []
    sup = Supervisor(
        ["inference", "training"],
        dict(os.environ),
        command=_sleeper,
        poll_seconds=3600,
        report=messages.append,
    )
    sup.start()
    try:
        first = sup.procs["inference"]
        other = sup.procs["training"]
        first.kill()
        first.wait()
        sup.check()
        assert sup.procs["inference"] is not first and sup.procs["inference"].poll() is None
        assert sup.procs["training"] is other  # the healthy one is left alone
        assert sup.restarts == {"inference": 1, "training": 0}
        assert messages == ["inference worker exited (-9); starting it again"]
    finally:
        sup.stop(timeout=5)
    assert all(p.poll() is not None for p in sup.procs.values())


def test_the_exit_hook_hears_of_a_dead_child_before_it_is_started_again() -> None:
    """``amaqc up`` enqueues again at once the series the dead child held (by its pid)."""
    exits: list[tuple[str, int, bool]] = []
    sup = Supervisor(["inference"], dict(os.environ), command=_sleeper, poll_seconds=3600)
    sup.on_exit = lambda name, pid: exits.append((name, pid, sup.procs[name].pid == pid))
    sup.start()
    try:
        first = sup.procs["inference"]
        sup.check()
        assert exits == []  # alive: nothing to hear
        first.kill()
        first.wait()
        sup.check()
        sup.check()
        assert exits == [("inference", first.pid, True)]  # once, while it was still the child
        assert sup.procs["inference"] is not first
    finally:
        sup.stop(timeout=5)


def test_a_child_that_keeps_crashing_is_given_up_on() -> None:
    messages: list[str] = []
    sup = Supervisor(
        ["inference"],
        dict(os.environ),
        command=_crasher,
        max_restarts=2,
        poll_seconds=3600,
        report=messages.append,
    )
    sup.start()
    try:
        for _ in range(4):
            _wait_exit(sup, "inference")
            sup.check()
        assert sup.restarts["inference"] == 2
        assert messages[-1].startswith("inference worker exited (3) 3 times; not starting")
        assert len(messages) == 3  # two restarts, one give-up, nothing after
    finally:
        sup.stop(timeout=5)


def test_the_default_command_runs_an_amaqc_worker_on_the_queue() -> None:
    assert worker_command("training")[-4:] == ["app", "worker", "--queues", "training"]


def _stat(pid: int | str) -> tuple[str, int] | None:
    """(state, parent pid) of a process from /proc, None when it is gone."""
    try:
        stat = open(f"/proc/{pid}/stat").read()  # noqa: SIM115
    except OSError:
        return None
    fields = stat.rsplit(")", 1)[1].split()  # the name in parentheses may hold spaces
    return fields[0], int(fields[1])


def _children(pid: int) -> set[int]:
    """Live processes whose parent is ``pid`` (Linux /proc)."""
    stats = {int(entry): _stat(entry) for entry in os.listdir("/proc") if entry.isdigit()}
    return {
        child for child, st in stats.items() if st is not None and st[0] != "Z" and st[1] == pid
    }


def _alive(pid: int) -> bool:
    st = _stat(pid)
    return st is not None and st[0] != "Z"


def _wait(condition: Callable[[], bool], what: str, seconds: float = 60) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, what
        time.sleep(0.2)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL])
def test_amaqc_up_leaves_no_worker_behind(
    sig: signal.Signals, tmp_path: Path, checkpoint: Path
) -> None:
    """SIGTERM (systemd, kill): up stops its workers itself; SIGKILL: the kernel stops them."""
    port = free_port()
    env = {**os.environ, "AMAQC_CHECKPOINT": str(checkpoint)}
    up = subprocess.Popen(
        [sys.executable, "-m", "app", "up", "--data-dir", str(tmp_path), "--port", str(port)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    workers: set[int] = set()
    try:
        _wait(lambda: len(_children(up.pid)) == 2, "up did not start its two workers")
        workers = _children(up.pid)
        time.sleep(1)  # past the workers' start
        up.send_signal(sig)
        up.wait(timeout=60)
        _wait(lambda: not any(_alive(w) for w in workers), f"workers outlived up ({sig.name})")
    finally:
        up.kill()
        up.wait()
        for w in workers:
            if _alive(w):
                os.kill(w, signal.SIGKILL)
