"""Turn the parts of a multipart upload into files in a private temporary folder.

Limits (bytes, files) are enforced while copying; a ZIP is expanded member by member with its
paths ignored (no ``..``, absolute paths or symlinks accepted, and no member can choose where
it lands) and a cap on the bytes it may expand to. Client file names are kept only for messages.
"""

from __future__ import annotations

import errno
import re
import shutil
import stat
import tempfile
import zipfile
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO, BinaryIO

from app.config import Settings

from . import limits
from .errors import IngestError
from .sniff import ACCEPTED, IMAGE_FORMATS, ZIP_MAGIC

_CHUNK = 1 << 20
_JUNK = frozenset({"dicomdir", "thumbs.db", "desktop.ini"})


@dataclass(frozen=True)
class IncomingFile:
    """One received file: ``name`` is the client's (for messages only), ``path`` is ours."""

    name: str
    path: Path
    #: the ZIP it was a member of (its name), None for a file sent as itself
    archive: str | None = None


@contextmanager
def private_workdir(settings: Settings) -> Iterator[Path]:
    """A fresh folder under ``<data_dir>/tmp`` for one upload, removed afterwards."""
    tmp_root = settings.data_dir / "tmp"
    tmp_root.mkdir(parents=True, exist_ok=True)
    workdir = Path(tempfile.mkdtemp(dir=tmp_root))
    try:
        yield workdir
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def display_name(raw: str | None, fallback: str) -> str:
    """A client file name safe for messages: base name, printable, at most 100 characters."""
    base = re.split(r"[\\/]", raw or "")[-1]
    base = "".join(c for c in base if c.isprintable())[:100]
    return base or fallback


def copy_limited(src: IO[bytes], dest: Path, budget: int, over: str) -> int:
    """Copy ``src`` to ``dest``; raise 413 with message ``over`` when more than ``budget``
    bytes come."""
    size = 0
    with dest.open("wb") as out:
        while chunk := src.read(_CHUNK):
            size += len(chunk)
            if size > budget:
                raise IngestError(413, over)
            out.write(chunk)
    return size


def receive(
    parts: list[tuple[str | None, BinaryIO]], workdir: Path, settings: Settings
) -> list[IncomingFile]:
    """Copy the parts (client name, stream) into ``workdir``; expand a single ZIP."""
    if not parts:
        raise IngestError(
            422, f"no files in the upload; expected {ACCEPTED} in the multipart field 'files'"
        )
    if len(parts) > settings.max_files:
        raise IngestError(413, limits.too_many_files("the upload", len(parts), settings))
    budget = settings.max_upload_bytes
    over = limits.upload_too_large(settings)
    files: list[IncomingFile] = []
    for index, (raw_name, stream) in enumerate(parts):
        name = display_name(raw_name, f"file {index + 1}")
        path = workdir / f"part{index}"
        budget -= copy_limited(stream, path, budget, over)
        if path.stat().st_size == 0:
            raise IngestError(422, f"{name}: found an empty file (0 bytes); expected {ACCEPTED}")
        files.append(IncomingFile(name, path))
    zips = [f for f in files if _is_zip(f.path)]
    if not zips:
        return files
    if len(files) > 1:
        raise IngestError(
            422,
            f"{zips[0].name}: found a ZIP beside {len(files) - 1} other file(s); expected one "
            "ZIP alone, or the files themselves without a ZIP",
        )
    return expand_zip(zips[0], workdir / "zip", settings)


def _is_zip(path: Path) -> bool:
    with path.open("rb") as fh:
        return fh.read(4) == ZIP_MAGIC


def _printable(path: str) -> str:
    """A member's whole path for a message (the problem may be in its folders)."""
    return "".join(c for c in path if c.isprintable())[:100]


def _member_problem(info: zipfile.ZipInfo) -> str | None:
    name = info.filename
    if name.startswith(("/", "\\")) or re.match(r"^[A-Za-z]:", name):
        return "has an absolute path"
    if ".." in re.split(r"[\\/]", name):
        return "has a '..' path component"
    if stat.S_ISLNK(info.external_attr >> 16):
        return "is a symbolic link"
    return None


def _skipped(info: zipfile.ZipInfo) -> bool:
    parts = [p for p in re.split(r"[\\/]", info.filename) if p]
    return (
        info.is_dir()
        or not parts
        or parts[0] == "__MACOSX"
        or any(p.startswith(".") for p in parts)
        or parts[-1].lower() in _JUNK
    )


def expand_zip(archive: IncomingFile, dest: Path, settings: Settings) -> list[IncomingFile]:
    """The image members of ``archive``, written as ``dest/member<i>`` (names not used)."""
    dest.mkdir()
    budget = settings.max_unzipped_bytes
    over = limits.unpacked_too_large(archive.name, settings)
    try:
        with zipfile.ZipFile(archive.path) as zf:
            infos = zf.infolist()
            for info in infos:  # check every member before unpacking any
                problem = _member_problem(info)
                if problem:
                    raise IngestError(
                        422,
                        f"{archive.name}: member {_printable(info.filename)!r} {problem}; "
                        "expected members with relative paths inside the archive",
                    )
            members = [i for i in infos if not _skipped(i)]
            if not members:
                raise IngestError(
                    422,
                    f"{archive.name}: found a ZIP without files (folders and hidden or system "
                    f"files do not count); expected {IMAGE_FORMATS} in it",
                )
            if len(members) > settings.max_files:
                raise IngestError(413, limits.too_many_files(archive.name, len(members), settings))
            if sum(i.file_size for i in members) > budget:
                raise IngestError(413, over)
            files = []
            for index, info in enumerate(members):
                name = f"{archive.name}/{display_name(info.filename, f'member {index + 1}')}"
                path = dest / f"member{index}"
                with zf.open(info) as src:  # sizes in the header may lie: count real bytes
                    budget -= copy_limited(src, path, budget, over)
                if _is_zip(path):
                    raise IngestError(
                        422,
                        f"{name}: found a ZIP inside the ZIP; expected {IMAGE_FORMATS} (unpack "
                        "the inner ZIP, or send it on its own)",
                    )
                files.append(IncomingFile(name, path, archive.name))
            return files
    except OSError as exc:
        # a member's offset before the start of the file (seek: EINVAL) is the archive's fault;
        # anything else comes from writing the member (the disk is full, permissions)
        if exc.errno not in (None, errno.EINVAL):
            raise
        raise _unreadable_zip(archive, exc) from None
    except (
        zipfile.BadZipFile,
        zipfile.LargeZipFile,
        EOFError,
        NotImplementedError,
        ValueError,  # a member name that is not the UTF-8 its flag says
        zlib.error,  # a damaged deflate stream
    ) as exc:
        raise _unreadable_zip(archive, exc) from None


def _unreadable_zip(archive: IncomingFile, exc: Exception) -> IngestError:
    """A damaged archive: a wrong CRC, a cut-off stream, an offset past the end (EINVAL)."""
    return IngestError(
        422,
        f"{archive.name}: found a ZIP signature but not a readable ZIP file ({exc}); "
        "expected a complete ZIP archive",
    )
