"""``amaqc sample-series``: consecutive clean slices of a prepared dataset written as one DICOM
series (optionally with a simulated artifact) that the service accepts and scores."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pydicom
import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from app.cli import app as cli
from app.config import Settings
from app.sample_series import PATIENT_ID, SampleDataMissing, write_sample_series
from app.worker.inference import analyse
from tests.utils.images import phantom, write_png16


def prepared(root: Path) -> Path:
    """A dataset in ``amaqc data build``'s layout: 10 axial slices of subject ``s1`` (index =
    seed, so each slice is told apart) and 3 sagittal ones in ``test``, 2 in ``train``."""
    rows = []
    for split, plane, indices in [
        ("test", "axial", range(10)),
        ("test", "sagittal", range(3)),
        ("train", "axial", range(2)),
    ]:
        for i in indices:
            name = f"{split}/clean/s1_{plane}_{i:03d}.png"
            write_png16(root / name, phantom(64, seed=i))
            rows.append(
                {
                    "file": name,
                    "split": split,
                    "label": "0",
                    "source": "s1",
                    "plane": plane,
                    "index": i,
                }
            )
    with (root / "manifest.csv").open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return root


def _pixels(path: Path) -> np.ndarray:
    return np.asarray(pydicom.dcmread(path).pixel_array, dtype=np.float32)


def test_a_clean_sample_is_the_middle_slices_of_one_volume_as_one_series(tmp_path: Path) -> None:
    series = write_sample_series(prepared(tmp_path / "ds"), tmp_path / "out", count=4)
    assert [p.name for p in series.files] == [f"slice-0{i}.dcm" for i in range(1, 5)]
    assert series.source == "s1 axial slices 3..6 (test split)"
    headers = [pydicom.dcmread(p) for p in series.files]
    assert {h.SeriesInstanceUID for h in headers} == {series.series_uid}
    assert len({h.SOPInstanceUID for h in headers}) == 4
    assert [h.InstanceNumber for h in headers] == [1, 2, 3, 4]
    assert headers[0].PatientID == PATIENT_ID and headers[0].SeriesDescription == "T1 axial, clean"
    for path, seed in zip(series.files, range(3, 7), strict=True):
        expected = phantom(64, seed=seed)
        got = _pixels(path)
        assert np.corrcoef(got.ravel(), expected.ravel())[0, 1] > 0.999


def test_an_artifact_sample_is_corrupted_the_same_way_each_time(tmp_path: Path) -> None:
    data = prepared(tmp_path / "ds")
    clean = write_sample_series(data, tmp_path / "clean", count=3)
    motion = write_sample_series(data, tmp_path / "m1", artifact="ghosting", count=3)
    again = write_sample_series(data, tmp_path / "m2", artifact="ghosting", count=3)
    assert motion.description == "T1 axial, ghosting (severe)"
    assert motion.series_uid != again.series_uid  # each run is a new series
    for a, b, c in zip(clean.files, motion.files, again.files, strict=True):
        assert np.abs(_pixels(a) - _pixels(b)).mean() > 5  # of 4095
        np.testing.assert_array_equal(_pixels(b), _pixels(c))


def test_no_prepared_dataset_says_how_to_make_one(tmp_path: Path) -> None:
    with pytest.raises(SampleDataMissing, match="amaqc data build"):
        write_sample_series(tmp_path / "none", tmp_path / "out")
    with pytest.raises(SampleDataMissing, match="no clean slices in split 'val'"):
        write_sample_series(prepared(tmp_path / "ds"), tmp_path / "out", split="val")
    with pytest.raises(ValueError, match="artifact kind must be one of"):
        write_sample_series(tmp_path / "ds", tmp_path / "out", artifact="blur")


def test_the_service_accepts_and_scores_the_sample(
    tmp_path: Path, settings: Settings, client: TestClient, scanner: dict[str, str]
) -> None:
    series = write_sample_series(prepared(tmp_path / "ds"), tmp_path / "out", count=3)
    files = [("files", (p.name, p.read_bytes(), "application/dicom")) for p in series.files]
    r = client.post("/api/v1/series", files=files, headers=scanner)
    assert r.status_code == 202, r.text
    series_id = r.json()["series_id"]
    assert analyse(settings, series_id) == "done"
    body = client.get(f"/api/v1/series/{series_id}", headers=scanner).json()
    assert body["status"] == "done" and len(body["instances"]) == 3
    assert body["protocol"] == "T1 axial, clean"


def test_the_command_writes_the_series_and_prints_how_to_send_it(tmp_path: Path) -> None:
    data, out = prepared(tmp_path / "ds"), tmp_path / "out"
    args = ["sample-series", str(out), "--data", str(data), "--slices", "2"]
    result = CliRunner().invoke(cli, [*args, "--artifact", "motion"])
    assert result.exit_code == 0, result.output
    assert len(list(out.glob("*.dcm"))) == 2
    assert f"for f in {out}/*.dcm" in result.output and "/api/v1/series" in result.output
    assert "'T1 axial, motion (severe)'" in result.output
    again = CliRunner().invoke(cli, args)  # the folder holds a series already
    assert again.exit_code == 2 and "already holds .dcm files" in again.output
