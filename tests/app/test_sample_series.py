"""``amaqc sample-series``: consecutive real slices of a source of ``amaqc data build`` (its
cache) written as one DICOM series, optionally with a simulated artifact, that the service
accepts and scores."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pydicom
import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from app.cli import app as cli
from app.config import Settings
from app.sample_series import PATIENT_ID, write_sample_series
from app.worker.inference import analyse
from tests.utils.images import phantom, write_png8
from training.data.sources import SourceError


def cached(root: Path) -> Path:
    """A source cache as ``amaqc data build`` leaves it, without fetching: mriqc_0042's
    ``axial_NNN.png`` slices at 1 mm (20 of them, thinned to 10 at the build's 2 mm; each a
    phantom seeded by its index, so they are told apart), 64x64 but one of them 60x56."""
    folder = root / "mriqc_0042" / "slices"
    for i in range(20):
        image = phantom(64, seed=i)
        write_png8(folder / f"axial_{i:03d}.png", image[:60, :56] if i == 10 else image)
    write_png8(folder / "sagittal_000.png", phantom(64, seed=99))
    return root


def _pixels(path: Path) -> np.ndarray:
    return np.asarray(pydicom.dcmread(path).pixel_array, dtype=np.float32)


def test_a_clean_sample_is_the_middle_slices_of_one_volume_as_one_series(tmp_path: Path) -> None:
    series = write_sample_series(tmp_path / "out", cache_dir=cached(tmp_path / "cache"), count=4)
    assert [p.name for p in series.files] == [f"slice-0{i}.dcm" for i in range(1, 5)]
    assert series.source == "mriqc_0042 axial slices 6..12"
    headers = [pydicom.dcmread(p) for p in series.files]
    assert {h.SeriesInstanceUID for h in headers} == {series.series_uid}
    assert len({h.SOPInstanceUID for h in headers}) == 4
    assert [h.InstanceNumber for h in headers] == [1, 2, 3, 4]
    assert headers[0].PatientID == PATIENT_ID and headers[0].SeriesDescription == "T1 axial, clean"
    assert {(h.Rows, h.Columns) for h in headers} == {(64, 64)}  # slice 10 padded with air
    for path, seed in [(series.files[0], 6), (series.files[1], 8), (series.files[3], 12)]:
        expected = phantom(64, seed=seed)
        got = _pixels(path)
        assert np.corrcoef(got.ravel(), expected.ravel())[0, 1] > 0.99


def test_an_artifact_sample_is_corrupted_the_same_way_each_time(tmp_path: Path) -> None:
    cache = cached(tmp_path / "cache")
    clean = write_sample_series(tmp_path / "clean", cache_dir=cache, count=3)
    ghost = write_sample_series(tmp_path / "g1", cache_dir=cache, artifact="ghosting", count=3)
    again = write_sample_series(tmp_path / "g2", cache_dir=cache, artifact="ghosting", count=3)
    assert ghost.description == "T1 axial, ghosting (severe)"
    assert ghost.series_uid != again.series_uid  # each run is a new series
    for a, b, c in zip(clean.files, ghost.files, again.files, strict=True):
        assert np.abs(_pixels(a) - _pixels(b)).mean() > 5  # of 4095
        np.testing.assert_array_equal(_pixels(b), _pixels(c))


def test_bad_options_are_refused_naming_the_value(tmp_path: Path) -> None:
    cache = cached(tmp_path / "cache")
    with pytest.raises(SourceError, match="unknown source 'brain'"):
        write_sample_series(tmp_path / "out", cache_dir=cache, source="brain")
    with pytest.raises(ValueError, match="artifact kind must be one of .*'blur'"):
        write_sample_series(tmp_path / "out", cache_dir=cache, artifact="blur")
    with pytest.raises(ValueError, match="no coronal slices"):
        write_sample_series(tmp_path / "out", cache_dir=cache, plane="coronal")
    assert not (tmp_path / "out").exists()


def test_the_service_accepts_and_scores_the_sample(
    tmp_path: Path, settings: Settings, client: TestClient, scanner: dict[str, str]
) -> None:
    series = write_sample_series(tmp_path / "out", cache_dir=cached(tmp_path / "cache"), count=3)
    files = [("files", (p.name, p.read_bytes(), "application/dicom")) for p in series.files]
    r = client.post("/api/v1/series", files=files, headers=scanner)
    assert r.status_code == 202, r.text
    series_id = r.json()["series_id"]
    assert analyse(settings, series_id) == "done"
    body = client.get(f"/api/v1/series/{series_id}", headers=scanner).json()
    assert body["status"] == "done" and len(body["instances"]) == 3
    assert body["protocol"] == "T1 axial, clean"
    assert body["acquisition"] == "non_epi"  # an MPRAGE's GR\IR: not echo-planar


@pytest.mark.parametrize(
    ("source", "scanning", "family"),
    [("mriqc_0042", ["GR", "IR"], "non_epi"), ("nibabel_epi", ["EP"], "epi")],
)
def test_a_sample_names_the_sequence_of_its_sources_contrast(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    client: TestClient,
    scanner: dict[str, str],
    source: str,
    scanning: list[str],
    family: str,
) -> None:
    """The service files the sample under the acquisition family a scanner's series of that
    contrast would get (the slices: phantoms, whatever the source)."""
    import app.sample_series as sample

    def phantoms(cache: Path, name: str, plane: str, count: int, **_: object) -> tuple:
        return [phantom(64, seed=i) for i in range(count)], f"{name} {plane} slices"

    monkeypatch.setattr(sample, "pick_slices", phantoms)
    series = write_sample_series(tmp_path / "out", source=source, count=2)
    header = pydicom.dcmread(series.files[0], stop_before_pixels=True)
    value = header.ScanningSequence
    assert (list(value) if isinstance(value, pydicom.multival.MultiValue) else [value]) == scanning
    assert header.SequenceVariant and "ScanOptions" in header
    files = [("files", (p.name, p.read_bytes(), "application/dicom")) for p in series.files]
    series_id = client.post("/api/v1/series", files=files, headers=scanner).json()["series_id"]
    body = client.get(f"/api/v1/series/{series_id}", headers=scanner).json()
    assert body["acquisition"] == family


def test_the_command_writes_the_series_and_prints_how_to_send_it(tmp_path: Path) -> None:
    cache, out = cached(tmp_path / "cache"), tmp_path / "out"
    args = ["sample-series", str(out), "--cache", str(cache), "--slices", "2"]
    result = CliRunner().invoke(cli, [*args, "--artifact", "spike"])
    assert result.exit_code == 0, result.output
    assert len(list(out.glob("*.dcm"))) == 2
    assert f"for f in {out}/*.dcm" in result.output and "/api/v1/series" in result.output
    assert "'T1 axial, spike (severe)'" in result.output
    again = CliRunner().invoke(cli, args)  # the folder holds a series already
    assert again.exit_code == 2 and "already holds .dcm files" in again.output
