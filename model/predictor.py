"""Predictor: raw 2-D slices in, artifact probability + label + patch map out."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from .checkpoint import CheckpointMeta, load_checkpoint
from .fusion import fusion_features
from .iqm import compute_iqms
from .partition import aggregate, partition
from .preprocess import normalize_slice

DETECTORS = ("auto", "cnn", "fused")


@dataclass(frozen=True)
class SlicePrediction:
    """One slice's result: artifact ``probability`` in [0, 1] of the detector served, ``label``
    (1 = artifact at that detector's threshold) and ``patch_probs``, the (rows, cols) map of
    AMAResNet's patch probabilities. ``cnn_probability`` is AMAResNet's own slice probability
    (equal to ``probability`` when the CNN is served); ``iqms`` the IQM panel the fused detector
    read (None for the CNN alone, or when the slice was too small or blank for the panel)."""

    probability: float
    label: int
    patch_probs: np.ndarray
    cnn_probability: float | None = None
    iqms: dict[str, float] | None = None


def default_device() -> torch.device:
    """CUDA when available, else CPU."""
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


class Predictor:
    """Run a checkpoint on slices of any numeric dtype and size.

    Args:
        checkpoint: path of a checkpoint file, or an already loaded ``(model, meta)`` pair.
        device: torch device; default CUDA when available, else CPU.
        batch_size: patches per forward pass.
        detector: ``"fused"`` (AMAResNet + the IQM panel, :mod:`model.fusion`), ``"cnn"``
            (AMAResNet alone) or ``"auto"``: fused when the checkpoint carries a fusion model.

    ``predict`` normalises each slice exactly as training did (``meta.normalization``), cuts it
    into ``meta.patch_size`` patches, runs the network under ``torch.inference_mode`` (with fp16
    autocast on CUDA) and aggregates the patch probabilities by ``meta.aggregation``.
    """

    def __init__(
        self,
        checkpoint: str | Path | tuple[nn.Module, CheckpointMeta],
        *,
        device: str | torch.device | None = None,
        batch_size: int = 64,
        detector: str = "auto",
    ) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        if detector not in DETECTORS:
            raise ValueError(f"detector must be one of {DETECTORS}, got {detector!r}")
        self.device = torch.device(device) if device is not None else default_device()
        if isinstance(checkpoint, tuple):
            model, meta = checkpoint
        else:
            model, meta = load_checkpoint(checkpoint)
        self.meta = meta
        self.norm = meta.norm
        fusion = meta.fusion_model
        if detector == "fused" and fusion is None:
            raise ValueError("this checkpoint has no fusion model; use detector='cnn'")
        self.fusion = fusion if detector != "cnn" else None
        self.batch_size = batch_size
        # channels_last lets oneDNN / cuDNN pick their fastest convolution kernels.
        self.model = model.to(self.device).to(memory_format=torch.channels_last).eval()

    @property
    def detector(self) -> str:
        """``"fused"`` or ``"cnn"``: what :meth:`predict`'s probability comes from."""
        return "fused" if self.fusion is not None else "cnn"

    @property
    def threshold(self) -> float:
        """The decision threshold of the detector served."""
        if self.fusion is not None:
            return float(self.fusion.threshold)
        return float(self.meta.threshold)

    def _batches(self, patches: torch.Tensor) -> Iterator[torch.Tensor]:
        for start in range(0, patches.shape[0], self.batch_size):
            yield patches[start : start + self.batch_size]

    @torch.inference_mode()
    def patch_probabilities(self, images: torch.Tensor) -> torch.Tensor:
        """(N, 1, p, p) normalised patches -> (N,) artifact probabilities (float32, on CPU)."""
        autocast = (
            torch.autocast("cuda", dtype=torch.float16)
            if self.device.type == "cuda"
            else nullcontext()
        )
        out = []
        with autocast:
            for chunk in self._batches(images):
                chunk = chunk.to(self.device, non_blocking=True).contiguous(
                    memory_format=torch.channels_last
                )
                out.append(torch.softmax(self.model(chunk).float(), dim=1)[:, 1].cpu())
        return torch.cat(out) if out else torch.empty(0)

    def predict(self, slices: Sequence[np.ndarray] | np.ndarray) -> list[SlicePrediction]:
        """Score 2-D slices; a single 2-D array is one slice, a 3-D array is refused."""
        if isinstance(slices, np.ndarray) and slices.ndim == 2:
            slices = [slices]
        elif isinstance(slices, np.ndarray):
            raise ValueError(
                f"expected a 2-D slice or a list of them, got an array of shape {slices.shape}; "
                "pass list(volume) to predict a stack"
            )
        if len(slices) == 0:
            return []
        batch = torch.stack([normalize_slice(s, self.norm) for s in slices])
        patches, grid = partition(batch, self.meta.patch_size, self.meta.patch_stride)
        probs = self.patch_probabilities(patches)
        how = self.meta.aggregation.get("how", "mean")
        image_probs, maps = aggregate(probs, grid, how, self.meta.aggregation.get("k"))
        cnn = image_probs.tolist()
        if self.fusion is None:
            return [
                SlicePrediction(float(p), int(p >= self.threshold), m.numpy(), float(p))
                for p, m in zip(cnn, maps, strict=True)
            ]
        panels = [_panel(s) for s in slices]
        rows = [fusion_features(p, m.numpy(), q) for p, m, q in zip(cnn, maps, panels, strict=True)]
        fused = self.fusion.probability(rows).tolist()
        return [
            SlicePrediction(float(f), int(f >= self.threshold), m.numpy(), float(p), q)
            for f, p, m, q in zip(fused, cnn, maps, panels, strict=True)
        ]


def _panel(image: np.ndarray) -> dict[str, float] | None:
    """The IQM panel of a slice, or None where it cannot be computed (too small, blank): the
    fused model then reads its training mean for every IQM (no evidence either way)."""
    try:
        return compute_iqms(image)
    except ValueError:
        return None
