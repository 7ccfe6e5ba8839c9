"""SIGTERM ``amaqc up`` with series still queued, start it again on the same data dir: every
series gets its verdict, exactly one per slice, nothing lost (issue 20).

``amaqc up`` in its embedded mode (SQLite, the local broker in ``<data_dir>/broker.db``, the
tiny model). Eight series of four slices are uploaded at once, so that when the SIGTERM comes
the worker holds one and the rest wait in the broker; up stops its workers (a warm shutdown:
the series in hand is finished or given back) and exits. Started again, it finds the waiting
messages in the broker (and the sweeper anything marked ``queued`` or ``processing`` without a
message). Counted as ``tests/utils/load.py`` counts a load run; prints ``[restart] ...``.
"""

from __future__ import annotations

import re
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest
from sqlalchemy import select

from app.db.models import Series
from app.db.session import session_scope
from tests.utils.load import LoadResult, count_outcome, make_uploads
from tests.utils.up import start_up, stop_up, wait_ready

SERIES, SLICES = 8, 4


def _statuses(database_url: str) -> Counter[str]:
    with session_scope(database_url) as session:
        return Counter(session.scalars(select(Series.status)).all())


@pytest.mark.slow
def test_series_queued_at_a_sigterm_all_finish_after_a_restart(
    tmp_path: Path, checkpoint: Path, record_property: Callable[[str, object], None]
) -> None:
    data = tmp_path / "data"
    uploads = make_uploads(SERIES * SLICES, SLICES, 64)
    by_series: dict[str, list[bytes]] = {}
    for u in uploads:
        by_series.setdefault(u.series_uid, []).append(u.data)
    up = start_up(data, checkpoint)
    try:
        key = wait_ready(up)
        assert key is not None
        headers = {"Authorization": f"Bearer {key}"}
        with httpx.Client(timeout=60, headers=headers) as client:
            for i, files in enumerate(by_series.values()):
                parts = [
                    ("files", (f"{i}-{n}.dcm", d, "application/dicom")) for n, d in enumerate(files)
                ]
                assert client.post(f"{up.url}/api/v1/series", files=parts).status_code == 202
        at_term = _statuses(up.database_url)
        term = time.monotonic()
        code = stop_up(up)  # SIGTERM
        stopped = time.monotonic() - term
    finally:
        stop_up(up)
    assert code == 0, up.output()[-3000:]
    after_stop = _statuses(up.database_url)
    assert after_stop["done"] < SERIES, "every series was done before the SIGTERM: nothing tested"

    again = start_up(data, checkpoint)
    try:
        wait_ready(again)
        keys = re.findall(r"^amaqc_\S+$", again.output(), re.MULTILINE)  # the log of both
        assert len(keys) == 1, "a second admin key: the restart did not find the data dir"
        ready = time.monotonic()
        result = LoadResult(len(uploads), 1, SERIES)
        accepted = {u.sop_uid for u in uploads}
        deadline = ready + 300
        while not count_outcome(again.database_url, uploads, accepted, result):
            assert time.monotonic() < deadline, (result.unfinished, again.output()[-3000:])
            time.sleep(0.5)
        drained = time.monotonic() - ready
    finally:
        stop_up(again)
    figures = (
        f"at SIGTERM {dict(at_term)}; up exited {code} after {stopped:.1f} s with "
        f"{dict(after_stop)}; after the restart all {SERIES} series done in {drained:.1f} s; "
        f"{result.lost} lost, {result.duplicated} duplicated"
    )
    print(f"[restart] {figures}")
    record_property("restart", figures)
    assert (result.lost, result.duplicated) == (0, 0), figures
