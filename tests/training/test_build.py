"""Building the clean base dataset from a (fake) source cache: layout, manifest, no leakage."""

from __future__ import annotations

import csv
import json
from collections import defaultdict
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from training.data import build as build_module
from training.data.build import (
    MANIFEST_COLUMNS,
    SPLIT_OF_SUBJECT,
    SPLITS,
    BuildSummary,
    build_dataset,
    split_of,
)
from training.data.sources import SOURCES


def _build(out: Path, cache: Path, **kw: bool) -> BuildSummary:
    return build_dataset(out, cache, progress=False, step_mm=6.0, **kw)


def _manifest(out: Path) -> list[dict[str, str]]:
    with (out / "manifest.csv").open(newline="") as f:
        return list(csv.DictReader(f))


def test_split_of_follows_the_plan() -> None:
    assert {split_of(n) for n in ("colin27_ch2", "colin27_ch2bet", "colin27_ch2better")} == {
        "train"
    }
    assert split_of("mni152") == split_of("mriqc_0017") == "train"
    assert split_of("dipy_s0") == split_of("dipy_t1") == "val"
    assert split_of("mriqc_0042") == "test"
    assert split_of("nibabel_epi") == split_of("dipy_aniso") == "transfer"


def test_split_of_unknown_source_raises() -> None:
    with pytest.raises(ValueError, match="unknown source 'ch2'"):
        split_of("ch2")


def test_every_subject_has_exactly_one_split() -> None:
    # By construction: the split is looked up by subject, so all of a subject's sources agree.
    assert {s.subject for s in SOURCES.values()} == set(SPLIT_OF_SUBJECT)
    assert set(SPLIT_OF_SUBJECT.values()) == set(SPLITS)
    splits_of_subject: dict[str, set[str]] = defaultdict(set)
    for name, s in SOURCES.items():
        splits_of_subject[s.subject].add(split_of(name))
    assert all(len(v) == 1 for v in splits_of_subject.values())


def test_build_writes_the_layout_and_manifest(tmp_path: Path, fake_cache: Path) -> None:
    out = tmp_path / "dataset"
    summary = _build(out, fake_cache)
    rows = _manifest(out)

    assert list(rows[0]) == list(MANIFEST_COLUMNS)
    assert len(rows) == summary.total > 0
    assert summary.per_source.keys() == SOURCES.keys()
    assert all(summary.per_source[n] > 0 for n in SOURCES), summary.per_source
    for split in SPLITS:
        assert summary.per_split[split] == sum(r["split"] == split for r in rows)
    for r in rows:
        name = f"{r['source']}_{r['plane']}_{int(r['index']):03d}.png"
        assert r["file"] == f"{r['split']}/clean/{name}"
        assert r["label"] == "0"
        assert r["split"] == split_of(r["source"])
        assert r["subject"] == SOURCES[r["source"]].subject
        assert r["contrast"] == SOURCES[r["source"]].contrast
        assert (out / r["file"]).is_file()
    assert sorted(p.name for p in out.iterdir()) == sorted(
        [*SPLITS, "manifest.csv", "sources.json"]
    )
    assert not list(tmp_path.glob(".dataset.partial-*"))


def test_sources_are_cut_only_in_their_planes(tmp_path: Path, fake_cache: Path) -> None:
    _build(tmp_path / "dataset", fake_cache)
    planes: dict[str, set[str]] = defaultdict(set)
    for r in _manifest(tmp_path / "dataset"):
        planes[r["source"]].add(r["plane"])
    assert planes["colin27_ch2bet"] == {"axial"}  # its mask streaks in reformats
    assert planes["colin27_ch2"] == {"axial", "coronal", "sagittal"}
    assert planes["dipy_t1"] == {"coronal"}
    assert planes["mriqc_0017"] == {"axial", "sagittal"}


def test_manifest_has_no_subject_in_two_splits(tmp_path: Path, fake_cache: Path) -> None:
    _build(tmp_path / "dataset", fake_cache)
    splits: dict[str, set[str]] = defaultdict(set)
    for r in _manifest(tmp_path / "dataset"):
        splits[r["subject"]].add(r["split"])
    assert splits.keys() == SPLIT_OF_SUBJECT.keys()
    assert all(len(s) == 1 for s in splits.values()), splits


def test_pngs_are_16_bit_full_range(tmp_path: Path, fake_cache: Path) -> None:
    _build(tmp_path / "dataset", fake_cache)
    for r in _manifest(tmp_path / "dataset")[::7]:
        with Image.open(tmp_path / "dataset" / r["file"]) as im:
            assert im.mode == "I;16"
            pixels = np.asarray(im)
        assert pixels.dtype == np.uint16
        assert pixels.max() == 65535


def test_provenance_is_recorded(tmp_path: Path, fake_cache: Path) -> None:
    _build(tmp_path / "dataset", fake_cache)
    info = json.loads((tmp_path / "dataset" / "sources.json").read_text())
    assert info["seed"] == 0
    assert info["sources"]["mni152"]["package"] == "nilearn"
    assert info["sources"]["mni152"]["version"] == "0.14.1"
    assert info["sources"]["colin27_ch2"]["license"] == "BSD-3-Clause"
    assert info["sources"]["mriqc_0042"]["split"] == "test"


def test_rebuilding_needs_overwrite(tmp_path: Path, fake_cache: Path) -> None:
    out = tmp_path / "dataset"
    first = _build(out, fake_cache)
    with pytest.raises(FileExistsError, match="pass overwrite=True"):
        _build(out, fake_cache)
    assert _build(out, fake_cache, overwrite=True) == first


def test_overwrite_refuses_a_folder_that_is_not_a_dataset(tmp_path: Path, fake_cache: Path) -> None:
    out = tmp_path / "photos"
    out.mkdir()
    (out / "holiday.jpg").write_bytes(b"")
    with pytest.raises(FileExistsError, match="not an amaqc dataset"):
        _build(out, fake_cache, overwrite=True)
    assert (out / "holiday.jpg").exists()


def test_a_failed_build_leaves_no_partial_dataset(
    tmp_path: Path, fake_cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(*args: object, **kwargs: object) -> None:
        raise RuntimeError("disk full")

    monkeypatch.setattr(build_module, "_write_manifest", broken)
    with pytest.raises(RuntimeError, match="disk full"):
        _build(tmp_path / "dataset", fake_cache)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cache"]
