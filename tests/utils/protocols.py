"""DICOM slices that name their scanner and protocol, for the per-protocol threshold tests."""

from __future__ import annotations

import io
from typing import Any

from tests.utils.images import dicom_dataset, phantom, set_pixels_12bit


def header_dicom(
    series_uid: str, *, protocol: str, station: str = "MR-EAST-1", seed: int = 3, **tags: Any
) -> bytes:
    """One slice (the phantom of ``seed``: the same image for the same seed) of series
    ``series_uid`` from ``station`` (a Siemens Prisma) acquired with ProtocolName ``protocol``
    (SeriesDescription: the same in lower case); ``tags`` add attributes by keyword (e.g.
    ``ScanningSequence="EP"``)."""
    ds = dicom_dataset(series_uid=series_uid, instance=1)
    ds.ProtocolName = protocol
    ds.SeriesDescription = protocol.lower()
    ds.StationName = station
    ds.Manufacturer = "SIEMENS"
    ds.ManufacturerModelName = "Prisma"
    for keyword, value in tags.items():
        setattr(ds, keyword, value)
    set_pixels_12bit(ds, phantom(64, seed=seed))
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    return buffer.getvalue()


def upload(client: Any, headers: dict[str, str], data: bytes) -> int:
    """POST one DICOM file as a series through ``client`` (a TestClient); its series id."""
    files = [("files", ("a.dcm", data, "application/dicom"))]
    r = client.post("/api/v1/series", files=files, headers=headers)
    assert r.status_code == 202, r.text
    return int(r.json()["series_id"])
