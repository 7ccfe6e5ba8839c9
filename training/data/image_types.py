"""The two types every image reader shares: :class:`Slice` and :class:`UnreadableImage`."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


class UnreadableImage(ValueError):
    """A file that cannot be read as an image. The message starts with the file name."""


@dataclass(frozen=True, eq=False)
class Slice:
    """One 2-D image.

    Attributes:
        pixels: (H, W) float32 in the modality's units: RescaleSlope/Intercept applied for
            DICOM (MONOCHROME1 already inverted so high = bright), NIfTI scl_slope/scl_inter
            applied, raw stored values for PNG/JPEG/.npy; colour sources reduced to luminance.
        index: frame (DICOM multi-frame) or slice (NIfTI, 3-D .npy) index within its file.
        meta: non-identifying strings only (format, modality, series description, instance
            number, bits stored, photometric, ...); never patient name, ID or birth date.
    """

    pixels: np.ndarray
    index: int = 0
    meta: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.pixels.ndim != 2:
            raise ValueError(f"Slice.pixels must be 2-D (H, W), got shape {self.pixels.shape}")
        if self.pixels.dtype != np.float32:
            raise ValueError(f"Slice.pixels must be float32, got {self.pixels.dtype}")
