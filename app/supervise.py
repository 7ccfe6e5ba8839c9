"""The child processes of ``amaqc up``: one Celery worker per queue, started again when one
exits (a crash, the OOM killer), at most ``max_restarts`` times each, so a worker that cannot
start does not spin forever. Torch-free: it only starts processes."""

from __future__ import annotations

import logging
import signal
import subprocess
import sys
import threading
from collections.abc import Callable

logger = logging.getLogger(__name__)


def worker_command(queue: str) -> list[str]:
    return [sys.executable, "-m", "app", "worker", "--queues", queue]


def die_with_parent() -> None:
    """``preexec_fn`` of a child (Linux): the kernel sends it SIGTERM when the thread that
    started it exits, so a parent killed outright (SIGKILL, the OOM killer) leaves no worker
    behind consuming jobs. Elsewhere a no-op."""
    if sys.platform.startswith("linux"):
        import ctypes

        pr_set_pdeathsig = 1
        ctypes.CDLL(None, use_errno=True).prctl(pr_set_pdeathsig, signal.SIGTERM)


class Supervisor:
    """Starts ``command(name)`` for every name and restarts a child that exits.

    Args:
        names: one child per name (the queue it consumes, for ``amaqc up``).
        env: the children's environment.
        command: the argv of a child from its name.
        max_restarts: restarts per child before giving up on it (logged as an error).
        poll_seconds: how often the children are checked.
        report: where a restart / give-up message goes (``amaqc up`` prints it).
        on_exit: called with a child's name and process id once it is seen exited, before it
            is started again (``amaqc up`` enqueues again at once the series it held); an
            exception there is logged and changes nothing else.
    """

    def __init__(
        self,
        names: list[str],
        env: dict[str, str],
        *,
        command: Callable[[str], list[str]] = worker_command,
        max_restarts: int = 5,
        poll_seconds: float = 2.0,
        report: Callable[[str], None] = logger.warning,
        on_exit: Callable[[str, int], None] | None = None,
    ) -> None:
        self.names, self.env, self.command = names, env, command
        self.on_exit = on_exit
        self.max_restarts, self.poll_seconds, self.report = max_restarts, poll_seconds, report
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        self.restarts = dict.fromkeys(names, 0)
        self._gave_up: set[str] = set()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, name="amaqc-children", daemon=True)

    def _spawn(self, name: str) -> None:
        self.procs[name] = subprocess.Popen(
            self.command(name), env=self.env, preexec_fn=die_with_parent
        )

    def start(self) -> None:
        with self._lock:
            for name in self.names:
                self._spawn(name)
        self._thread.start()

    def check(self) -> None:
        """One look at the children: start again each one that exited."""
        with self._lock:
            for name, proc in list(self.procs.items()):
                if proc.poll() is None or self._stop.is_set() or name in self._gave_up:
                    continue
                self._exited(name, proc.pid)
                if self.restarts[name] >= self.max_restarts:
                    self._gave_up.add(name)
                    self.report(
                        f"{name} worker exited ({proc.returncode}) {self.max_restarts + 1} times;"
                        " not starting it again (see its log above)"
                    )
                    continue
                self.restarts[name] += 1
                self.report(f"{name} worker exited ({proc.returncode}); starting it again")
                self._spawn(name)

    def _exited(self, name: str, pid: int) -> None:
        if self.on_exit is None:
            return
        try:
            self.on_exit(name, pid)
        except Exception:
            logger.exception("%s worker exited: the exit hook failed", name)

    def _watch(self) -> None:
        while not self._stop.wait(self.poll_seconds):
            self.check()

    def stop(self, timeout: float = 15.0) -> None:
        """SIGTERM every child (Celery's warm shutdown), SIGKILL after ``timeout`` seconds."""
        self._stop.set()
        with self._lock:
            procs = list(self.procs.values())
        for proc in procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in procs:
            try:
                proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
