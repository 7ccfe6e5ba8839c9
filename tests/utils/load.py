"""Many single-slice uploads from concurrent clients against a live service, then a count of
what the database holds (issue 20): ``bench/load.py`` (1,000 uploads, 16 clients) and
``tests/app/test_load.py`` (100 uploads, 8 clients) share it.

Each upload is one DICOM slice to ``POST /api/v1/slices``; the slices belong to
``uploads / per_series`` series and are sent interleaved (so that clients race on the same
series). A 409 (a concurrent upload changed the series) or 503 (the database busy) is sent again
after its ``Retry-After`` (at most ``RETRIES`` times), as a client should; every other answer
is final. Once every upload is answered, the database is polled until each series is ``done``
and each accepted slice has its verdict. Then: *lost* = an accepted slice (202) with no instance
row or no verdict, or a series that never got its verdict; *duplicated* = a SOP Instance UID
stored more than once, a slice with more than one verdict of a model version, a Series Instance
UID with more than one series.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import httpx

from .images import phantom
from .service import dicom_bytes

RETRIES = 5


@dataclass
class LoadResult:
    uploads: int
    clients: int
    series: int
    #: final HTTP status -> count (after retries)
    statuses: Counter[int] = field(default_factory=Counter)
    #: 409 / 503 answers that were sent again
    retried: Counter[int] = field(default_factory=Counter)
    #: 5xx answers seen at all (final or retried)
    server_errors: int = 0
    upload_seconds: float = 0.0  # first upload sent -> last upload answered
    drain_seconds: float = 0.0  # last upload answered -> last verdict written
    lost: int = 0
    duplicated: int = 0
    unfinished: list[str] = field(default_factory=list)

    @property
    def accepted(self) -> int:
        return self.statuses[202]

    def summary(self) -> str:
        return (
            f"{self.uploads} uploads from {self.clients} clients into {self.series} series: "
            f"{self.accepted} accepted, statuses {dict(sorted(self.statuses.items()))}, "
            f"retried {dict(sorted(self.retried.items()))}, {self.server_errors} 5xx, "
            f"{self.lost} lost, {self.duplicated} duplicated; uploads took "
            f"{self.upload_seconds:.1f} s, drained {self.drain_seconds:.1f} s after the last"
        )


@dataclass(frozen=True)
class Upload:
    sop_uid: str
    series_uid: str
    data: bytes


def make_uploads(n: int, per_series: int, size: int) -> list[Upload]:
    """``n`` slices of ``ceil(n / per_series)`` new series, interleaved across the series."""
    run = uuid.uuid4().int % 10**12
    images = [phantom(size, seed=s) for s in range(8)]
    by_series: list[list[Upload]] = []
    for s in range(-(-n // per_series)):
        series_uid = f"2.25.{run}{s:05d}"
        count = min(per_series, n - s * per_series)
        by_series.append(
            [
                Upload(
                    f"{series_uid}.{i + 1}",
                    series_uid,
                    dicom_bytes(
                        images[(s + i) % len(images)],
                        series_uid=series_uid,
                        instance=i + 1,
                        sop_uid=f"{series_uid}.{i + 1}",
                    ),
                )
                for i in range(count)
            ]
        )
    depth = max(len(b) for b in by_series)
    return [b[i] for i in range(depth) for b in by_series if i < len(b)]


def send_all(
    url: str, key: str, uploads: list[Upload], clients: int, result: LoadResult
) -> set[str]:
    """POST every upload from ``clients`` threads; returns the SOP UIDs answered 202."""
    local = threading.local()
    lock = threading.Lock()
    accepted: set[str] = set()
    headers = {"Authorization": f"Bearer {key}"}

    def client() -> httpx.Client:
        if not hasattr(local, "client"):
            local.client = httpx.Client(timeout=120, headers=headers)
        made: httpx.Client = local.client
        return made

    def one(upload: Upload) -> None:
        for attempt in range(RETRIES + 1):
            files = [("files", (f"{upload.sop_uid}.dcm", upload.data, "application/dicom"))]
            r = client().post(f"{url}/api/v1/slices", files=files)
            with lock:
                result.server_errors += r.status_code >= 500
                if r.status_code in (409, 503) and attempt < RETRIES:
                    result.retried[r.status_code] += 1
                    wait = float(r.headers.get("retry-after", "0.2") or 0.2)
                else:
                    result.statuses[r.status_code] += 1
                    if r.status_code == 202:
                        accepted.add(upload.sop_uid)
                    return
            time.sleep(min(wait, 5.0))

    start = time.monotonic()
    with ThreadPoolExecutor(clients) as pool:
        list(pool.map(one, uploads))
    result.upload_seconds = time.monotonic() - start
    return accepted


def count_outcome(
    database_url: str, uploads: list[Upload], accepted: set[str], result: LoadResult
) -> bool:
    """Fill ``lost`` / ``duplicated`` / ``unfinished`` from the database; True when every
    series is done and every accepted slice has its verdict."""
    from sqlalchemy import func, select

    from app.db.models import Instance, InstanceVerdict, Series, SeriesVerdict
    from app.db.session import session_scope

    series_uids = {u.series_uid for u in uploads}
    with session_scope(database_url) as session:
        series = session.execute(
            select(Series.id, Series.series_uid, Series.status).where(
                Series.series_uid.in_(series_uids)
            )
        ).all()
        ids = [s.id for s in series]
        stored = Counter(
            dict(
                session.execute(
                    select(Instance.sop_instance_uid, func.count())
                    .where(Instance.series_id.in_(ids))
                    .group_by(Instance.sop_instance_uid)
                ).all()
            )
        )
        verdicts = Counter(
            dict(
                session.execute(
                    select(Instance.sop_instance_uid, func.count())
                    .join(InstanceVerdict, InstanceVerdict.instance_id == Instance.id)
                    .where(Instance.series_id.in_(ids), InstanceVerdict.shadow.is_(False))
                    .group_by(Instance.sop_instance_uid, InstanceVerdict.model_version_id)
                ).all()
            )
        )
        series_verdicts = Counter(
            sid
            for (sid,) in session.execute(
                select(SeriesVerdict.series_id).where(
                    SeriesVerdict.series_id.in_(ids), SeriesVerdict.shadow.is_(False)
                )
            ).all()
        )
    per_uid = Counter(s.series_uid for s in series)
    not_done = [s for s in series if s.status != "done" or series_verdicts[s.id] == 0]
    result.lost = sum(1 for u in accepted if stored[u] == 0 or verdicts[u] == 0)
    result.lost += len(series_uids - set(per_uid)) if accepted else 0
    result.lost += len(not_done)
    result.duplicated = (
        sum(n - 1 for n in stored.values() if n > 1)
        + sum(n - 1 for n in verdicts.values() if n > 1)
        + sum(n - 1 for n in per_uid.values() if n > 1)
        + sum(n - 1 for n in series_verdicts.values() if n > 1)
    )
    result.unfinished = [f"series {s.id} {s.status}" for s in not_done][:5]
    return result.lost == 0


def run_load(
    url: str,
    key: str,
    database_url: str,
    *,
    uploads: int,
    clients: int,
    per_series: int = 10,
    size: int = 64,
    timeout: float = 600.0,
    progress: Callable[[str], None] = lambda _: None,
) -> LoadResult:
    """Send the uploads, wait (at most ``timeout`` s) for every verdict, count."""
    batch = make_uploads(uploads, per_series, size)
    result = LoadResult(uploads, clients, len({u.series_uid for u in batch}))
    progress(f"sending {uploads} slices of {result.series} series from {clients} clients")
    accepted = send_all(url, key, batch, clients, result)
    answered = time.monotonic()
    progress(f"answered in {result.upload_seconds:.1f} s; waiting for the verdicts")
    deadline = answered + timeout
    last_report = answered
    while not count_outcome(database_url, batch, accepted, result):
        if time.monotonic() > deadline:
            progress(f"not drained within {timeout:.0f} s: {result.unfinished}")
            break
        if time.monotonic() - last_report > 10:
            progress(f"{result.lost} slices or series without a verdict yet")
            last_report = time.monotonic()
        time.sleep(0.5)
    result.drain_seconds = time.monotonic() - answered
    return result
