"""PNG, JPEG, NIfTI and .npy input, file discovery, and reading many files with skips.

DICOM has its own file (test_dicom_reader.py), labelled layouts theirs (test_labelled.py).
"""

from __future__ import annotations

import random
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from PIL import Image
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, MRImageStorage, RLELossless, generate_uid

from training.data.io import (
    ReadReport,
    Slice,
    UnreadableImage,
    count_slices,
    iter_image_files,
    read_many,
    read_slices,
)

RNG = np.random.default_rng(1)


def write_png(path: Path, pixels: np.ndarray) -> Path:
    Image.fromarray(pixels).save(path)
    return path


def write_nifti(path: Path, data: np.ndarray, affine: np.ndarray | None = None) -> Path:
    nib.save(nib.Nifti1Image(data, np.eye(4) if affine is None else affine), path)
    return path


def write_dicom(path: Path, pixels: np.ndarray, *, compress: bool = False) -> Path:
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = MRImageStorage
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID, ds.SOPInstanceUID, ds.Modality = MRImageStorage, generate_uid(), "MR"
    ds.Rows, ds.Columns = pixels.shape
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 0
    ds.PixelData = pixels.astype("<u2").tobytes()
    if compress:
        ds.compress(RLELossless)
    ds.save_as(path, enforce_file_format=True)
    return path


# --- PNG / JPEG ------------------------------------------------------------------------------


def test_8_bit_png_values_are_raw(tmp_path: Path) -> None:
    pixels = RNG.integers(0, 256, (5, 7)).astype(np.uint8)
    (s,) = read_slices(write_png(tmp_path / "a.png", pixels))
    assert isinstance(s, Slice) and s.index == 0 and s.meta["format"] == "png"
    assert s.pixels.dtype == np.float32
    np.testing.assert_array_equal(s.pixels, pixels)


def test_16_bit_png_keeps_all_16_bits(tmp_path: Path) -> None:
    pixels = np.array([[0, 255, 256], [4095, 40000, 65535]], dtype=np.uint16)
    path = write_png(tmp_path / "b.png", pixels)
    assert Image.open(path).mode in ("I;16", "I")
    (s,) = read_slices(path)
    np.testing.assert_array_equal(s.pixels, pixels)


def test_rgb_png_becomes_luminance(tmp_path: Path) -> None:
    rgb = np.array([[[255, 0, 0], [0, 255, 0], [0, 0, 255], [50, 50, 50]]], dtype=np.uint8)
    (s,) = read_slices(write_png(tmp_path / "rgb.png", rgb))
    np.testing.assert_allclose(s.pixels, [[76.245, 149.685, 29.07, 50]], rtol=1e-5)


def test_jpeg_greyscale_and_colour(tmp_path: Path) -> None:
    y, x = np.mgrid[0:16, 0:16]
    grey = (8 * x + 4 * y).astype(np.uint8)
    Image.fromarray(grey).save(tmp_path / "g.jpg", quality=95)
    Image.fromarray(np.stack([grey] * 3, axis=-1)).save(tmp_path / "c.jpeg", quality=95)
    for name in ("g.jpg", "c.jpeg"):
        (s,) = read_slices(tmp_path / name)
        assert s.meta["format"] == "jpeg" and s.pixels.shape == (16, 16)
        assert np.abs(s.pixels - grey).max() <= 6


def test_text_file_named_png_is_unreadable(tmp_path: Path) -> None:
    path = tmp_path / "notes.png"
    path.write_text("this is not an image\n")
    with pytest.raises(UnreadableImage, match=r"^notes\.png: content is not a PNG file"):
        read_slices(path)


def test_truncated_png_is_unreadable(tmp_path: Path) -> None:
    path = write_png(tmp_path / "cut.png", RNG.integers(0, 65535, (64, 64)).astype(np.uint16))
    path.write_bytes(path.read_bytes()[:300])
    with pytest.raises(UnreadableImage, match=r"^cut\.png: "):
        read_slices(path)


# --- NIfTI -----------------------------------------------------------------------------------


def test_nifti_3d_gives_one_slice_per_axial_slice(tmp_path: Path) -> None:
    data = RNG.normal(size=(6, 5, 4)).astype(np.float32)  # (x=R, y=A, z=S), RAS affine
    path = write_nifti(tmp_path / "vol.nii.gz", data)
    slices = read_slices(path)
    assert [s.index for s in slices] == [0, 1, 2, 3] and count_slices(path) == 4
    # shown like a DICOM axial image: rows anterior -> posterior, columns right -> left
    for k, s in enumerate(slices):
        assert s.pixels.shape == (5, 6)
        np.testing.assert_array_equal(s.pixels, data[:, :, k].T[::-1, ::-1])
    assert slices[0].meta["format"] == "nifti"


def test_nifti_stored_sagittally_is_still_cut_axially(tmp_path: Path) -> None:
    data = RNG.normal(size=(3, 4, 5)).astype(np.float32)
    # voxel axes (i, j, k) -> (A, S, R): the axial axis is voxel axis j (4 slices)
    affine = np.array([[0, 0, 1, 0], [1, 0, 0, 0], [0, 1, 0, 0], [0, 0, 0, 1]], dtype=float)
    path = write_nifti(tmp_path / "sag.nii", data, affine)
    slices = read_slices(path)
    assert len(slices) == 4 == count_slices(path)
    np.testing.assert_array_equal(slices[2].pixels, data[:, 2, :][::-1, ::-1])


def test_nifti_4d_reads_the_first_volume_and_2d_one_slice(tmp_path: Path) -> None:
    data = RNG.normal(size=(4, 4, 3, 5)).astype(np.float32)
    slices = read_slices(write_nifti(tmp_path / "fmri.nii.gz", data))
    assert len(slices) == 3
    np.testing.assert_array_equal(slices[1].pixels, data[:, :, 1, 0].T[::-1, ::-1])
    flat = read_slices(write_nifti(tmp_path / "flat.nii", data[:, :, 0, 0]))
    assert len(flat) == 1 and flat[0].pixels.shape == (4, 4)


def test_single_sagittal_nifti_image_is_one_slice(tmp_path: Path) -> None:
    data = RNG.normal(size=(1, 4, 5)).astype(np.float32)  # one R-L position: (1, A, S)
    path = write_nifti(tmp_path / "sag1.nii", data)
    (s,) = read_slices(path)
    assert count_slices(path) == 1
    np.testing.assert_array_equal(s.pixels, data[0].T[::-1, ::-1])  # superior up


def test_nifti_scaling_is_applied(tmp_path: Path) -> None:
    img = nib.Nifti1Image(np.arange(8, dtype=np.int16).reshape(2, 2, 2), np.eye(4))
    img.header.set_slope_inter(2.0, 10.0)
    nib.save(img, tmp_path / "scaled.nii")
    values = np.concatenate([s.pixels.ravel() for s in read_slices(tmp_path / "scaled.nii")])
    assert sorted(values.tolist()) == [10 + 2 * v for v in range(8)]


def test_nifti_with_nan_is_unreadable(tmp_path: Path) -> None:
    data = np.ones((3, 3, 2), np.float32)
    data[1, 1, 1] = np.nan
    with pytest.raises(UnreadableImage, match=r"^nan\.nii\.gz: contains NaN"):
        read_slices(write_nifti(tmp_path / "nan.nii.gz", data))


# --- .npy and other files ----------------------------------------------------------------


def test_npy_2d_and_3d(tmp_path: Path) -> None:
    np.save(tmp_path / "one.npy", np.arange(6, dtype=np.int16).reshape(2, 3))
    np.save(tmp_path / "stack.npy", np.zeros((4, 2, 3), np.uint8))
    assert len(read_slices(tmp_path / "one.npy")) == 1
    assert [s.index for s in read_slices(tmp_path / "stack.npy")] == [0, 1, 2, 3]
    assert count_slices(tmp_path / "stack.npy") == 4


@pytest.mark.parametrize(
    ("name", "content", "reason"),
    [
        ("vector.npy", np.zeros(5), r"shape \(5,\) is not \(H, W\) or \(N, H, W\)"),
        ("objects.npy", np.array([{"a": 1}, None], dtype=object), "Object arrays cannot be loaded"),
        ("random.bin", b"\x00\x01garbage" * 20, "unrecognised file format"),
        ("empty.dcm", b"", "file is empty"),
    ],
)
def test_other_files_are_unreadable(
    tmp_path: Path, name: str, content: bytes | np.ndarray, reason: str
) -> None:
    path = tmp_path / name
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        np.save(path, content, allow_pickle=True)
    with pytest.raises(UnreadableImage, match=reason):
        read_slices(path)
    with pytest.raises(UnreadableImage):
        count_slices(path)


def test_missing_file_and_folder(tmp_path: Path) -> None:
    with pytest.raises(UnreadableImage, match="gone.png: file not found"):
        read_slices(tmp_path / "gone.png")
    with pytest.raises(UnreadableImage, match="is a folder"):
        read_slices(tmp_path)


def test_unreadable_image_is_a_value_error() -> None:
    assert issubclass(UnreadableImage, ValueError)


@pytest.mark.filterwarnings("ignore:End of file reached")
def test_corrupted_files_raise_only_unreadable_image(tmp_path: Path) -> None:
    """Cut and bit-flip valid files of every format: a result or UnreadableImage, nothing else."""
    pixels = RNG.integers(0, 4096, (64, 48)).astype(np.uint16)
    sources = [
        write_dicom(tmp_path / "plain.dcm", pixels),
        write_dicom(tmp_path / "rle.dcm", pixels, compress=True),
        write_png(tmp_path / "p.png", pixels),
        write_nifti(tmp_path / "v.nii.gz", pixels.reshape(8, 8, 48).astype(np.int16)),
        write_nifti(tmp_path / "v.nii", pixels.reshape(8, 8, 48).astype(np.float32)),
    ]
    Image.fromarray((pixels >> 4).astype(np.uint8)).save(tmp_path / "j.jpg")
    np.save(tmp_path / "a.npy", pixels)
    sources += [tmp_path / "j.jpg", tmp_path / "a.npy"]
    rand = random.Random(0)
    for source in sources:
        data = bytearray(source.read_bytes())
        for trial in range(8):
            broken = bytearray(data)
            if trial % 2:
                del broken[rand.randrange(1, len(broken)) :]
            else:
                for _ in range(1 + trial):
                    broken[rand.randrange(len(broken))] ^= 1 << rand.randrange(8)
            target = tmp_path / f"broken{trial}_{source.name}"
            target.write_bytes(bytes(broken))
            for reader in (read_slices, count_slices):
                try:
                    reader(target)
                except UnreadableImage as exc:
                    assert str(exc).startswith(f"{target.name}: ")


# --- discovery and reading many files --------------------------------------------------------


def test_iter_image_files_is_recursive_sorted_and_skips_hidden(tmp_path: Path) -> None:
    for rel in ["b/2.png", "b/10.png", "a.dcm", "IM0001", ".hidden.png", ".git/x.png",
                "labels.csv", "c/d/e.nii.gz"]:  # fmt: skip
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_bytes(b"x")
    found = [p.relative_to(tmp_path).as_posix() for p in iter_image_files(tmp_path)]
    assert found == ["IM0001", "a.dcm", "b/10.png", "b/2.png", "c/d/e.nii.gz"]
    assert list(iter_image_files(tmp_path / "a.dcm")) == [tmp_path / "a.dcm"]
    with pytest.raises(FileNotFoundError):
        list(iter_image_files(tmp_path / "nope"))


def test_read_many_skips_and_lists_unreadable_files(tmp_path: Path) -> None:
    good = write_png(tmp_path / "good.png", np.zeros((4, 4), np.uint8))
    np.save(tmp_path / "stack.npy", np.zeros((3, 4, 4), np.float32))
    (tmp_path / "fake.png").write_text("no")
    (tmp_path / "junk.bin").write_bytes(b"\x01" * 10)
    paths = [good, tmp_path / "fake.png", tmp_path / "stack.npy", tmp_path / "junk.bin"]
    with pytest.warns(UserWarning, match="skipped 2 unreadable files"):
        report = read_many(paths)
    assert isinstance(report, ReadReport)
    assert (report.n_files, report.n_slices, report.n_skipped) == (2, 4, 2)
    assert list(report.slices) == [good, tmp_path / "stack.npy"]
    assert [(p.name, "content is not a PNG" in r) for p, r in report.skipped[:1]] == [
        ("fake.png", True)
    ]
    assert report.skipped[1][0].name == "junk.bin" and len(report.all_slices()) == 4


def test_read_many_can_raise_and_rejects_bad_options(tmp_path: Path) -> None:
    (tmp_path / "fake.png").write_text("no")
    with pytest.raises(UnreadableImage, match="fake.png"):
        read_many([tmp_path / "fake.png"], on_error="raise")
    with pytest.raises(ValueError, match="on_error must be 'skip' or 'raise', got 'ignore'"):
        read_many([], on_error="ignore")  # type: ignore[arg-type]


def test_read_many_without_problems_is_silent(
    tmp_path: Path, recwarn: pytest.WarningsRecorder
) -> None:
    path = write_png(tmp_path / "ok.png", np.zeros((2, 2), np.uint8))
    assert read_many(iter_image_files(tmp_path)).n_slices == 1
    assert read_many([path, path]).n_files == 1
    assert not recwarn.list
