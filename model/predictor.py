"""Predictor: raw 2-D slices in, artifact probability + label + patch map out."""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from .backends import PatchScorer, make_scorer
from .checkpoint import CheckpointMeta, load_checkpoint, load_spectral
from .fusion import fusion_features, sigmoid
from .iqm import iqms_of, prepare
from .partition import aggregate, partition
from .pools import ProcessLocalPool
from .preprocess import normalize_slice
from .spectral import SpectralError, SpectralModel, log_spectrum_of, spectrum_or_none
from .spectral_runtime import SpectralRunner, make_spectral_runner

DETECTORS = ("auto", "cnn", "fused")


@dataclass(frozen=True)
class SlicePrediction:
    """One slice's result: artifact ``probability`` in [0, 1] of the detector served, ``label``
    (1 = artifact at that detector's threshold) and ``patch_probs``, the (rows, cols) map of
    AMAResNet's patch probabilities. ``cnn_probability`` is AMAResNet's own slice probability
    (equal to ``probability`` when the CNN is served); ``iqms`` the IQM panel the fused detector
    read (None for the CNN alone, or when the slice was too small or blank for the panel);
    ``spectral_probability`` the spectral network's (:mod:`model.spectral`) where the fused
    detector reads it."""

    probability: float
    label: int
    patch_probs: np.ndarray
    cnn_probability: float | None = None
    iqms: dict[str, float] | None = None
    spectral_probability: float | None = None


def default_device() -> torch.device:
    """CUDA when available, else CPU."""
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


class Predictor:
    """Run a checkpoint on slices of any numeric dtype and size.

    Args:
        checkpoint: path of a checkpoint file, or an already loaded ``(model, meta)`` pair.
        device: torch device; default CUDA when available, else CPU.
        batch_size: patches per forward pass; default 64 for torch, all of a series (up to
            1024) for ONNX Runtime.
        detector: ``"fused"`` (AMAResNet + the IQM panel, :mod:`model.fusion`), ``"cnn"``
            (AMAResNet alone) or ``"auto"``: fused when the checkpoint carries a fusion model.
        backend: what runs the network (:mod:`model.backends`): ``"auto"`` (ONNX Runtime for
            a checkpoint file on the CPU when installed; torch on CUDA, for an in-memory
            ``(model, meta)`` pair and as the fallback), ``"torch"`` or ``"onnxruntime"``
            (raises :class:`model.backends.BackendUnavailable` if it cannot).
        cache_dir: where ONNX exports are cached; default ``.amaqc-onnx/`` next to the
            checkpoint file.
        precision: ``"float32"`` (default: what the checkpoint was trained and evaluated as),
            ``"int8"`` (the checkpoint's accepted int8 export from ``amaqc quantize``; raises
            :class:`model.backends.BackendUnavailable` without one) or ``"auto"`` (int8 where
            an accepted export exists, else float32); see :mod:`model.int8`.
        overlap_panel: the fused detector computes the slices' IQM panels on the process's
            panel thread while normalisation and the network run (default), instead of after
            them; same values either way (docs/performance.md, "The panel beside the network").
        spectral: the spectral network (:mod:`model.spectral`) for an in-memory ``(model,
            meta)`` pair whose fused detector reads it; a checkpoint file carries its own.

    ``predict`` normalises each slice exactly as training did (``meta.normalization``), cuts all
    slices into ``meta.patch_size`` patches, scores the patches of all of them together and
    aggregates the patch probabilities by ``meta.aggregation``.
    """

    def __init__(
        self,
        checkpoint: str | Path | tuple[nn.Module, CheckpointMeta],
        *,
        device: str | torch.device | None = None,
        batch_size: int | None = None,
        detector: str = "auto",
        backend: str = "auto",
        cache_dir: str | Path | None = None,
        precision: str = "float32",
        overlap_panel: bool = True,
        spectral: SpectralModel | None = None,
    ) -> None:
        if batch_size is not None and batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        if detector not in DETECTORS:
            raise ValueError(f"detector must be one of {DETECTORS}, got {detector!r}")
        self.device = torch.device(device) if device is not None else default_device()
        path: Path | None = None
        if isinstance(checkpoint, tuple):
            model, meta = checkpoint
        else:
            path = Path(checkpoint)
            model, meta = load_checkpoint(path)
        self.meta = meta
        self.norm = meta.norm
        fusion = meta.fusion_model
        if detector == "fused" and fusion is None:
            raise ValueError("this checkpoint has no fusion model; use detector='cnn'")
        self.fusion = fusion if detector != "cnn" else None
        self.spectral: SpectralModel | None = None
        if self.fusion is not None and self.fusion.uses_spectral:
            if spectral is None and path is not None:
                spectral = load_spectral(path, meta, device=self.device)
            if spectral is None:
                raise ValueError(
                    "this checkpoint's fused detector reads the spectral network, which was "
                    "not given (pass spectral= with an in-memory model)"
                )
            self.spectral = spectral.to(self.device).eval()
        self.scorer: PatchScorer = make_scorer(
            model,
            patch_size=meta.patch_size,
            device=self.device,
            backend=backend,
            batch_size=batch_size,
            checkpoint=path,
            cache_dir=cache_dir,
            precision=precision,
        )
        self.model = model
        #: what runs the spectral network: ONNX Runtime beside an ONNX Runtime scorer, else torch
        self.spectral_runner: SpectralRunner | None = None
        if self.spectral is not None:
            self.spectral_runner = make_spectral_runner(
                self.spectral,
                device=self.device,
                backend="torch" if self.scorer.name == "torch" else backend,
                checkpoint=path,
                cache_dir=cache_dir,
            )
        #: compute the fused detector's IQM panels beside the network (see ``overlap_panel``)
        self.overlap_panel = overlap_panel

    @property
    def backend(self) -> str:
        """``"onnxruntime"``, ``"onnxruntime-int8"`` or ``"torch"``: what runs the network."""
        return self.scorer.name

    @property
    def spectral_backend(self) -> str | None:
        """``"onnxruntime"`` or ``"torch"``: what runs the spectral network (None: not read)."""
        return self.spectral_runner.name if self.spectral_runner is not None else None

    @property
    def precision(self) -> str:
        """``"float32"``, ``"int8"`` or ``"float16"`` (torch's autocast on CUDA)."""
        return self.scorer.precision

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

    def threshold_for(self, acquisition: str | None) -> float:
        """The decision threshold for a series of ``acquisition`` (``model.acquisition``; None:
        unknown): the fused detector's own for that family where it carries one, else
        :attr:`threshold`."""
        if self.fusion is not None:
            return self.fusion.threshold_for(acquisition)
        return self.threshold

    def patch_probabilities(self, images: torch.Tensor) -> torch.Tensor:
        """(N, 1, p, p) normalised patches -> (N,) artifact probabilities (float32, on CPU)."""
        return self.scorer(images)

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
        if self.fusion is None:
            cnn, maps = self._network(slices)
            return [
                SlicePrediction(float(p), int(p >= self.threshold), m.numpy(), float(p))
                for p, m in zip(cnn, maps, strict=True)
            ]
        want_spectra = self.spectral is not None
        if self.overlap_panel:
            pending = panel_pool().submit(_panels, list(slices), want_spectra)
            try:
                cnn, maps = self._network(slices)
            except BaseException:
                _settle(pending)  # nothing of this call keeps running after it
                raise
            panels, spectra = pending.result()  # the panel's own exception, as serially
        else:
            cnn, maps = self._network(slices)
            panels, spectra = _panels(slices, want_spectra)
        logits: list[float | None] = [None] * len(slices)
        if self.spectral_runner is not None:
            logits = self.spectral_runner(spectra)
        rows = [
            fusion_features(p, m.numpy(), q, z)
            for p, m, q, z in zip(cnn, maps, panels, logits, strict=True)
        ]
        fused = self.fusion.probability(rows).tolist()
        return [
            SlicePrediction(float(f), int(f >= self.threshold), m.numpy(), float(p), q, _sigmoid(z))
            for f, p, m, q, z in zip(fused, cnn, maps, panels, logits, strict=True)
        ]

    def _network(self, slices: Sequence[np.ndarray]) -> tuple[list[float], torch.Tensor]:
        """AMAResNet on the slices: their slice probabilities and (N, rows, cols) patch maps."""
        batch = torch.stack([normalize_slice(s, self.norm) for s in slices])
        patches, grid = partition(batch, self.meta.patch_size, self.meta.patch_stride)
        probs = self.patch_probabilities(patches)
        how = self.meta.aggregation.get("how", "mean")
        image_probs, maps = aggregate(probs, grid, how, self.meta.aggregation.get("k"))
        return image_probs.tolist(), maps


def _panel(
    image: np.ndarray, spectrum: bool = False
) -> tuple[dict[str, float] | None, np.ndarray | None]:
    """The IQM panel of a slice, or None where it cannot be computed (too small, blank): the
    fused model then reads its training mean for every IQM (no evidence either way); and, when
    asked, its spectrum (:func:`model.spectral.spectrum_or_none`, from the panel's FFT)."""
    try:
        prepared = prepare(image)
    except ValueError:
        return None, spectrum_or_none(image) if spectrum else None
    try:
        panel: dict[str, float] | None = iqms_of(prepared)
    except ValueError:
        panel = None
    if not spectrum:
        return panel, None
    try:
        return panel, log_spectrum_of(image, prepared)
    except SpectralError:
        return panel, None


def _panels(
    slices: Sequence[np.ndarray], spectra: bool = False
) -> tuple[list[dict[str, float] | None], list[np.ndarray | None]]:
    """The slices' IQM panels and, when asked, their spectra (else Nones)."""
    pairs = [_panel(s, spectra) for s in slices]
    return [panel for panel, _ in pairs], [spectrum for _, spectrum in pairs]


def _sigmoid(z: float | None) -> float | None:
    return None if z is None else float(sigmoid(z))


def _settle(pending: Future[tuple[list[dict[str, float] | None], list[np.ndarray | None]]]) -> None:
    """Cancel ``pending`` or wait for it, ignoring its outcome (the caller is raising another)."""
    if not pending.cancel():
        with contextlib.suppress(BaseException):  # the caller's exception is the one raised
            pending.result()


#: The process's panel thread: one worker, created on first use, and created again in a forked
#: child (a Celery prefork child inherits the parent's executor object but not its thread).
_PANEL_POOL = ProcessLocalPool(1, "amaqc-iqm-panel")


def panel_pool() -> ThreadPoolExecutor:
    """The single-thread executor that computes IQM panels beside the network, this process's
    own: one created before a fork is never reused in the child."""
    return _PANEL_POOL.get()
