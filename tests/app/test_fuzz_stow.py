"""Hostile input: mutated STOW-RS requests (issue 20; schemathesis cannot build
``multipart/related`` bodies, so hypothesis does it here).

A valid request -- two DICOM instances in a ``multipart/related; type="application/dicom"``
body -- is damaged by hypothesis (bytes flipped, the body cut short, bytes spliced in, the
boundary parameter of the Content-Type changed) and posted to ``/dicomweb/studies`` of the app
in-process (SQLite, the tiny model active). Every answer must be a 2xx, 4xx or 409 JSON answer
(STOW-RS refuses part by part), never a 5xx. ``AMAQC_FUZZ_EXAMPLES`` (default 150) and
``AMAQC_FUZZ_RANDOM=1`` as for the decoder fuzz test.
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from app.db.session import session_scope
from app.migrate import upgrade
from app.model_versions import register_checkpoint
from tests.app.conftest import app_client, auth, make_settings, new_key
from tests.utils.dicomweb import BOUNDARY, stow_body, stow_headers
from tests.utils.service import dicom_bytes

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")
EXAMPLES = int(os.environ.get("AMAQC_FUZZ_EXAMPLES", "150"))
RANDOM = os.environ.get("AMAQC_FUZZ_RANDOM", "") == "1"
BODY = stow_body(
    [dicom_bytes(series_uid="1.2.826.0.1.3680043.8.498.31", instance=i) for i in (1, 2)]
)


@pytest.fixture(scope="module")
def stow(
    tmp_path_factory: pytest.TempPathFactory, checkpoint: Path
) -> Iterator[Callable[[bytes, str], int]]:
    """``post(body, boundary) -> status`` against the app on a fresh SQLite data dir."""
    config = make_settings(tmp_path_factory.mktemp("stow") / "data", checkpoint)
    upgrade(config.database_url)
    with session_scope(config.database_url) as session:
        register_checkpoint(session, checkpoint)
    key = auth(new_key(config, "scanner", "pacs"))
    with app_client(config) as client:

        def post(body: bytes, boundary: str) -> int:
            r = client.post(
                "/dicomweb/studies", content=body, headers=stow_headers(key, boundary=boundary)
            )
            assert r.status_code < 500, (r.status_code, r.text)
            assert isinstance(r.json(), dict), r.text
            return r.status_code

        yield post


@st.composite
def damaged(draw: st.DrawFn) -> tuple[bytes, str]:
    buf = bytearray(BODY)
    boundary = BOUNDARY
    kind = draw(st.sampled_from(("flip", "truncate", "splice", "boundary")))
    if kind == "flip":
        for _ in range(draw(st.integers(1, 8))):
            buf[draw(st.integers(0, len(buf) - 1))] ^= draw(st.integers(1, 255))
    elif kind == "truncate":
        del buf[draw(st.integers(0, len(buf) - 1)) :]
    elif kind == "splice":
        at = draw(st.integers(0, len(buf)))
        buf[at : at + draw(st.integers(0, 64))] = draw(st.binary(max_size=64))
    else:
        alphabet = st.characters(codec="ascii", exclude_characters='"\r\n\\')
        boundary = draw(st.one_of(st.just(""), st.text(alphabet, max_size=80)))
    return bytes(buf), boundary


@pytest.mark.timeout(300)
def test_a_damaged_stow_request_is_never_a_5xx(
    stow: Callable[[bytes, str], int], record_property: Callable[[str, object], None]
) -> None:
    statuses: Counter[int] = Counter()
    assert stow(BODY, BOUNDARY) == 200  # the undamaged request is stored whole

    @settings(
        max_examples=EXAMPLES,
        deadline=None,
        derandomize=not RANDOM,
        database=None,
        suppress_health_check=[HealthCheck.too_slow],
    )
    @given(damaged())
    def check(request: tuple[bytes, str]) -> None:
        statuses[stow(*request)] += 1

    check()
    print(f"[fuzz] STOW-RS: {sum(statuses.values())} damaged requests, {dict(statuses)}")
    record_property("stow_statuses", dict(statuses))
    assert any(s >= 400 for s in statuses), "no damaged request was refused: not fuzzing"
