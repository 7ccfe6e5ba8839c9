"""The exception types ingest raises; the API turns them into ``{"detail": ...}``."""

from __future__ import annotations


class IngestError(Exception):
    """A rejected upload: HTTP ``status_code`` and a ``detail`` naming the problem."""

    def __init__(self, status_code: int, detail: str) -> None:
        super().__init__(detail)
        self.status_code = status_code
        self.detail = detail


class NonImageObject(IngestError):
    """A valid DICOM object that is not an image (SR, presentation state, key object, ...).

    A series upload skips it and says so per instance; alone, it is a 422.
    """

    def __init__(self, name: str, sop_class: str, sop_instance_uid: str | None) -> None:
        super().__init__(422, f"{name}: {sop_class} is not an image (no pixel data); skipped")
        self.name = name
        self.sop_class = sop_class
        self.sop_instance_uid = sop_instance_uid
