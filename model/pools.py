"""Thread pools that belong to one process.

A Celery prefork child inherits its parent's executor objects but not their threads: a pool made
before the fork would take work in the child and never run it. :class:`ProcessLocalPool` makes
its executor on first use and again in any process that did not make it (its pid differs), and a
fork resets its lock (another thread may have held it at the fork).
"""

from __future__ import annotations

import os
import threading
import weakref
from concurrent.futures import ThreadPoolExecutor

__all__ = ["ProcessLocalPool"]


class ProcessLocalPool:
    """A :class:`ThreadPoolExecutor` of ``workers`` threads named ``name``-N, this process's
    own (see module)."""

    def __init__(self, workers: int, name: str) -> None:
        if workers < 1:
            raise ValueError(f"workers must be >= 1, got {workers}")
        self.workers, self.name = workers, name
        self._executor: ThreadPoolExecutor | None = None
        self._pid: int | None = None
        self._lock = threading.Lock()
        _POOLS.add(self)

    def get(self) -> ThreadPoolExecutor:
        with self._lock:
            if self._executor is None or self._pid != os.getpid():
                self._executor = ThreadPoolExecutor(self.workers, thread_name_prefix=self.name)
                self._pid = os.getpid()
            return self._executor


_POOLS: weakref.WeakSet[ProcessLocalPool] = weakref.WeakSet()


def _after_fork_in_child() -> None:
    for pool in list(_POOLS):
        pool._lock = threading.Lock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)
