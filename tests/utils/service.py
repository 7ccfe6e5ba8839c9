"""Factories for the QC service tests: a tiny checkpoint, DICOM series, a worker process."""

from __future__ import annotations

import io
import os
import signal
import subprocess
import sys
import zipfile
from pathlib import Path
from typing import Any

import numpy as np

from app.config import Settings
from app.supervise import die_with_parent
from model.fusion import FusionModel

from .images import dicom_dataset, phantom, set_pixels_12bit

TINY_NORMALIZATION = {"method": "percentile", "lower": 0.5, "upper": 99.5, "size": 128}

#: a fused detector over AMAResNet's logit and two IQMs, one threshold (0.7), for service tests
SERVICE_FUSION = FusionModel(
    features=("cnn_logit", "iqm_qi1", "iqm_spike"),
    mean=(0.0, 0.1, 1.5),
    scale=(1.0, 0.1, 0.5),
    coef=(0.5, 2.0, 1.0),
    intercept=0.0,
    threshold=0.7,
)


def tiny_checkpoint(path: Path) -> Path:
    """A small untrained resnet18 checkpoint (patch 64) the worker can serve."""
    import model

    meta = model.CheckpointMeta(
        arch="resnet18", patch_size=64, patch_stride=64, normalization=TINY_NORMALIZATION
    )
    return model.save_checkpoint(path, model.build_model("resnet18"), meta)


def tiny_amaresnet(
    path: Path, *, size: int = 96, patch: int = 32, seed: int = 0, threshold: float = 0.5
) -> Path:
    """A small untrained AMAResNet-18 checkpoint (narrow pyramid, ``patch``-px patches on
    ``size``-px slices; weights from ``seed``): what the export and int8 tests quantise."""
    import torch

    import model

    torch.manual_seed(seed)
    meta = model.CheckpointMeta(
        arch="amaresnet18",
        arch_config={"pyramid_width": 8},
        patch_size=patch,
        patch_stride=patch,
        normalization={**TINY_NORMALIZATION, "size": size},
        threshold=threshold,
    )
    return model.save_checkpoint(path, model.build_model("amaresnet18", pyramid_width=8), meta)


def dicom_bytes(
    image: np.ndarray | None = None,
    *,
    series_uid: str = "1.2.826.0.1.3680043.8.498.1",
    instance: int = 1,
    sop_uid: str | None = None,
    pixels: bool = True,
    rows: int | None = None,
) -> bytes:
    """A 16-bit MR Image Storage object of one series, as bytes (``pixels=False``: without
    pixel data; ``rows``: declare another size)."""
    image = phantom(64, seed=instance) if image is None else image
    ds = dicom_dataset(series_uid=series_uid, sop_uid=sop_uid, instance=instance)
    ds.SeriesDescription = "t2_tse_tra"
    set_pixels_12bit(ds, image, rows)
    if not pixels:
        del ds.PixelData
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    return buffer.getvalue()


def png_bytes(image: np.ndarray | None = None) -> bytes:
    from PIL import Image

    image = phantom(64) if image is None else image
    buffer = io.BytesIO()
    Image.fromarray((np.clip(image, 0, 1) * 65535).astype(np.uint16)).save(buffer, format="PNG")
    return buffer.getvalue()


def zip_bytes(members: dict[str, bytes], *, symlinks: dict[str, str] | None = None) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in members.items():
            zf.writestr(name, data)
        for name, target in (symlinks or {}).items():
            info = zipfile.ZipInfo(name)
            info.external_attr = (0o120777 << 16) | 0  # S_IFLNK
            zf.writestr(info, target)
    return buffer.getvalue()


def scored_series(
    client: Any,
    settings: Settings,
    headers: dict[str, str],
    uid: str = "1.2.826.0.1.3680043.8.498.7",
    n: int = 2,
) -> tuple[int, list[int]]:
    """Upload ``n`` DICOM slices of series ``uid`` through ``client`` (a TestClient), analyse
    the series in-process (its verdict written), and return its id and instance ids."""
    from app.worker.inference import analyse

    r = client.post("/api/v1/series", files=series_files(n, uid), headers=headers)
    series_id = int(r.json()["series_id"])
    assert analyse(settings, series_id) == "done"
    body = client.get(f"/api/v1/series/{series_id}", headers=headers).json()
    return series_id, [i["id"] for i in body["instances"]]


def series_files(n: int = 3, series_uid: str = "1.2.826.0.1.3680043.8.498.7") -> list[tuple]:
    """``files=`` for httpx: n DICOM slices of one series."""
    return [
        (
            "files",
            (f"s{i}.dcm", dicom_bytes(series_uid=series_uid, instance=i + 1), "application/dicom"),
        )
        for i in range(n)
    ]


def start_worker(
    settings: Settings,
    queues: str = "inference",
    env: dict[str, str] | None = None,
    args: tuple[str, ...] = (),
) -> subprocess.Popen[bytes]:
    """A real Celery worker process for ``settings`` consuming ``queues``, logging to
    ``<data_dir>/worker-<queues>.log`` (appended to); ``env`` adds environment variables,
    ``args`` options of ``amaqc worker`` (``--pool prefork``)."""
    full_env = {
        **os.environ,
        "AMAQC_DATA_DIR": str(settings.data_dir),
        "AMAQC_DATABASE_URL": settings.database_url,
        "AMAQC_BROKER_URL": settings.broker_url,
        "AMAQC_CHECKPOINT": str(settings.checkpoint),
        **(env or {}),
    }
    with worker_log(settings, queues).open("ab") as log:
        return subprocess.Popen(
            [sys.executable, "-m", "app", "worker", "--queues", queues, *args],
            env=full_env,
            stdout=log,
            stderr=log,
            preexec_fn=die_with_parent,  # a killed test run leaves no worker behind
        )


def worker_log(settings: Settings, queues: str = "inference") -> Path:
    return settings.data_dir / f"worker-{queues.replace(',', '+')}.log"


def stop_process(proc: subprocess.Popen[bytes], timeout: float = 20) -> None:
    """SIGTERM (Celery's warm shutdown), then SIGKILL after ``timeout`` seconds."""
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
