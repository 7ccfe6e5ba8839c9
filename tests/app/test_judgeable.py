"""What the detector cannot judge is refused (422 naming the file and why), nothing stored:
slices smaller than one patch of the active model, slices of one value, NIfTI files of more
than one volume; the smallest side follows the active checkpoint, not a constant."""

from __future__ import annotations

import io
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image
from sqlalchemy import func, select

import model
from app.config import Settings
from app.db.models import Instance
from app.db.session import session_scope
from app.model_versions import register_checkpoint
from tests.utils.images import phantom
from tests.utils.service import TINY_NORMALIZATION, dicom_bytes, png_bytes


def _png8(image: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(image.astype(np.uint8)).save(buffer, format="PNG")
    return buffer.getvalue()


def _nifti(volume: np.ndarray) -> bytes:
    return bytes(nib.Nifti1Image(volume.astype(np.float32), np.eye(4)).to_bytes())


def _instances(settings: Settings) -> int:
    with session_scope(settings.database_url) as session:
        return int(session.scalar(select(func.count()).select_from(Instance)) or 0)


def _post(client: TestClient, headers: dict[str, str], name: str, data: bytes) -> tuple[int, str]:
    r = client.post("/api/v1/slices", files=[("files", (name, data))], headers=headers)
    return r.status_code, r.json().get("detail", "")


CASES = {
    "1x1 PNG": (
        "one.png",
        lambda: _png8(np.full((1, 1), 9)),
        "one.png: image is 1x1; the detector needs at least 64x64",
    ),
    "smaller than a patch": (
        "small.png",
        lambda: png_bytes(phantom(48)),
        "small.png: image is 48x48; the detector needs at least 64x64",
    ),
    "thin strip": (
        "strip.dcm",
        lambda: dicom_bytes(phantom(256)[:20]),
        "strip.dcm: image is 20x256; the detector needs at least 64x64",
    ),
    "all-constant PNG": (
        "flat.png",
        lambda: _png8(np.full((128, 128), 7)),
        "flat.png: every pixel is 7, an image without contrast that cannot be judged",
    ),
    "all-zero DICOM": (
        "black.dcm",
        lambda: dicom_bytes(np.zeros((64, 64), np.float32)),
        "black.dcm: every pixel is 0",
    ),
    "constant slice of a volume": (
        "v.nii",
        lambda: _nifti(np.stack([phantom(64), np.zeros((64, 64)), phantom(64, 1)], axis=-1)),
        "v.nii: slice 2 of 3: every pixel is 0",
    ),
    "4-D NIfTI": (
        "fmri.nii",
        lambda: _nifti(np.stack([np.stack([phantom(64, i) for i in range(3)], -1)] * 2, -1)),
        "fmri.nii: a NIfTI of 2 volumes (shape 64x64x3x2); send one 3-D volume per file",
    ),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_what_cannot_be_judged_is_422_naming_file_and_why(
    case: str, client: TestClient, settings: Settings, scanner: dict[str, str]
) -> None:
    name, make, words = CASES[case]
    data = make()
    for route in ("/api/v1/slices", "/api/v1/series"):
        r = client.post(route, files=[("files", (name, data))], headers=scanner)
        assert r.status_code == 422, r.text
        assert words in r.json()["detail"]
    assert _instances(settings) == 0


def test_a_slice_of_exactly_one_patch_is_accepted(
    client: TestClient, settings: Settings, scanner: dict[str, str]
) -> None:
    assert _post(client, scanner, "p.png", png_bytes(phantom(64)))[0] == 202
    assert _instances(settings) == 1


def test_a_3d_nifti_stores_every_slice(
    client: TestClient, settings: Settings, scanner: dict[str, str]
) -> None:
    volume = np.stack([phantom(64, s) for s in range(3)], axis=-1)
    r = client.post("/api/v1/series", files=[("files", ("v.nii", _nifti(volume)))], headers=scanner)
    assert r.status_code == 202 and r.json()["new_instances"] == 3


def test_the_minimum_follows_the_active_models_patch_size(
    client: TestClient, settings: Settings, scanner: dict[str, str], tmp_path: Path
) -> None:
    meta = model.CheckpointMeta(
        arch="resnet18", patch_size=96, patch_stride=96, normalization=TINY_NORMALIZATION
    )
    bigger = model.save_checkpoint(
        tmp_path / "p96.safetensors", model.build_model("resnet18"), meta
    )
    with session_scope(settings.database_url) as session:
        register_checkpoint(session, bigger)
    status, detail = _post(client, scanner, "p.png", png_bytes(phantom(64)))
    assert status == 422 and "p.png: image is 64x64; the detector needs at least 96x96" in detail
    assert _post(client, scanner, "q.png", png_bytes(phantom(96)))[0] == 202
