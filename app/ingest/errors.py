"""The one exception type ingest raises; the API turns it into ``{"detail": ...}``."""

from __future__ import annotations


class IngestError(Exception):
    """A rejected upload: HTTP ``status_code`` and a ``detail`` naming the problem."""

    def __init__(self, status_code: int, detail: str) -> None:
        super().__init__(detail)
        self.status_code = status_code
        self.detail = detail
