"""``amaqc up``'s worker children: an exited child is started again, a crash loop gives up."""

from __future__ import annotations

import os
import sys
import time

from app.supervise import Supervisor, worker_command


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
