"""What is read from a DICOM header besides the pixels: the display window the viewer starts
from (``X-Amaqc-Window`` on the pixels endpoint), and the reader-facing context."""

from __future__ import annotations

from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from app.config import Settings
from app.dicom_header import display_window, header_context
from tests.utils.images import dicom_dataset, phantom, set_pixels_12bit
from tests.utils.ui import tagged_series_files


def _saved(tmp_path: Path, **tags: object) -> Path:
    ds = dicom_dataset(series_uid="1.2.22.70")
    for keyword, value in tags.items():
        setattr(ds, keyword, value)
    set_pixels_12bit(ds, phantom(16))
    path = tmp_path / "a.dcm"
    ds.save_as(path, enforce_file_format=True)
    return path


def test_the_display_window_is_the_first_one_the_header_names(tmp_path: Path) -> None:
    assert display_window(_saved(tmp_path, WindowCenter=40, WindowWidth=400)) == (40.0, 400.0)
    two = _saved(tmp_path, WindowCenter=[300, 40], WindowWidth=[1500, 80])
    assert display_window(two) == (300.0, 1500.0)
    assert display_window(_saved(tmp_path)) is None
    assert display_window(_saved(tmp_path, WindowCenter=40, WindowWidth=0)) is None
    png = tmp_path / "x.png"
    png.write_bytes(b"\x89PNG\r\n\x1a\nnot dicom")
    assert display_window(png) is None


def test_the_pixels_endpoint_names_the_dicom_window(
    client: TestClient, settings: Settings, scanner: dict[str, str], radiographer: dict[str, str]
) -> None:
    files = tagged_series_files(1, "1.2.22.71", WindowCenter=1200, WindowWidth=900)
    r = client.post("/api/v1/series", files=files, headers=scanner)
    series_id = r.json()["series_id"]
    body = client.get(f"/api/v1/series/{series_id}", headers=radiographer).json()
    raw = client.get(f"/api/v1/instances/{body['instances'][0]['id']}/pixels", headers=radiographer)
    assert raw.status_code == 200 and raw.headers["x-amaqc-window"] == "1200,900"

    plain = client.post(
        "/api/v1/series", files=tagged_series_files(1, "1.2.22.72"), headers=scanner
    ).json()["series_id"]
    body = client.get(f"/api/v1/series/{plain}", headers=radiographer).json()
    raw = client.get(f"/api/v1/instances/{body['instances'][0]['id']}/pixels", headers=radiographer)
    assert raw.status_code == 200 and "x-amaqc-window" not in raw.headers


@pytest.mark.parametrize(
    ("tags", "acquired"),
    [
        ({"AcquisitionDateTime": "20260304134501.25"}, "2026-03-04T13:45:01"),
        ({"AcquisitionDate": "20260304", "AcquisitionTime": "0905"}, "2026-03-04T09:05:00"),
        ({"SeriesDate": "20260304"}, "2026-03-04"),
        ({"AcquisitionDate": "garbage"}, None),
    ],
)
def test_the_acquisition_time_is_read_as_the_header_gives_it(
    tmp_path: Path, tags: dict[str, str], acquired: str | None
) -> None:
    import pydicom

    ds = pydicom.dcmread(_saved(tmp_path, **tags))
    assert header_context(ds).acquired_at == acquired


def _header(**tags: object) -> object:
    ds = dicom_dataset(series_uid="1.2.22.80")
    for keyword, value in tags.items():
        setattr(ds, keyword, value)
    return ds


@pytest.mark.parametrize(
    ("tags", "family"),
    [
        ({"ScanningSequence": "EP"}, "epi"),
        ({"ScanningSequence": ["SE", "EP"]}, "epi"),  # a spin-echo EPI (diffusion)
        ({"ScanningSequence": "SE"}, "non_epi"),
        ({"ScanningSequence": ["GR", "IR"]}, "non_epi"),  # an MPRAGE
        ({"EchoPlanarPulseSequence": "YES"}, "epi"),  # enhanced MR
        ({"EchoPlanarPulseSequence": "NO"}, "non_epi"),
        ({"ImageType": ["ORIGINAL", "PRIMARY", "DIFFUSION", "NONE"]}, "epi"),
        ({}, None),  # nothing says: the model's pooled threshold
        ({"ScanningSequence": "SE", "ProtocolName": "ep2d_diff"}, "epi"),  # a name wins over SE
        ({"ProtocolName": "T1 epilepsy"}, None),  # a whole word only; no word says "not EPI"
        ({"ScanningSequence": "SE", "SeriesDescription": "T1 epilepsy"}, "non_epi"),
        ({"SequenceName": "*epfid2d1_64"}, "epi"),  # Siemens' BOLD readout
    ],
)
def test_the_acquisition_family_is_read_from_the_header(
    tags: dict[str, object], family: str | None
) -> None:
    assert header_context(_header(**tags)).acquisition == family


def test_a_saved_and_reread_header_keeps_its_family(tmp_path: Path) -> None:
    import pydicom

    path = _saved(tmp_path, ScanningSequence=["SE", "EP"], SequenceVariant="SK")
    assert header_context(pydicom.dcmread(path, stop_before_pixels=True)).acquisition == "epi"
    plain = _saved(tmp_path, ScanningSequence=["GR", "IR"])
    assert header_context(pydicom.dcmread(plain, stop_before_pixels=True)).acquisition == "non_epi"
