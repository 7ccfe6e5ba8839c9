"""The browser tests' service without a worker: the API served by uvicorn on the ``settings``
fixture's SQLite database, series scored in-process (``analyse``), a Chromium page on it
(``tests.utils.browser``), and a signed-in reader. Import the fixtures into a test module."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from app.config import Settings, get_settings
from app.worker.inference import analyse
from tests.app.conftest import auth, new_key
from tests.utils.browser import chromium_page
from tests.utils.server import serve
from tests.utils.service import series_files


@pytest.fixture
def base_url(settings: Settings) -> Iterator[str]:
    from app.api.main import app

    app.dependency_overrides[get_settings] = lambda: settings
    try:
        with serve(app) as url:
            yield url
    finally:
        app.dependency_overrides.clear()


@pytest.fixture
def page(base_url: str) -> Iterator[Any]:
    with chromium_page(base_url, wait_ms=20_000) as page:
        yield page


def scored(
    settings: Settings,
    base_url: str,
    uid: str,
    n: int = 4,
    files: list[Any] | None = None,
    **data: str,
) -> int:
    """A series of ``n`` DICOM slices (or ``files``) uploaded over HTTP and scored in-process;
    ``data``: the form's fields (scanner, protocol)."""
    key = new_key(settings, "scanner", "MR-1 console")
    r = httpx.post(
        f"{base_url}/api/v1/series",
        files=files or series_files(n, uid),
        data=data,
        headers=auth(key),
        timeout=60,
    )
    assert r.status_code == 202, r.text
    series_id = int(r.json()["series_id"])
    assert analyse(settings, series_id) == "done"
    return series_id


def sign_in(page: Any, settings: Settings, name: str = "Ann Radiographer") -> None:
    from playwright.sync_api import expect

    page.goto("/login")
    page.fill("#api_key", new_key(settings, "radiographer", name))
    page.click("button[type=submit]")
    expect(page.locator("#worklist")).to_be_visible()


def shot(page: Any, name: str) -> None:
    if os.environ.get("AMAQC_SHOTS"):
        page.screenshot(path=str(Path(os.environ["AMAQC_SHOTS"]) / name))


def tagged_series_files(n: int, uid: str, **tags: object) -> list[Any]:
    """``files=`` for httpx: ``n`` 128x128 DICOM slices of series ``uid`` with extra header
    ``tags`` (keyword=value, e.g. ``WindowCenter=1200``, ``StationName="MR-3T-A"``)."""
    import io

    from tests.utils.images import dicom_dataset, phantom, set_pixels_12bit

    files = []
    for i in range(n):
        ds = dicom_dataset(series_uid=uid, instance=i + 1)
        ds.SeriesDescription = "t2_tse_tra"
        for keyword, value in tags.items():
            setattr(ds, keyword, value)
        set_pixels_12bit(ds, phantom(128, seed=i))
        buffer = io.BytesIO()
        ds.save_as(buffer, enforce_file_format=True)
        files.append(("files", (f"{i}.dcm", buffer.getvalue(), "application/dicom")))
    return files
