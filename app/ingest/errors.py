"""The exception types ingest raises; the API turns them into ``{"detail": ...}``."""

from __future__ import annotations

import errno

#: the errno values of a write that found no room (ENOSPC: the disk is full; EDQUOT: a quota)
STORAGE_FULL = frozenset({errno.ENOSPC, errno.EDQUOT})


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


class StorageFull(IngestError):
    """The data dir had no room for the upload (507 Insufficient Storage); nothing of it was
    kept: no rows, no partial file."""

    def __init__(self) -> None:
        super().__init__(
            507,
            "the server's storage is full: nothing of this upload was stored; send it again "
            "once space is freed",
        )
