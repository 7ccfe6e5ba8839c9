"""Write artifact-corrupted copies of image files: what ``amaqc simulate`` does, so that people
can see exactly what the detector was trained to flag."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

from ..data.image_types import UnreadableImage
from ..data.readers import iter_image_files, read_slices
from .artifacts import KINDS, SEVERITIES, simulate


def to_png16(image: np.ndarray) -> Image.Image:
    """A float slice as a 16-bit PNG image, scaled from 0 to its maximum."""
    top = float(image.max())
    scaled = image / top * 65535.0 if top > 0 else np.zeros_like(image)
    return Image.fromarray(np.clip(scaled, 0, 65535).astype(np.uint16))


@dataclass
class SimulateReport:
    written: int = 0
    skipped: list[tuple[Path, str]] = field(default_factory=list)


def simulate_path(
    source: Path, out: Path, *, kind: str, severity: str, seed: int = 0
) -> SimulateReport:
    """Corrupt every slice of every image under ``source`` and write ``out/<name>.png`` plus
    ``out/<name>.json`` (the artifact record: kind, severity and sampled parameters)."""
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
    if severity not in SEVERITIES:
        raise ValueError(f"severity must be one of {SEVERITIES}, got {severity!r}")
    source, out = Path(source), Path(out)
    if not source.exists():
        raise FileNotFoundError(f"{source}: no such file or folder")
    report = SimulateReport()
    out.mkdir(parents=True, exist_ok=True)
    for i, file in enumerate(iter_image_files(source)):
        try:
            slices = read_slices(file)
        except UnreadableImage as exc:
            report.skipped.append((file, str(exc).removeprefix(f"{file.name}: ")))
            continue
        rel = file.relative_to(source) if source.is_dir() else Path(file.name)
        stem = rel.as_posix().replace("/", "__").split(".")[0]
        for s in slices:
            rng = np.random.default_rng([seed, i, s.index])
            image = np.clip(s.pixels - float(s.pixels.min()), 0, None)
            corrupted, record = simulate(image, kind, severity, rng)
            name = f"{stem}_{kind}_{severity}" + (f"_{s.index:03d}" if len(slices) > 1 else "")
            to_png16(corrupted).save(out / f"{name}.png")
            (out / f"{name}.json").write_text(json.dumps({"source": rel.as_posix(), **record}))
            report.written += 1
    return report
