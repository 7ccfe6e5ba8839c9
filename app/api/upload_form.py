"""The multipart form of the ingest routes, parsed with the service's own limits.

FastAPI's ``File``/``Form`` parameters parse with Starlette's defaults (1000 files) and answer
400 with the parser's words ("Too many files. Maximum number of files is 1000.", "Invalid
multipart data."). Here the form is parsed with ``AMAQC_MAX_FILES`` and every failure is an
:class:`IngestError` naming the part, the limit and the setting (``app.ingest.limits``).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Annotated, Any, BinaryIO

from fastapi import Depends, Request
from starlette.datastructures import FormData, UploadFile
from starlette.formparsers import MultiPartException, MultiPartParser

from app.api.deps import SettingsDep
from app.config import Settings
from app.ingest import limits
from app.ingest.errors import IngestError
from app.ingest.sniff import ACCEPTED
from app.ingest.uploads import display_name

#: the text fields both ingest routes take, each at most this many characters
TEXT_FIELDS = ("series_uid", "protocol", "scanner")
MAX_TEXT = 200

#: the OpenAPI description of the form (FastAPI cannot derive it: the route parses it itself)
OPENAPI = {
    "requestBody": {
        "required": True,
        "content": {
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "required": ["files"],
                    "properties": {
                        "files": {
                            "type": "array",
                            "items": {"type": "string", "format": "binary"},
                            "description": ACCEPTED,
                        },
                        **{name: {"type": "string", "maxLength": MAX_TEXT} for name in TEXT_FIELDS},
                    },
                }
            }
        },
    }
}


@dataclass(frozen=True)
class UploadForm:
    """The multipart fields both ingest routes take."""

    parts: list[tuple[str | None, BinaryIO]]
    series_uid: str | None
    protocol: str | None
    scanner: str | None


class _Parser(MultiPartParser):
    """Starlette's parser, counting parts so that an error can say which one."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.part_number = 0

    def on_part_begin(self) -> None:
        self.part_number += 1
        super().on_part_begin()


def _refusal(exc: MultiPartException, parser: _Parser, settings: Settings) -> IngestError:
    part = f"part {parser.part_number}"
    message, cause = exc.message, str(exc.__cause__ or "")
    if message.startswith("Too many files"):
        return IngestError(413, limits.too_many_files("the upload", None, settings))
    if message.startswith("Too many fields"):
        return IngestError(
            413,
            f"{part}: more than {limits.MAX_FORM_FIELDS} form fields (a fixed limit); the "
            f"ingest routes take 'files' and the text fields {', '.join(TEXT_FIELDS)}",
        )
    if message.startswith("Part exceeded"):
        field = parser._current_part.field_name or "?"
        return IngestError(
            413,
            f"{part} (form field {field!r}): over {limits.MAX_FIELD_BYTES // 1024} KB, a fixed "
            f"limit; text fields take at most {MAX_TEXT} characters (send images as files, with "
            "a filename)",
        )
    if "header size" in cause:
        return IngestError(413, limits.part_header_too_long(part))
    if message.startswith("Missing boundary"):
        return IngestError(400, "the multipart/form-data content type has no boundary parameter")
    found = f"{message.rstrip('.')}: {cause}" if cause else message.rstrip(".")
    return IngestError(400, f"{part}: the multipart/form-data body is malformed ({found})")


async def read_form(request: Request, settings: Settings) -> FormData:
    """The parsed form, with ``AMAQC_MAX_FILES`` files at most; :class:`IngestError` else."""
    parser = _Parser(
        request.headers,
        request.stream(),
        max_files=settings.max_files,
        max_fields=limits.MAX_FORM_FIELDS,
        max_part_size=limits.MAX_FIELD_BYTES,
    )
    try:
        return await parser.parse()
    except MultiPartException as exc:
        raise _refusal(exc, parser, settings) from None


def _text(form: FormData, name: str) -> str | None:
    values = form.getlist(name)
    if not values:
        return None
    value = values[-1]
    if not isinstance(value, str):
        raise IngestError(422, f"form field {name!r} is a file; send it as a text field")
    if len(value) > MAX_TEXT:
        raise IngestError(
            422, f"form field {name!r} is {len(value)} characters, at most {MAX_TEXT} allowed"
        )
    return value or None


def _files(form: FormData) -> list[tuple[str | None, BinaryIO]]:
    if "files" not in form and len(form):
        found = ", ".join(repr(display_name(key, "?")[:40]) for key in dict.fromkeys(form))
        raise IngestError(
            422,
            f"no files in the upload: found only the form field(s) {found}; expected {ACCEPTED} "
            "in the multipart field 'files' (curl -F files=@slice.dcm)",
        )
    parts: list[tuple[str | None, BinaryIO]] = []
    for index, item in enumerate(form.getlist("files")):
        if not isinstance(item, UploadFile):
            raise IngestError(
                422,
                f"form field 'files' number {index + 1} is text, not a file: send each file "
                "with a filename (curl -F files=@slice.dcm)",
            )
        parts.append((item.filename, item.file))
    return parts


async def upload_form(request: Request, settings: SettingsDep) -> AsyncIterator[UploadForm]:
    """The ingest routes' form; its files are closed when the request ends."""
    form = await read_form(request, settings)
    try:
        yield UploadForm(_files(form), *(_text(form, name) for name in TEXT_FIELDS))
    finally:
        await form.close()


Upload = Annotated[UploadForm, Depends(upload_form)]
