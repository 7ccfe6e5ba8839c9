"""What the code under test says to the database."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import Engine, event


@contextmanager
def statements_sent(engine: Engine) -> Iterator[list[str]]:
    """The SQL statements ``engine`` sends inside the ``with`` block, in order."""
    sent: list[str] = []

    def note(_conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        sent.append(statement)

    event.listen(engine, "before_cursor_execute", note)
    try:
        yield sent
    finally:
        event.remove(engine, "before_cursor_execute", note)


def count_starting(statements: list[str], prefix: str) -> int:
    """How many of ``statements`` begin with ``prefix`` (case and leading space ignored), e.g.
    ``"INSERT INTO instance "``."""
    return sum(s.lstrip().upper().startswith(prefix.upper()) for s in statements)
