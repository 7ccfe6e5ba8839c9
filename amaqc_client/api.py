"""The two API calls the client makes, and what their failures mean for the user.

``POST /api/v1/series`` (multipart ``files``, optional ``series_uid``) answers 202 with the
series id and its status URL; ``GET /api/v1/series/{id}`` answers its ``status`` and, once
``done``, its ``verdict``. Keys go as ``Authorization: Bearer <key>`` (scanner or admin).

Every failure is an :class:`ApiError` whose message says what to do, and whose ``transient``
says whether sending again later can succeed (server unreachable, 5xx, 409, 429; a wrong key
too, since an admin can fix it on the server), so ``watch`` retries exactly those.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

import httpx

from .files import media_type, upload_name

SERIES = "/api/v1/series"


class ApiError(Exception):
    """A call that failed; ``status`` is the HTTP status (None: no answer)."""

    def __init__(self, message: str, *, status: int | None = None, transient: bool) -> None:
        super().__init__(message)
        self.status = status
        self.transient = transient


@dataclass(frozen=True)
class Accepted:
    series_id: int
    status_url: str
    new_instances: int
    skipped: int


@dataclass(frozen=True)
class SeriesState:
    """A series as the API reports it: ``status`` is receiving, queued, processing, done or
    failed; the verdict fields are set once done."""

    series_id: int
    status: str
    error: str | None = None
    label: str | None = None
    probability: float | None = None
    flagged: int | None = None
    slices: int = 0
    threshold: float | None = None
    model: str | None = None

    #: slices without a verdict of the verdict's model version yet
    unscored: int = 0

    @property
    def finished(self) -> bool:
        """Failed, or done with every slice scored: a series that got more slices while a
        worker was scoring it is ``done`` for a moment with the slices it had."""
        return self.status == "failed" or (self.status == "done" and not self.unscored)


def _detail(response: httpx.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        return response.text.strip()[:300] or response.reason_phrase
    detail = body.get("detail") if isinstance(body, dict) else None
    if isinstance(detail, list):  # FastAPI's validation errors
        return "; ".join(str(d.get("msg", d)) for d in detail)
    return str(detail or body)[:300]


class _Counted:
    """A binary file that reports how many bytes were read from it."""

    def __init__(self, fh: BinaryIO, on_bytes: Callable[[int], None] | None) -> None:
        self._fh = fh
        self._on_bytes = on_bytes

    def read(self, size: int = -1) -> bytes:
        data = self._fh.read(size)
        if data and self._on_bytes:
            self._on_bytes(len(data))
        return data

    def __getattr__(self, name: str) -> Any:  # seek, tell, fileno: httpx sizes the part
        return getattr(self._fh, name)


class Client:
    """An amaqc server at ``url`` (e.g. ``http://127.0.0.1:8000``) with one API key;
    ``scanner`` names the sending scanner in every upload (the form field ``scanner``: else
    the server takes it from the DICOM header, and a PNG has none)."""

    def __init__(
        self,
        url: str,
        key: str,
        *,
        timeout: float = 60.0,
        upload_timeout: float = 900.0,
        scanner: str | None = None,
    ) -> None:
        if not url.startswith(("http://", "https://")):
            raise ApiError(f"--url {url!r}: expected http://host:port", transient=False)
        if not key:
            raise ApiError("no API key: pass --key or set AMAQC_API_KEY", transient=False)
        self.url = url.rstrip("/")
        self.scanner = scanner
        # the server decodes every file of an upload before it answers: a big series takes time
        self._upload_timeout = httpx.Timeout(upload_timeout, connect=10.0)
        self._http = httpx.Client(
            base_url=self.url,
            headers={"Authorization": f"Bearer {key}"},
            timeout=httpx.Timeout(timeout, connect=10.0),
        )

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _call(self, method: str, path: str, **kwargs: Any) -> Any:
        try:
            response = self._http.request(method, path, **kwargs)
        except (httpx.ReadTimeout, httpx.WriteTimeout) as exc:
            raise ApiError(
                f"the amaqc server at {self.url} did not answer in time ({type(exc).__name__}); "
                "it may still store the upload: sending again adds nothing twice",
                transient=True,
            ) from None
        except httpx.TransportError as exc:
            raise ApiError(
                f"cannot reach the amaqc server at {self.url} ({type(exc).__name__}: {exc}); "
                "is it running, and is --url right?",
                transient=True,
            ) from None
        if response.status_code < 400:
            return response.json()
        raise self._refusal(response)

    def _refusal(self, response: httpx.Response) -> ApiError:
        code, detail = response.status_code, _detail(response)
        if code == 401:
            message = f"the server refused the API key (401: {detail}); check --key"
        elif code == 403:
            message = f"the API key may not send images (403: {detail}); use a scanner key"
        elif code == 404 and "/api/v1/" not in str(response.request.url):
            message = f"404 at {response.request.url}: is --url an amaqc server?"
        else:
            message = f"the server answered {code}: {detail}"
        transient = code in (401, 403, 408, 409, 425, 429) or code >= 500
        return ApiError(message, status=code, transient=transient)

    def upload(
        self,
        files: list[Path],
        *,
        series_uid: str | None = None,
        kinds: list[str] | None = None,
        names: list[str] | None = None,
        on_bytes: Callable[[int], None] | None = None,
    ) -> Accepted:
        """Post ``files`` as one series (``POST /api/v1/series``), under ``names`` (default:
        their own names) with the content type of ``kinds``; ``on_bytes(n)`` is called as
        each ``n`` bytes are read for sending (a progress bar).

        Raises:
            ApiError: the server refused or could not be reached.
            OSError: a file could not be opened.
        """
        data = {"series_uid": series_uid} if series_uid else {}
        if self.scanner:
            data["scanner"] = self.scanner
        with ExitStack() as stack:
            kinds_: list[str | None] = list(kinds) if kinds else [None] * len(files)
            names = names or [upload_name(p, k) for p, k in zip(files, kinds_, strict=True)]
            parts = [
                (
                    "files",
                    (
                        name,
                        _Counted(stack.enter_context(path.open("rb")), on_bytes),
                        media_type(kind),
                    ),
                )
                for path, kind, name in zip(files, kinds_, names, strict=True)
            ]
            body = self._call("POST", SERIES, files=parts, data=data, timeout=self._upload_timeout)
        return Accepted(
            series_id=int(body["series_id"]),
            status_url=str(body["status_url"]),
            new_instances=int(body.get("new_instances", 0)),
            skipped=len(body.get("skipped") or []),
        )

    def series(self, series_id: int) -> SeriesState:
        """The status and verdict of a series (``GET /api/v1/series/{id}``).

        Only the fields below are read: the patient context a radiographer or admin key
        would also get is never kept."""
        body = self._call("GET", f"{SERIES}/{series_id}")
        verdict = body.get("verdict") or {}
        instances = body.get("instances") or []
        version = body.get("model_version") or {}
        return SeriesState(
            series_id=series_id,
            status=str(body["status"]),
            error=body.get("error"),
            label=verdict.get("label"),
            probability=verdict.get("probability"),
            flagged=verdict.get("flagged_count"),
            slices=len(instances),
            unscored=sum(1 for i in instances if i.get("probability") is None),
            threshold=verdict.get("threshold"),
            model=version.get("name"),
        )
