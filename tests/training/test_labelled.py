"""Labelled dataset layouts: class folders, split folders, labels.csv / labels.xlsx sheets."""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import openpyxl
import pytest
from PIL import Image

from training.data.io import LabelledDataset, LabelledItem, load_labelled_dataset


def image(path: Path, slices: int = 1) -> Path:
    """A tiny image file: PNG for one slice, (N, 4, 4) .npy for several."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if slices == 1 and path.suffix == ".png":
        Image.fromarray(np.zeros((4, 4), np.uint8)).save(path)
    else:
        np.save(path, np.zeros((slices, 4, 4), np.float32))
    return path


def write_csv(path: Path, rows: Sequence[Sequence[object]], sep: str = ",") -> Path:
    path.write_text("\n".join(sep.join(str(c) for c in row) for row in rows) + "\n")
    return path


def write_xlsx(path: Path, rows: Sequence[Sequence[object]]) -> Path:
    workbook = openpyxl.Workbook()
    sheet = workbook.active
    assert sheet is not None
    for row in rows:
        sheet.append(list(row))
    workbook.save(path)
    return path


def load_quietly(root: Path, **kwargs: object) -> LabelledDataset:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return load_labelled_dataset(root, **kwargs)  # type: ignore[arg-type]


# --- folder layouts --------------------------------------------------------------------------


def test_class_folders_any_depth(tmp_path: Path) -> None:
    image(tmp_path / "clean" / "a.png")
    image(tmp_path / "clean" / "p01" / "series" / "b.png")
    image(tmp_path / "artifact" / "p01" / "c.npy", slices=3)
    dataset = load_labelled_dataset(tmp_path)
    assert dataset.layout == "class-folders" and len(dataset) == 5
    by_name = {(i.path.name, i.slice_index): i for i in dataset.items}
    assert by_name[("a.png", 0)] == LabelledItem(tmp_path / "clean" / "a.png", 0, 0, "a", None)
    assert by_name[("b.png", 0)].group == "p01" == by_name[("c.npy", 2)].group
    assert [by_name[("c.npy", k)].label for k in range(3)] == [1, 1, 1]
    summary = dataset.summary()
    assert summary.per_label == {"clean": 2, "artifact": 3}
    assert summary.per_split == {"unsplit": {"clean": 2, "artifact": 3}}
    assert (summary.n_files, summary.n_groups) == (3, 2)
    assert "5 slices from 3 files" in str(summary)


def test_split_folders_give_the_split(tmp_path: Path) -> None:
    for split, n_clean, n_artifact in [("train", 2, 1), ("val", 1, 1), ("test", 0, 2)]:
        for i in range(n_clean):
            image(tmp_path / split / "clean" / f"{split}{i}.png")
        for i in range(n_artifact):
            image(tmp_path / split / "Artefact" / f"{split}_bad{i}.png")
    dataset = load_labelled_dataset(tmp_path)
    assert dataset.layout == "split-folders"
    assert dataset.summary().per_split == {
        "test": {"clean": 0, "artifact": 2},
        "train": {"clean": 2, "artifact": 1},
        "val": {"clean": 1, "artifact": 1},
    }


def test_files_outside_class_folders_and_unreadable_files_are_reported(tmp_path: Path) -> None:
    image(tmp_path / "clean" / "a.png")
    image(tmp_path / "stray.png")
    (tmp_path / "artifact").mkdir()
    (tmp_path / "artifact" / "broken.png").write_text("not an image")
    with pytest.warns(UserWarning, match="1 files unlabelled, 1 unreadable files skipped"):
        dataset = load_labelled_dataset(tmp_path)
    assert len(dataset) == 1
    assert dataset.unlabelled == [tmp_path / "stray.png"]
    assert [(p.name, "content is not a PNG" in r) for p, r in dataset.unreadable] == [
        ("broken.png", True)
    ]


def test_verify_decodes_pixels(tmp_path: Path) -> None:
    path = tmp_path / "clean" / "a.png"
    path.parent.mkdir()
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64), np.uint8)).save(path)
    path.write_bytes(path.read_bytes()[:2000])  # header fine, image data cut
    assert len(load_quietly(tmp_path, verify=False)) == 1
    with pytest.raises(ValueError, match="no labelled, readable image found"):
        load_quietly(tmp_path, verify=True)


@pytest.mark.parametrize(
    ("folders", "message"),
    [
        ([], "no labels.csv / labels.xlsx and no clean/ \\+ artifact/ folders"),
        (["train/clean", "clean"], "both split folders"),
        (["train/images"], "split folder without clean/ or artifact/"),
    ],
)
def test_unrecognised_layouts_are_refused(tmp_path: Path, folders: list[str], message: str) -> None:
    for folder in folders:
        image(tmp_path / folder / "x.png")
    with pytest.raises(ValueError, match=message):
        load_labelled_dataset(tmp_path)


# --- labels sheets ---------------------------------------------------------------------------


def test_csv_with_file_column_and_word_labels(tmp_path: Path) -> None:
    image(tmp_path / "img" / "a.png")
    image(tmp_path / "img" / "b.png")
    image(tmp_path / "c.npy", slices=2)
    rows = [["File Name", "Label"], ["img/a.png", "clean"], ["B.PNG", "Artifact"], ["c", "yes"]]
    write_csv(tmp_path / "labels.csv", rows, sep=";")
    dataset = load_labelled_dataset(tmp_path)
    assert dataset.layout == "labels-file"
    labels = {(i.path.name, i.slice_index): i.label for i in dataset.items}
    assert labels == {("a.png", 0): 0, ("b.png", 0): 1, ("c.npy", 0): 1, ("c.npy", 1): 1}
    # no patient column: the first sub-folder, else the file stem, is the group
    assert {i.group for i in dataset.items} == {"img", "c"}


def test_xlsx_with_patient_ids_matching_folders_like_the_paper_sheet(tmp_path: Path) -> None:
    image(tmp_path / "007" / "s1.png")
    image(tmp_path / "007" / "s2.png")
    image(tmp_path / "012" / "vol.npy", slices=3)
    image(tmp_path / "013.png")
    rows: list[list[object]] = [
        ["Patient ID", "Artifact", "Split"],
        [7, True, "training"],  # Excel turned "007" into the number 7
        [12.0, 0, "test"],
        ["013", "no", "validation"],
    ]
    write_xlsx(tmp_path / "labels.xlsx", rows)
    dataset = load_labelled_dataset(tmp_path)
    items = {(i.path.name, i.slice_index): i for i in dataset.items}
    assert len(items) == 6
    assert (items[("s1.png", 0)].label, items[("s1.png", 0)].group) == (1, "7")
    assert items[("s2.png", 0)].split == "train"
    assert {(items[("vol.npy", k)].label, items[("vol.npy", k)].split) for k in range(3)} == {
        (0, "test")
    }
    assert (items[("013.png", 0)].label, items[("013.png", 0)].split) == (0, "val")
    assert dataset.summary().per_split["test"] == {"clean": 3, "artifact": 0}


def test_file_column_with_a_patient_column_groups_by_patient(tmp_path: Path) -> None:
    image(tmp_path / "x1.png")
    image(tmp_path / "x2.png")
    rows: list[list[object]] = [
        ["image", "patient", "class"],
        ["x1.png", "P1", 1],
        ["x2.png", "P1", 0],
    ]
    write_csv(tmp_path / "labels.csv", rows)
    assert {i.group for i in load_labelled_dataset(tmp_path).items} == {"P1"}


def test_windows_and_absolute_paths_in_the_sheet_are_matched(tmp_path: Path) -> None:
    image(tmp_path / "sub" / "a.png")
    write_csv(tmp_path / "labels.csv", [["path", "label"], ["C:\\data\\study\\sub\\a.png", "1"]])
    (item,) = load_labelled_dataset(tmp_path).items
    assert item.path == tmp_path / "sub" / "a.png" and item.label == 1


def test_missing_and_unlabelled_files_are_counted_not_fatal(tmp_path: Path) -> None:
    image(tmp_path / "a.png")
    image(tmp_path / "b.png")
    image(tmp_path / "c.png")
    rows: list[list[object]] = [
        ["filename", "label"],
        ["a.png", 0],
        ["gone.png", 1],
        ["lost.dcm", 0],
        ["b.png", ""],
    ]
    write_csv(tmp_path / "labels.csv", rows)
    with pytest.warns(UserWarning, match="2 listed files missing, 2 files unlabelled"):
        dataset = load_labelled_dataset(tmp_path)
    assert [i.path.name for i in dataset.items] == ["a.png"]
    assert dataset.missing == ["gone.png", "lost.dcm"]
    assert sorted(p.name for p in dataset.unlabelled) == ["b.png", "c.png"]
    summary = dataset.summary()
    assert (summary.n_missing, summary.n_unlabelled, summary.n_unreadable) == (2, 2, 0)


@pytest.mark.parametrize(
    ("header", "message"),
    [
        (["file", "path", "label"], "ambiguous file column \\('file' and 'path'\\)"),
        (["file", "label", "class"], "ambiguous label column"),
        (["file", "quality"], "no label column .* columns found: 'file', 'quality'"),
        (["name", "label"], "no file column .* columns found: 'name', 'label'"),
    ],
)
def test_sheets_with_unidentifiable_columns_are_refused(
    tmp_path: Path, header: list[str], message: str
) -> None:
    image(tmp_path / "a.png")
    write_csv(tmp_path / "labels.csv", [header, ["a.png"] * len(header)])
    with pytest.raises(ValueError, match=f"labels.csv: {message}"):
        load_labelled_dataset(tmp_path)


def test_bad_label_values_and_conflicts_are_refused(tmp_path: Path) -> None:
    image(tmp_path / "a.png")
    write_csv(tmp_path / "labels.csv", [["file", "label"], ["a.png", "maybe"]])
    with pytest.raises(ValueError, match="labels.csv row 2: label 'maybe' is not one of"):
        load_labelled_dataset(tmp_path)
    write_csv(tmp_path / "labels.csv", [["file", "label"], ["a.png", 1], ["a", 0]])
    with pytest.raises(ValueError, match="rows 2 and 3 give a.png different labels"):
        load_labelled_dataset(tmp_path)


def test_a_name_matching_two_files_is_refused(tmp_path: Path) -> None:
    image(tmp_path / "p1" / "IM1.png")
    image(tmp_path / "p2" / "IM1.png")
    write_csv(tmp_path / "labels.csv", [["file", "label"], ["IM1.png", 1]])
    with pytest.raises(ValueError, match="'IM1.png' matches 2 files/folders"):
        load_labelled_dataset(tmp_path)


def test_sheet_and_class_folders_together_need_a_choice(tmp_path: Path) -> None:
    image(tmp_path / "clean" / "a.png")
    sheet = write_csv(tmp_path / "labels.csv", [["file", "label"], ["clean/a.png", 1]])
    with pytest.raises(ValueError, match="both labels.csv and class/split folders"):
        load_labelled_dataset(tmp_path)
    (item,) = load_labelled_dataset(tmp_path, labels_file=sheet).items
    assert item.label == 1


def test_a_corrupt_spreadsheet_is_a_value_error(tmp_path: Path) -> None:
    image(tmp_path / "a.png")
    (tmp_path / "labels.xlsx").write_bytes(b"PK\x03\x04 not really a zip")
    with pytest.raises(ValueError, match="labels.xlsx: cannot read the sheet"):
        load_labelled_dataset(tmp_path)
