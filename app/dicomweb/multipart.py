"""Read a ``multipart/related`` request body into one file per part, as the bytes arrive.

Memory stays flat whatever the body size: each part's bytes go straight to its own file, and
the upload limit (``AMAQC_MAX_UPLOAD_MB``, with the same allowance for multipart framing as the
Content-Length check in ``app.api.main``) and the part limit (``AMAQC_MAX_FILES``) are enforced
while reading, so a chunked body without a Content-Length is cut off too.

Delimiters follow RFC 2046 section 5.1.1: a part ends at CRLF ``--boundary``; the first
delimiter may open the body without the CRLF; transport padding may follow a delimiter; a close
delimiter (``--boundary--``) ends the body and the epilogue is ignored.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from dataclasses import dataclass
from email import policy
from email.message import Message
from email.parser import BytesHeaderParser
from email.utils import collapse_rfc2231_value
from pathlib import Path
from typing import BinaryIO

from app.config import Settings
from app.ingest.errors import IngestError
from app.ingest.limits import upload_too_large

DICOM = "application/dicom"
MAX_HEADER_BYTES = 16 * 1024  # the headers of one part
# RFC 2046 allows 1-70 of a small character set; accept any printable ASCII, as servers do
_BOUNDARY = re.compile(r"[\x21-\x7e][\x20-\x7e]{0,199}")


@dataclass(frozen=True)
class RelatedType:
    """A parsed ``multipart/related`` Content-Type: its boundary and root ``type``."""

    boundary: str
    root_type: str


@dataclass(frozen=True)
class Part:
    """One received part: its 1-based position, its media type and the file holding its bytes."""

    index: int
    content_type: str
    path: Path


def _param(message: Message, name: str) -> str | None:
    value = message.get_param(name, header="content-type")
    if value is None or isinstance(value, str):
        return value
    return collapse_rfc2231_value(value)  # an RFC 2231 encoded parameter


def parse_content_type(header: str) -> RelatedType:
    """Check a STOW-RS Content-Type; 415 unless multipart/related of application/dicom parts,
    400 when its boundary is missing or malformed. The boundary may be quoted or not."""
    media_type = header.split(";", 1)[0].strip().lower()
    if media_type != "multipart/related":
        raise IngestError(
            415,
            f'expected multipart/related; type="{DICOM}", got content type {media_type or "none"}',
        )
    message = Message()
    message["content-type"] = header
    root_type = (_param(message, "type") or DICOM).strip().lower()
    if root_type != DICOM:
        raise IngestError(
            415, f"multipart/related type {root_type!r} is not supported; send type={DICOM!r}"
        )
    boundary = _param(message, "boundary")
    if not boundary:
        raise IngestError(400, "the multipart/related content type has no boundary parameter")
    if not _BOUNDARY.fullmatch(boundary):
        raise IngestError(
            400, f"boundary {boundary[:80]!r} is not 1-200 printable ASCII characters"
        )
    return RelatedType(boundary, root_type)


class PartWriter:
    """A push parser: :meth:`feed` it body chunks, then :meth:`finish` for the parts."""

    def __init__(self, related: RelatedType, workdir: Path, max_parts: int) -> None:
        self.delimiter = b"\r\n--" + related.boundary.encode("ascii")
        self.root_type = related.root_type
        self.workdir = workdir
        self.max_parts = max_parts
        self.parts: list[Part] = []
        # a leading CRLF lets the first delimiter open the body without one of its own
        self.buffer = bytearray(b"\r\n")
        self.state = "preamble"  # -> delimiter -> headers -> body -> delimiter ... -> end
        self.out: BinaryIO | None = None

    def feed(self, chunk: bytes) -> None:
        self.buffer += chunk
        while self._step():
            pass

    def close(self) -> None:
        if self.out is not None:
            self.out.close()
            self.out = None

    def finish(self) -> list[Part]:
        """The parts, once the whole body was fed; 400 when it is not a complete multipart body."""
        self.close()
        if self.state == "preamble":
            raise IngestError(400, "no multipart boundary found in the body")
        if self.state != "end":
            raise IngestError(
                400, "the multipart body ends before its closing boundary (truncated upload?)"
            )
        if not self.parts:
            raise IngestError(400, "the multipart body has no parts")
        return self.parts

    def _step(self) -> bool:
        """Consume what the buffer allows in the current state; True when it made progress."""
        buf = self.buffer
        if self.state == "preamble":
            at = buf.find(self.delimiter)
            if at < 0:
                del buf[: max(0, len(buf) - len(self.delimiter))]
                return False
            del buf[: at + len(self.delimiter)]
            self.state = "delimiter"
            return True
        if self.state == "delimiter":
            return self._after_delimiter()
        if self.state == "headers":
            return self._headers()
        if self.state == "body":
            return self._body()
        buf.clear()  # the epilogue
        return False

    def _after_delimiter(self) -> bool:
        buf = self.buffer
        if len(buf) < 2:
            return False
        if buf.startswith(b"--"):
            self.state = "end"
            return True
        eol = buf.find(b"\r\n")
        if eol < 0:
            if len(buf) > 1024:
                raise IngestError(400, "a multipart boundary line does not end with CRLF")
            return False
        if buf[:eol].strip(b" \t"):
            raise IngestError(400, "unexpected bytes after a multipart boundary")
        del buf[: eol + 2]
        self.state = "headers"
        return True

    def _headers(self) -> bool:
        buf = self.buffer
        if buf.startswith(b"\r\n"):  # a part without headers
            raw, end = b"", 2
        else:
            at = buf.find(b"\r\n\r\n")
            if at < 0:
                if len(buf) > MAX_HEADER_BYTES:
                    raise IngestError(
                        400, f"the headers of part {len(self.parts) + 1} exceed {MAX_HEADER_BYTES}"
                    )
                return False
            raw, end = bytes(buf[: at + 2]), at + 4
        del buf[:end]
        headers = BytesHeaderParser(policy=policy.HTTP).parsebytes(raw)
        content_type = headers.get_content_type() if "content-type" in headers else self.root_type
        if len(self.parts) >= self.max_parts:
            raise IngestError(
                413,
                f"part {len(self.parts) + 1}: more than {self.max_parts} parts, over the limit "
                f"AMAQC_MAX_FILES={self.max_parts}; raise AMAQC_MAX_FILES to accept more",
            )
        part = Part(len(self.parts) + 1, content_type, self.workdir / f"part{len(self.parts)}")
        self.parts.append(part)
        self.out = part.path.open("wb")
        self.state = "body"
        return True

    def _body(self) -> bool:
        buf, out = self.buffer, self.out
        assert out is not None
        at = buf.find(self.delimiter)
        if at < 0:
            keep = len(self.delimiter) - 1  # a delimiter may straddle two chunks
            if len(buf) > keep:
                out.write(buf[: len(buf) - keep])
                del buf[: len(buf) - keep]
            return False
        out.write(buf[:at])
        out.close()
        self.out = None
        del buf[: at + len(self.delimiter)]
        self.state = "delimiter"
        return True


async def receive_parts(
    chunks: AsyncIterator[bytes], related: RelatedType, workdir: Path, settings: Settings
) -> list[Part]:
    """Write each part of the streamed body to ``workdir``; 413 past the upload limit."""
    writer = PartWriter(related, workdir, settings.max_files)
    total = 0
    try:
        async for chunk in chunks:
            total += len(chunk)
            if total > settings.max_request_bytes:
                raise IngestError(
                    413,
                    upload_too_large(settings),
                )
            writer.feed(chunk)
    except BaseException:
        writer.close()
        raise
    return writer.finish()
