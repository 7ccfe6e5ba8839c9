from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from tests.utils.images import phantom, write_png16
from training.data.build import MANIFEST_COLUMNS
from training.data.samples import load_split
from training.simulate.dataset_build import VARIANTS, materialize_eval

SUBJECTS = {"train": "colin27", "val": "dipy_s0", "test": "mriqc_0042", "transfer": "nibabel_epi"}


def _base(root: Path, per_split: int = 3) -> Path:
    rows = []
    for split, subject in SUBJECTS.items():
        for i in range(per_split):
            file = f"{split}/clean/{subject}_axial_{i:03d}.png"
            write_png16(root / file, phantom(64, hash((split, i)) % 97))
            rows.append(
                {
                    "file": file,
                    "split": split,
                    "label": 0,
                    "source": subject,
                    "subject": subject,
                    "contrast": "T1",
                    "plane": "axial",
                    "index": i,
                }
            )
    with (root / "manifest.csv").open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=MANIFEST_COLUMNS)
        writer.writeheader()
        writer.writerows(rows)
    return root


def test_eval_splits_get_artifact_twins_and_train_stays_clean(tmp_path: Path) -> None:
    root = _base(tmp_path / "ds")
    rows = materialize_eval(root, seed=0, progress=False)
    for split in ("val", "test", "transfer"):
        mine = [r for r in rows if r["split"] == split]
        clean = [r for r in mine if r["label"] == "0"]
        art = [r for r in mine if r["label"] == "1"]
        assert len(clean) == len(art) == 3 * VARIANTS[split]
        assert all(r["kind"] and r["severity"] for r in art)
        assert all(json.loads(r["artifact"])["kind"] == r["kind"] for r in art)
        assert all((root / r["file"]).is_file() for r in mine)
    train = [r for r in rows if r["split"] == "train"]
    assert len(train) == 3 and all(r["label"] == "0" for r in train)
    assert not (root / "train" / "artifact").exists()


def test_materialised_splits_load_with_manifest_info_and_no_leakage(tmp_path: Path) -> None:
    root = _base(tmp_path / "ds")
    materialize_eval(root, seed=0, progress=False)
    groups = {}
    for split in ("train", "val", "test", "transfer"):
        samples = load_split(root, split)
        groups[split] = {s.info.get("subject") for s in samples}
        if split != "train":
            kinds = {s.info.get("kind") for s in samples if s.label == 1}
            assert kinds and "" not in kinds
    subjects = [g for gs in groups.values() for g in gs]
    assert len(subjects) == len(set(subjects))  # a subject is in exactly one split


def test_materialisation_is_deterministic(tmp_path: Path) -> None:
    a = materialize_eval(_base(tmp_path / "a"), seed=5, progress=False)
    b = materialize_eval(_base(tmp_path / "b"), seed=5, progress=False)
    assert [r["artifact"] for r in a] == [r["artifact"] for r in b]
    for r in a:
        assert (tmp_path / "a" / r["file"]).read_bytes() == (
            tmp_path / "b" / r["file"]
        ).read_bytes()


def test_build_all_refuses_a_non_empty_target(tmp_path: Path) -> None:
    from training.simulate.dataset_build import build_all

    (tmp_path / "x").mkdir()
    (tmp_path / "x" / "keep.txt").write_text("mine")
    with pytest.raises(FileExistsError, match="not empty"):
        build_all(tmp_path / "x", tmp_path / "cache", progress=False)
    assert (tmp_path / "x" / "keep.txt").read_text() == "mine"
