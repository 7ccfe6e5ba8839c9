"""What a file is (from its bytes, never its name) and how files group into series.

A DICOM file belongs to the series of its SeriesInstanceUID. Files the API takes without a
series UID get one the client makes: the PNG / JPEG slices of one folder are one series, a
NIfTI volume is a series of its own, a ZIP is sent as it is (the API unpacks it). A made UID
(``2.25.<int>``) is the same every time the same files are sent, so a series
sent again lands in the same server series, whose instances the server does not duplicate
(``send``: from the files' SHA-256s; ``watch``: chosen once and kept in its spool).
"""

from __future__ import annotations

import hashlib
import os
import warnings
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

#: file kinds the API accepts, by their first bytes (DICOM is "DICM" at byte 128)
KINDS = ("dicom", "png", "jpeg", "nifti", "zip")
_EXTENSIONS = {"dicom": ".dcm", "png": ".png", "jpeg": ".jpg", "nifti": ".nii", "zip": ".zip"}
_MEDIA = {
    "dicom": "application/dicom",
    "png": "image/png",
    "jpeg": "image/jpeg",
    "nifti": "application/octet-stream",
    "zip": "application/zip",
}
ACCEPTED = "DICOM, PNG, JPEG, NIfTI or ZIP"


class UnreadableFile(Exception):
    """A file that could not be read (missing, no permission, a DICOM header that does not
    parse); ``reason`` says why without naming the file."""

    def __init__(self, path: Path, reason: str) -> None:
        super().__init__(f"{path}: {reason}")
        self.path = path
        self.reason = reason


@dataclass(frozen=True)
class FileInfo:
    """One image file: its kind, and for DICOM the series it belongs to."""

    path: Path
    kind: str
    series_uid: str | None = None
    description: str | None = None
    number: int | None = None


@dataclass
class SeriesGroup:
    """The files of one series as they will be posted together (``series_uid`` is None when
    the server should read it from the DICOM files)."""

    key: str
    label: str
    kind: str
    files: list[Path] = field(default_factory=list)
    #: the folder (PNG / JPEG) or file (NIfTI, ZIP) a series without a DICOM UID comes from
    where: Path | None = None
    series_uid: str | None = None


def made_uid(key: str) -> str:
    """A DICOM UID for a series that has none: ``2.25.`` + 128 bits of SHA-256(key)."""
    return f"2.25.{int(hashlib.sha256(key.encode()).hexdigest()[:32], 16)}"


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _kind_of_head(head: bytes) -> str | None:
    if len(head) >= 132 and head[128:132] == b"DICM":
        return "dicom"
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return "png"
    if head.startswith(b"\xff\xd8\xff"):
        return "jpeg"
    if head.startswith(b"PK\x03\x04"):
        return "zip"
    if head.startswith(b"\x1f\x8b"):  # gzip: a .nii.gz (the server checks what is inside)
        return "nifti"
    if head[344:348] in (b"n+1\x00", b"ni1\x00") or head[4:8] == b"n+2\x00":
        return "nifti"
    return None


def classify(path: Path) -> FileInfo | None:
    """The kind of ``path`` and, for DICOM, its series; None for a file of another kind.

    Raises:
        UnreadableFile: the file cannot be opened or read.
    """
    try:
        with path.open("rb") as fh:
            head = fh.read(540)
    except OSError as exc:
        raise UnreadableFile(path, f"cannot read it ({exc.strerror or exc})") from None
    kind = _kind_of_head(head)
    if kind != "dicom":
        return FileInfo(path, kind) if kind else None
    import pydicom
    from pydicom.errors import InvalidDicomError

    tags = ["SOPInstanceUID", "SeriesInstanceUID", "SeriesDescription", "SeriesNumber"]
    try:
        with warnings.catch_warnings():  # pydicom warns on what it then fails on, or reads
            warnings.simplefilter("ignore")
            ds = pydicom.dcmread(path, stop_before_pixels=True, specific_tags=tags)
    except (InvalidDicomError, ValueError, EOFError, OSError) as exc:
        raise UnreadableFile(path, f"a DICOM file whose header does not parse ({exc})") from None
    if not ds.get("SOPInstanceUID"):  # pydicom reads garbage after "DICM" as an empty dataset
        raise UnreadableFile(
            path, "a DICOM file whose header does not parse (no SOP Instance UID: truncated?)"
        )
    number = ds.get("SeriesNumber")
    return FileInfo(
        path,
        "dicom",
        series_uid=str(ds.get("SeriesInstanceUID", "") or "") or None,
        description=str(ds.get("SeriesDescription", "") or "") or None,
        number=int(number) if number not in (None, "") else None,
    )


def walk(paths: Iterable[Path]) -> Iterator[Path]:
    """Every file under ``paths`` (files as given, folders recursively, sorted), skipping
    hidden files and DICOMDIR indexes."""
    for path in paths:
        if not path.is_dir():
            yield path
            continue
        for root, dirs, names in os.walk(path):
            dirs[:] = sorted(d for d in dirs if not d.startswith("."))
            for name in sorted(names):
                if not name.startswith(".") and name.upper() != "DICOMDIR":
                    yield Path(root) / name


def label(info: FileInfo) -> str:
    """How a series is named in output and logs: its SeriesDescription and SeriesNumber
    (``T1 axial #3``), else the kind (``PNG``, ``NIfTI``); never a path."""
    if info.kind != "dicom":
        return {"nifti": "NIfTI", "jpeg": "JPEG"}.get(info.kind, info.kind.upper())
    number = f"#{info.number}" if info.number is not None else ""
    return " ".join(w for w in (info.description or "DICOM", number) if w)


def group_key(info: FileInfo, base: Path | None = None) -> str:
    """The series a file belongs to: ``dicom:<uid>``, ``dir:<folder>`` (PNG / JPEG) or
    ``file:<path>`` (NIfTI, ZIP, a DICOM file without a series UID); paths relative to
    ``base`` when given."""
    if info.kind == "dicom" and info.series_uid:
        return f"dicom:{info.series_uid}"
    where = info.path.resolve()
    if base is not None:
        where = where.relative_to(base.resolve())
    if info.kind in ("png", "jpeg"):
        return f"dir:{where.parent.as_posix()}"
    return f"file:{where.as_posix()}"


def group(infos: Iterable[FileInfo], base: Path | None = None) -> list[SeriesGroup]:
    """Files grouped into series, in the order their first file came."""
    groups: dict[str, SeriesGroup] = {}
    for info in infos:
        key = group_key(info, base)
        found = groups.get(key)
        if found is None:
            where = None if key.startswith("dicom:") else info.path
            if info.kind in ("png", "jpeg"):
                where = info.path.parent
            found = groups[key] = SeriesGroup(key, label(info), info.kind, where=where)
        found.files.append(info.path)
    for g in groups.values():
        # the same files make the same series again; a ZIP goes without one (the server reads
        # the UIDs of the DICOM files inside)
        if g.kind != "zip" and not g.key.startswith("dicom:"):
            g.series_uid = made_uid("\n".join(sorted(sha256_of(p) for p in g.files)))
    return list(groups.values())


#: what one upload holds at most: well inside the server's defaults (AMAQC_MAX_FILES 2000,
#: AMAQC_MAX_UPLOAD_MB 512); a bigger series goes in several uploads to the same series
BATCH_FILES = 500
BATCH_BYTES = 200 * 1024 * 1024


def batches(
    files: list[Path],
    sizes: dict[Path, int],
    *,
    max_files: int = BATCH_FILES,
    max_bytes: int = BATCH_BYTES,
) -> list[list[Path]]:
    """``files`` cut into uploads of at most ``max_files`` files and ``max_bytes`` bytes (a
    single bigger file is an upload of its own), in order."""
    out: list[list[Path]] = []
    current: list[Path] = []
    size = 0
    for path in files:
        if current and (len(current) >= max_files or size + sizes[path] > max_bytes):
            out.append(current)
            current, size = [], 0
        current.append(path)
        size += sizes[path]
    return [*out, current] if current else out


def media_type(kind: str | None) -> str:
    """The content type a file of ``kind`` is posted with."""
    return _MEDIA.get(kind or "", "application/octet-stream")


def upload_name(path: Path, kind: str | None = None) -> str:
    """The name a file is posted under: its own, with the extension of its kind when it has
    none (the server decides by the bytes anyway)."""
    if path.suffix or kind is None:
        return path.name
    return path.name + _EXTENSIONS[kind]
