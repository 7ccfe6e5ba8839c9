"""The worker's Celery app, configured from the settings (``amaqc worker`` runs it)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, ParamSpec, Protocol, TypeVar, cast

from app.config import get_settings
from app.queue import make_celery

celery_app = make_celery(get_settings().broker_url)
celery_app.conf.imports = ("app.worker.tasks",)
from . import heartbeat  # noqa: E402,F401 (connects the heartbeat to the worker's signals)

_P = ParamSpec("_P")
_R = TypeVar("_R", covariant=True)


class Task(Protocol[_P, _R]):
    """The part of a Celery task the code uses: called directly it runs in-process;
    ``apply_async`` enqueues it (Celery ships no type information, so mypy learns it here)."""

    def __call__(self, *args: _P.args, **kwargs: _P.kwargs) -> _R: ...

    def apply_async(self, args: tuple[Any, ...] | None = None, **options: Any) -> object: ...


def task(**options: Any) -> Callable[[Callable[_P, _R]], Task[_P, _R]]:
    """``celery_app.task(**options)`` with the decorated function's signature kept for mypy."""
    return cast("Callable[[Callable[_P, _R]], Task[_P, _R]]", celery_app.task(**options))
