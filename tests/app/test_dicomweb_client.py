"""STOW-RS with ``dicomweb-client`` (the DICOMweb library of PACS tooling) as the client,
against a real HTTP server (uvicorn on loopback) and, for verdicts, a real worker process."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack

import httpx
import pytest
import requests
from dicomweb_client import DICOMwebClient
from pydicom.dataset import Dataset

from app.api.main import create_app
from app.config import Settings, get_settings
from tests.app.conftest import new_key
from tests.utils.dicomweb import mr_dataset, sr_dataset
from tests.utils.server import serve

SERIES = "1.2.826.0.1.3680043.8.498.3001"
STATUS_URL = (0x0009, 0x1001)  # private, creator AMAQC: the series' status URL


ServerFor = Callable[[Settings], str]


@pytest.fixture
def server_for() -> Iterator[ServerFor]:
    """``server_for(settings)``: the base URL of a live server for those settings."""
    with ExitStack() as servers:

        def start(settings: Settings) -> str:
            app = create_app()
            app.dependency_overrides[get_settings] = lambda: settings
            return servers.enter_context(serve(app))

        yield start


def _dicomweb(url: str, key: str) -> DICOMwebClient:
    return DICOMwebClient(url=f"{url}/dicomweb", headers={"Authorization": f"Bearer {key}"})


def _wait_for_verdict(status_url: str, key: str, timeout: float = 120) -> dict:
    deadline = time.monotonic() + timeout
    body: dict = {}
    while time.monotonic() < deadline:
        body = httpx.get(status_url, headers={"Authorization": f"Bearer {key}"}).json()
        if body["status"] in ("done", "failed"):
            return body
        time.sleep(0.3)
    raise AssertionError(f"no verdict within {timeout} s: {body}")


def _referenced_uids(result: Dataset) -> list[str]:
    return [str(item.ReferencedSOPInstanceUID) for item in result.ReferencedSOPSequence]


@pytest.mark.slow
def test_a_series_stored_with_dicomweb_client_gets_its_verdict(
    stack: Settings, server_for: ServerFor
) -> None:
    key = new_key(stack, "scanner")
    # 8 slices of 256x256 are over dicomweb-client's 1 MB chunk size: a chunked request body
    datasets = [mr_dataset(SERIES, i, size=256) for i in range(1, 9)]
    result = _dicomweb(server_for(stack), key).store_instances(datasets)
    assert _referenced_uids(result) == [str(d.SOPInstanceUID) for d in datasets]
    body = _wait_for_verdict(result.ReferencedSOPSequence[0][STATUS_URL].value, key)
    assert body["status"] == "done", body
    assert body["verdict"]["label"] in ("artifact", "clean") and len(body["instances"]) == 8


def test_dicomweb_client_gets_a_failed_sop_sequence_item_for_an_sr(
    settings: Settings, server_for: ServerFor
) -> None:
    sr = sr_dataset()
    result = _dicomweb(server_for(settings), new_key(settings, "scanner")).store_instances(
        [mr_dataset(SERIES, 1), sr]
    )
    (failed,) = result.FailedSOPSequence
    assert failed.ReferencedSOPInstanceUID == sr.SOPInstanceUID and failed.FailureReason == 0x0122
    assert len(result.ReferencedSOPSequence) == 1


def test_an_instance_sent_again_is_referenced_again(
    settings: Settings, server_for: ServerFor
) -> None:
    client = _dicomweb(server_for(settings), new_key(settings, "scanner"))
    datasets = [mr_dataset(SERIES, 1), mr_dataset(SERIES, 2)]
    client.store_instances(datasets)
    again = client.store_instances(datasets)
    assert _referenced_uids(again) == [str(d.SOPInstanceUID) for d in datasets]
    assert "FailedSOPSequence" not in again


def test_a_radiographer_key_is_refused_with_403(settings: Settings, server_for: ServerFor) -> None:
    client = _dicomweb(server_for(settings), new_key(settings, "radiographer"))
    with pytest.raises(requests.HTTPError) as err:
        client.store_instances([mr_dataset(SERIES, 1)])
    assert err.value.response.status_code == 403
