"""``GET /api/v1/instances/{id}`` and its ``image.png`` / ``heatmap.png``."""

from __future__ import annotations

from typing import Any

import numpy as np
from fastapi import APIRouter, HTTPException, Request, Response, status

from app import storage
from app.api import render
from app.api.deps import ReadableInstance, SessionDep, SettingsDep
from app.api.schemas import InstancePublic, instance_public
from app.config import Settings
from app.db import repo
from app.db.models import Instance
from app.dicom_header import display_window

router = APIRouter(prefix="/instances", tags=["instances"])
PNG: dict[str, Any] = {"content": {"image/png": {}}}


def _pixels(settings: Settings, instance: Instance) -> np.ndarray:
    from training.data import UnreadableImage, read_slices

    try:
        path = storage.resolve(settings.storage_dir, instance.storage_path)
        return read_slices(path)[instance.frame_index].pixels
    except (UnreadableImage, IndexError, ValueError) as exc:
        raise HTTPException(
            status.HTTP_410_GONE, f"instance {instance.id}: stored image unusable ({exc})"
        ) from None


@router.get("/{instance_id}", response_model=InstancePublic)
def get_instance(
    instance: ReadableInstance, session: SessionDep, request: Request
) -> InstancePublic:
    """One slice and its newest verdict (null until scored)."""
    verdict = repo.latest_instance_verdicts(session, [instance.id]).get(instance.id)
    return instance_public(instance, verdict, request)


@router.get("/{instance_id}/image.png", name="instance_image", responses={200: PNG})
def instance_image(instance: ReadableInstance, settings: SettingsDep) -> Response:
    """The slice as an 8-bit PNG (0.5-99.5 percentile window)."""
    return Response(render.slice_png(_pixels(settings, instance)), media_type="image/png")


@router.get(
    "/{instance_id}/pixels",
    name="instance_pixels",
    responses={200: {"content": {"application/octet-stream": {}}}},
)
def instance_pixels(instance: ReadableInstance, settings: SettingsDep) -> Response:
    """The slice's pixel values as little-endian float32, row-major; the shape is in the
    ``X-Amaqc-Shape: rows,cols`` header (the viewer's window/level works on these) and, for a
    DICOM slice that names one, its display window in ``X-Amaqc-Window: center,width`` (the
    header's WindowCenter / WindowWidth, in the same units as the values)."""
    pixels = np.ascontiguousarray(_pixels(settings, instance), dtype="<f4")
    rows, cols = pixels.shape
    headers = {"X-Amaqc-Shape": f"{rows},{cols}"}
    if instance.storage_path.endswith(".dcm"):
        path = storage.resolve(settings.storage_dir, instance.storage_path)
        window = display_window(path, instance.frame_index)
        if window is not None:
            headers["X-Amaqc-Window"] = f"{window[0]:g},{window[1]:g}"
    return Response(pixels.tobytes(), media_type="application/octet-stream", headers=headers)


@router.get("/{instance_id}/heatmap.png", name="instance_heatmap", responses={200: PNG})
def instance_heatmap(
    instance: ReadableInstance, session: SessionDep, settings: SettingsDep
) -> Response:
    """The slice with its patch artifact probabilities in red over it."""
    verdict = repo.latest_instance_verdicts(session, [instance.id]).get(instance.id)
    if verdict is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"instance {instance.id} has no verdict yet")
    png = render.heatmap_png(_pixels(settings, instance), np.asarray(verdict.patch_map))
    return Response(png, media_type="image/png")
