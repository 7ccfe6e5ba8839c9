"""Slices out of mriqc's ``*_desc-zoomed_T1w.svg`` report figures.

mriqc 24.0.2 ships, as test data, two real subjects' T1w reports (OpenNeuro ds002785, CC0).
The figure is drawn by matplotlib: one axes per slice, each holding an ``<image>`` whose
``xlink:href`` is a base64 PNG (8-bit, display-windowed, cropped), plus glyph-drawn text.
"""

from __future__ import annotations

import base64
import io
import re
import xml.etree.ElementTree as ET

import numpy as np
from PIL import Image

__all__ = ["decode_mriqc_svg"]

_SVG = "{http://www.w3.org/2000/svg}"
_XLINK_HREF = "{http://www.w3.org/1999/xlink}href"
_GLYPH = re.compile(r"-([0-9a-f]+)$")  # matplotlib glyph ids: "#DejaVuSans-4c" is "L"
_MATRIX = re.compile(r"matrix\(([^)]*)\)")


def decode_mriqc_svg(svg: bytes) -> list[tuple[str, int, np.ndarray]]:
    """Slices of an mriqc ``*_desc-zoomed_T1w.svg`` as ``(plane, index, image)``.

    The figure is one matplotlib axes per slice: an ``<image>`` holding a base64 PNG, and
    glyph-drawn text giving the slice number, plus "L"/"R" side markers on axial panels only
    (the six sagittal panels carry just a number). ``image`` is ``(H, W)`` uint8 in the display
    orientation of :mod:`training.data.slices`: superior/anterior up, radiological (patient's right
    on the viewer's left; sagittal: face on the left). Panels that are not plain opaque
    grayscale (colour overlays, masks) or carry no slice number are skipped.
    """
    root = ET.fromstring(svg)
    out: list[tuple[str, int, np.ndarray]] = []
    for axes in root.iter(f"{_SVG}g"):
        if not axes.get("id", "").startswith("axes_"):
            continue
        images = list(axes.iter(f"{_SVG}image"))
        texts = _panel_texts(axes)
        numbers = [t for t, _ in texts if t.isdigit()]
        if len(images) != 1 or len(numbers) != 1:
            continue
        image = _decode_panel(images[0])
        if image is None:
            continue
        sides = {t: x for t, x in texts if t in ("L", "R")}
        if len(sides) == 2:
            plane = "axial"
            # Radiological: patient's left on the viewer's right.
            if sides["L"] < sides["R"]:
                image = image[:, ::-1]
        else:
            plane = "sagittal"
            # mriqc draws sagittal slices facing right; the convention here is facing left.
            image = image[:, ::-1]
        out.append((plane, int(numbers[0]), np.ascontiguousarray(image)))
    return out


def _panel_texts(axes: ET.Element) -> list[tuple[str, float]]:
    """(text, x position) of each ``text_*`` group in an axes, decoded from its glyph refs."""
    texts = []
    for group in axes.findall(f"{_SVG}g"):
        if not group.get("id", "").startswith("text_"):
            continue
        chars, x = [], float("nan")
        for g in group.iter(f"{_SVG}g"):
            m = re.match(r"translate\(([-\d.e]+)", g.get("transform", ""))
            if m:
                x = float(m.group(1))
        for use in group.iter(f"{_SVG}use"):
            glyph = _GLYPH.search(use.get(_XLINK_HREF, ""))
            if glyph:
                chars.append(chr(int(glyph.group(1), 16)))
        texts.append(("".join(chars), x))
    return texts


def _decode_panel(element: ET.Element) -> np.ndarray | None:
    href = element.get(_XLINK_HREF, "")
    if not href.startswith("data:image/png;base64,"):
        return None
    with Image.open(io.BytesIO(base64.b64decode(href.split(",", 1)[1]))) as im:
        rgba = np.asarray(im.convert("RGBA"))
    rgb, alpha = rgba[..., :3], rgba[..., 3]
    if (alpha != 255).any() or (rgb != rgb[..., :1]).any():
        return None  # an overlay or a mask, not plain grayscale anatomy
    image = rgb[..., 0]
    # matplotlib writes the PNG top row first and flips it with the image transform
    # ("matrix(a 0 0 -d e f)"): undo that to get what the figure shows.
    m = _MATRIX.search(element.get("transform", ""))
    if m:
        a, _, _, d, _, _ = (float(v) for v in m.group(1).replace(",", " ").split())
        if d < 0:
            image = image[::-1]
        if a < 0:
            image = image[:, ::-1]
    return image
