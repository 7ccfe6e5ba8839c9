"""The messages of every upload limit: each names what was over, the limit, and the
``AMAQC_*`` setting that raises it (docs/service.md lists them all).

Every limit answers 413 (Content Too Large); the fixed limits of the multipart form (headers,
form fields) say that they are fixed and what to send instead.
"""

from __future__ import annotations

from app.config import Settings

#: form fields (not files) one ingest request may carry: series_uid, protocol, scanner
MAX_FORM_FIELDS = 20
#: bytes of one form field (not a file); the fields themselves take at most 200 characters
MAX_FIELD_BYTES = 64 * 1024
#: python-multipart's limit on one header line of a part (it is not configurable)
MAX_PART_HEADER_BYTES = 4096 + 128


def _raise_hint(setting: str) -> str:
    return f"raise {setting} to accept more"


def too_many_files(where: str, count: int | None, settings: Settings) -> str:
    """``where``: "the upload" or an archive name; ``count`` None: not counted to the end."""
    found = f"{count} files" if count is not None else f"more than {settings.max_files} files"
    return f"{where}: {found}, over the limit AMAQC_MAX_FILES={settings.max_files}; " + _raise_hint(
        "AMAQC_MAX_FILES"
    )


def upload_too_large(settings: Settings, size: int | None = None) -> str:
    found = f"is {size} bytes" if size is not None else "is larger than that"
    return (
        f"the upload {found}, over the limit AMAQC_MAX_UPLOAD_MB={settings.max_upload_mb:g} MB; "
        + _raise_hint("AMAQC_MAX_UPLOAD_MB")
    )


def unpacked_too_large(name: str, settings: Settings) -> str:
    return (
        f"{name}: expands to more than the limit AMAQC_MAX_UNZIPPED_MB="
        f"{settings.max_unzipped_mb:g} MB when unpacked (zip bomb?); "
        + _raise_hint("AMAQC_MAX_UNZIPPED_MB")
    )


def part_header_too_long(part: str) -> str:
    return (
        f"{part}: a header line is longer than {MAX_PART_HEADER_BYTES} bytes, a fixed limit of "
        "the multipart parser: a file name of thousands of characters? Names up to about 4000 "
        "bytes are accepted (they are used only in messages); send the file under a "
        "shorter name"
    )


def too_many_pixels(name: str, size: str, pixels: int, settings: Settings) -> str:
    return (
        f"{name}: image is {size} = {pixels} pixels, over the limit "
        f"AMAQC_MAX_PIXELS={settings.max_pixels}; " + _raise_hint("AMAQC_MAX_PIXELS")
    )
