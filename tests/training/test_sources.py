"""Source table, fetching into the cache (with stand-in clients: no downloads), mriqc SVGs."""

from __future__ import annotations

import base64
import hashlib
import io
import stat
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from training.data.mriqc_figures import decode_mriqc_svg
from training.data.slices import load_volume, slices_from_path
from training.data.sources import SOURCES, SourceError, cached_path, fetch_sources


def _script(path: Path, body: str) -> Path:
    path.write_text("#!/bin/sh\n" + body)
    path.chmod(path.stat().st_mode | stat.S_IEXEC)
    return path


def _fake_pip(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, members: dict[str, bytes]) -> Path:
    """Make ``sys.executable -m pip download ... -d DIR`` drop a wheel holding ``members``."""
    wheel = tmp_path / "fake-1.0-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    python = _script(
        tmp_path / "python",
        f'while [ $# -gt 0 ]; do [ "$1" = -d ] && cp "{wheel}" "$2"/; shift; done\n',
    )
    monkeypatch.setattr(sys, "executable", str(python))
    return wheel


def _pin(monkeypatch: pytest.MonkeyPatch, name: str, data: bytes) -> None:
    """Let a synthetic file pass the checksum of source ``name``."""
    digest = hashlib.sha256(data).hexdigest()
    monkeypatch.setitem(SOURCES, name, replace(SOURCES[name], sha256=digest))


def _no_downloads(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*args: Any, **kwargs: Any) -> None:
        raise AssertionError(f"unexpected download: {args}")

    monkeypatch.setattr(subprocess, "run", refuse)


# --- the table -----------------------------------------------------------------------------


def test_colin27_files_are_one_subject() -> None:
    colin = [s for s in SOURCES.values() if s.name.startswith("colin27")]
    assert len(colin) == 3
    assert {s.subject for s in colin} == {"colin27"}


def test_every_source_is_documented() -> None:
    for name, s in SOURCES.items():
        assert s.name == name
        assert s.kind in ("template", "subject")
        assert s.contrast in ("T1", "DWI-b0", "EPI")
        assert s.license
        assert s.version
        assert len(s.sha256) == 64
        assert set(s.planes) <= {"axial", "coronal", "sagittal"}
        if s.layout == "npy":  # a single 2-D slice is in one plane
            assert len(s.planes) == 1


# --- fetching ------------------------------------------------------------------------------


def test_cached_sources_are_not_downloaded_again(
    fake_cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _no_downloads(monkeypatch)
    paths = fetch_sources(fake_cache, progress=False)
    assert set(paths) == set(SOURCES)
    assert all(p.exists() for p in paths.values())


def test_unknown_source_raises(tmp_path: Path) -> None:
    with pytest.raises(SourceError, match="unknown source 'colin28'"):
        fetch_sources(tmp_path, names=["colin28"], progress=False)


def test_wheel_member_is_extracted_into_the_cache(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = b"not really a nifti"
    _fake_pip(tmp_path, monkeypatch, {SOURCES["nibabel_epi"].member: data, "other.py": b"x"})
    _pin(monkeypatch, "nibabel_epi", data)
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "tmp"))
    (tmp_path / "tmp").mkdir()
    cache = tmp_path / "cache"

    paths = fetch_sources(cache, names=["nibabel_epi"], progress=False)

    assert paths == {"nibabel_epi": cache / "nibabel_epi" / "example4d.nii.gz"}
    assert paths["nibabel_epi"].read_bytes() == data
    assert sorted(p.name for p in cache.iterdir()) == ["nibabel_epi"]  # no partial folders
    assert list((tmp_path / "tmp").iterdir()) == []  # the download is deleted


def test_mriqc_figure_is_cached_as_slice_pngs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    svg = _svg([_panel(1, _png(np.full((20, 30), 80)), axial=True, number=7)])
    _fake_pip(tmp_path, monkeypatch, {SOURCES["mriqc_0042"].member: svg})
    _pin(monkeypatch, "mriqc_0042", svg)

    path = fetch_sources(tmp_path / "cache", names=["mriqc_0042"], progress=False)["mriqc_0042"]

    assert sorted(p.name for p in path.iterdir()) == ["axial_007.png"]
    with Image.open(path / "axial_007.png") as im:
        assert (im.mode, im.size) == ("L", (30, 20))


def test_checksum_mismatch_caches_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _fake_pip(tmp_path, monkeypatch, {SOURCES["dipy_t1"].member: b"tampered"})
    cache = tmp_path / "cache"
    with pytest.raises(SourceError, match="dipy_t1: .* has SHA-256"):
        fetch_sources(cache, names=["dipy_t1"], progress=False)
    assert list(cache.iterdir()) == []


def test_missing_member_is_named(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _fake_pip(tmp_path, monkeypatch, {"dipy/__init__.py": b""})
    with pytest.raises(SourceError, match="has no member dipy/data/files/aniso_vox.nii.gz"):
        fetch_sources(tmp_path / "cache", names=["dipy_aniso"], progress=False)


def test_failed_apt_get_is_reported_with_its_stderr(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    log = tmp_path / "apt.log"
    _script(
        bin_dir / "apt-get",
        f'echo "$1" >> {log}\n[ "$1" = update ] && exit 0\n'
        'echo "E: Unable to locate package $2" >&2\nexit 100\n',
    )
    monkeypatch.setenv("PATH", str(bin_dir))
    cache = tmp_path / "cache"
    with pytest.raises(SourceError) as err:
        fetch_sources(cache, names=["colin27_ch2"], progress=False)
    assert str(err.value).startswith(
        "could not download mricron-data with apt-get: E: Unable to locate package mricron-data"
    )
    # A missing package list is fetched once (apt-get update) before giving up.
    assert log.read_text().split() == ["download", "update", "download"]
    assert not cached_path(cache, "colin27_ch2").exists()


# --- mriqc SVG figures -----------------------------------------------------------------------


def _png(gray: np.ndarray, rgb: tuple[int, int, int] | None = None) -> str:
    rgba = np.stack([gray, gray, gray, np.full_like(gray, 255)], axis=-1).astype(np.uint8)
    if rgb is not None:
        rgba[0, 0, :3] = rgb
    buf = io.BytesIO()
    Image.fromarray(rgba, "RGBA").save(buf, format="png")
    return base64.b64encode(buf.getvalue()).decode()


def _text(i: int, text: str, x: float) -> str:
    glyphs = "".join(f'<use xlink:href="#DejaVuSans-{ord(c):x}"/>' for c in text)
    return (
        f'<g id="text_{i}"><g style="fill: #ffffff" '
        f'transform="translate({x} 20)scale(0.14 -0.14)">{glyphs}</g></g>'
    )


def _panel(n: int, png: str, *, axial: bool, number: int, l_left: bool = True) -> str:
    x0 = 200.0 * n
    texts = _text(3 * n, str(number), x0 + 50)
    if axial:
        left, right = ("L", "R") if l_left else ("R", "L")
        texts += _text(3 * n + 1, right, x0 + 100) + _text(3 * n + 2, left, x0 + 2)
    return (
        f'<g id="axes_{n}"><g clip-path="url(#c{n})"><image '
        f'xlink:href="data:image/png;base64,\n{png}" '
        f'transform="matrix(1.03 0 0 -1.03 {x0} 170.1)" width="30" height="20"/></g>'
        f"{texts}</g>"
    )


def _svg(panels: list[str]) -> bytes:
    return (
        '<?xml version="1.0" encoding="utf-8" standalone="no"?>\n'
        '<svg xmlns:xlink="http://www.w3.org/1999/xlink" '
        'xmlns="http://www.w3.org/2000/svg" version="1.1"><g id="figure_1">'
        + "".join(panels)
        + "</g></svg>"
    ).encode()


def test_mriqc_svg_slices_are_decoded_and_oriented() -> None:
    raw = np.zeros((20, 30), np.uint8)
    raw[0, 0] = 200  # top-left of the stored PNG
    svg = _svg(
        [
            _panel(0, _png(raw), axial=True, number=12),  # neurological: mirrored
            _panel(1, _png(raw), axial=True, number=13, l_left=False),  # already radiological
            _panel(2, _png(raw), axial=False, number=57),  # sagittal
            _panel(3, _png(raw, rgb=(255, 0, 0)), axial=True, number=14),  # colour overlay
        ]
    )
    slices = decode_mriqc_svg(svg)
    assert [(p, i) for p, i, _ in slices] == [("axial", 12), ("axial", 13), ("sagittal", 57)]
    corners = [tuple(int(v) for v in np.argwhere(im == 200)[0]) for _, _, im in slices]
    # The image transform flips rows (d < 0); L-left panels and sagittal ones are mirrored.
    assert corners == [(19, 29), (19, 0), (19, 29)]
    assert all(im.dtype == np.uint8 and im.shape == (20, 30) for _, _, im in slices)


# --- the real thing ----------------------------------------------------------------------------

EXPECTED_SHAPES = {
    "colin27_ch2": (181, 217, 181),
    "colin27_ch2bet": (181, 217, 181),
    "colin27_ch2better": (301, 370, 316),
    "mni152": (197, 233, 189),
    "dipy_s0": (128, 128, 10),
    "dipy_aniso": (58, 58, 24),
    "nibabel_epi": (128, 96, 24),
    "dipy_t1": (256, 256),
}


@pytest.mark.slow
def test_real_sources_fetch_and_load(source_cache: Path) -> None:
    paths = fetch_sources(source_cache, progress=False)
    assert set(paths) == set(SOURCES)
    for name, shape in EXPECTED_SHAPES.items():
        volume = load_volume(paths[name])
        assert volume.shape == shape, name
        assert np.isfinite(volume).all()
        assert volume.max() > volume.min(), name
    for name in ("mriqc_0017", "mriqc_0042"):
        files = sorted(p.name for p in paths[name].iterdir())
        assert sum(f.startswith("axial_") for f in files) >= 120, name
        assert sum(f.startswith("sagittal_") for f in files) == 6, name
    for name, path in paths.items():
        assert slices_from_path(path, planes=SOURCES[name].planes), name
    # Idempotent: a second call finds everything cached.
    assert fetch_sources(source_cache, progress=False) == paths
