"""What runs the spectral network (:mod:`model.spectral`) in the Predictor: torch, or its ONNX
export on ONNX Runtime's CPU kernels.

On the CPU, ONNX Runtime runs the network about 3x faster than torch on a 24-slice series
(docs/performance.md), the same reason AMAResNet is served through it (:mod:`model.backends`).
The export is cached beside AMAResNet's, keyed by the checkpoint file's bytes:
``<cache_dir>/<sha256>-spectral-e<SPECTRAL_EXPORT_VERSION>.onnx``, so a changed checkpoint gets
a new export. Every load compares the export with torch on probe spectra and refuses it when a
probability differs by more than :data:`model.backends.MAX_PROBABILITY_DIFFERENCE`; ``auto``
then runs torch, and so it does on CUDA, for a network given in memory, and where ONNX Runtime
is not installed.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Final, Protocol

import numpy as np
import torch

from .backends import (
    MAX_PROBABILITY_DIFFERENCE,
    BackendUnavailable,
    LanedSession,
    cache_folder,
    export_cached,
    file_digest,
    lane_count,
    onnx_or_torch,
    onnxruntime_available,
    open_export,
)
from .export import export_module
from .fusion import sigmoid
from .spectral import GRID, SpectralModel, log_spectrum, logits_by_batch, spectral_logits

__all__ = [
    "SPECTRAL_EXPORT_VERSION",
    "OnnxSpectral",
    "SpectralRunner",
    "TorchSpectral",
    "export_spectral_onnx",
    "make_spectral_runner",
    "probe_spectra",
    "spectral_export_path",
]

logger = logging.getLogger(__name__)

#: Bumped whenever the export changes, so cached exports are rebuilt.
SPECTRAL_EXPORT_VERSION: Final = 1
INPUT_NAME: Final = "spectra"
OUTPUT_NAME: Final = "logit"
#: spectra per ONNX Runtime run (a 128 x 128 spectrum's activations are ~1 MB)
BATCH: Final = 256


class SpectralRunner(Protocol):
    name: str

    def __call__(self, spectra: Sequence[np.ndarray | None]) -> list[float | None]:
        """The network's logit per spectrum; None (a slice without a spectrum) stays None."""
        ...


class TorchSpectral:
    """The module itself, on the device it was put on."""

    name = "torch"

    def __init__(self, net: SpectralModel) -> None:
        self.net = net.eval()

    def __call__(self, spectra: Sequence[np.ndarray | None]) -> list[float | None]:
        return spectral_logits(self.net, spectra)


class OnnxSpectral:
    """An exported spectral network (path or serialised bytes) run by ONNX Runtime on the CPU."""

    name = "onnxruntime"

    def __init__(self, model: str | Path | bytes, *, threads: int = 0, lanes: int = 1) -> None:
        #: as model.backends.OnnxScorer's; a slice's spectrum is one row, which lanes cannot
        #: split (a slice sent alone, the scanner's case): it runs with ``threads`` threads
        self.runner = LanedSession(model, INPUT_NAME, threads=threads, lanes=lanes)
        self.session, self.lanes = self.runner.session, self.runner.lanes
        #: the largest probability difference from torch on the probe spectra (set by the check)
        self.max_difference: float | None = None

    def __call__(self, spectra: Sequence[np.ndarray | None]) -> list[float | None]:
        return logits_by_batch(spectra, BATCH, self._run)

    def _run(self, x: np.ndarray) -> list[float]:
        return [float(v) for v in self.runner(x).tolist()]


def export_spectral_onnx(net: SpectralModel, path: str | Path | None = None) -> bytes:
    """Export ``net`` as ONNX: input ``spectra`` (N, 1, GRID, GRID) float32, output ``logit``
    (N,); N is dynamic. Writes ``path`` atomically when given; returns the bytes either way."""
    net = net.to("cpu").float().eval()
    example = torch.zeros(2, 1, GRID, GRID)
    return export_module(net, example, INPUT_NAME, OUTPUT_NAME, "spectra", path)


def spectral_export_path(checkpoint: str | Path, cache_dir: str | Path | None = None) -> Path:
    """Where the spectral export of ``checkpoint`` (as its bytes are now) lives in the cache."""
    name = f"{file_digest(checkpoint)}-spectral-e{SPECTRAL_EXPORT_VERSION}.onnx"
    return cache_folder(checkpoint, cache_dir) / name


def probe_spectra(count: int = 6) -> list[np.ndarray]:
    """Deterministic spectra of MR-like slices (an ellipse of textured tissue in Rician-like
    noise, at several sizes), one of them with a k-space spike: what the export is checked on."""
    rng = np.random.default_rng(0)
    out = []
    for i in range(count):
        n = (64, 96, 128, 256)[i % 4]
        yy, xx = np.mgrid[:n, :n] / n
        inside = ((yy - 0.5) / 0.4) ** 2 + ((xx - 0.5) / (0.3 + 0.02 * i)) ** 2 < 1
        tissue = inside * (0.6 + 0.25 * np.sin(9 * yy + 5 * xx + i) * np.cos(7 * xx - 3 * yy))
        noisy = np.abs(tissue + rng.normal(0, 0.03, (n, n)) + 1j * rng.normal(0, 0.03, (n, n)))
        if i == count - 1:
            k = np.fft.fft2(noisy)
            k[n // 5, n // 3] += 0.3 * np.abs(k).max()
            noisy = np.abs(np.fft.ifft2(k))
        out.append(log_spectrum(noisy))
    return out


def make_spectral_runner(
    net: SpectralModel,
    *,
    device: torch.device,
    backend: str = "auto",
    checkpoint: str | Path | None = None,
    cache_dir: str | Path | None = None,
) -> SpectralRunner:
    """The runner for ``backend`` (``"auto"``, ``"torch"`` or ``"onnxruntime"``; see the module
    docstring). ``"onnxruntime"`` raises :class:`BackendUnavailable` where it cannot run;
    ``"auto"`` falls back to torch, saying why in the log."""

    def onnx() -> SpectralRunner:
        return _onnx_runner(net, checkpoint, cache_dir)

    def with_torch() -> SpectralRunner:
        return TorchSpectral(net.to(device))

    return onnx_or_torch(backend, device, checkpoint, onnx, with_torch, "the spectral network")


def _onnx_runner(
    net: SpectralModel, checkpoint: str | Path | None, cache_dir: str | Path | None
) -> OnnxSpectral:
    if not onnxruntime_available():
        raise BackendUnavailable("onnxruntime is not installed")
    source: Path | bytes
    try:
        if checkpoint is None:
            source = export_spectral_onnx(net)
        else:
            source = export_cached(
                spectral_export_path(checkpoint, cache_dir),
                lambda to: export_spectral_onnx(net, to),
            )
    except ImportError as exc:  # torch's exporter needs the onnx package
        raise BackendUnavailable(f"cannot export to ONNX ({exc})") from None
    runner = open_export(
        source,
        lambda src: OnnxSpectral(src, lanes=lane_count()),
        lambda path: export_spectral_onnx(net, path),
    )
    probes = probe_spectra()
    want = np.asarray(spectral_logits(net.to("cpu"), probes), dtype=np.float64)
    got = np.asarray(runner(probes), dtype=np.float64)
    difference = float(np.abs(sigmoid(got) - sigmoid(want)).max())
    runner.max_difference = difference
    if difference > MAX_PROBABILITY_DIFFERENCE:
        raise BackendUnavailable(
            f"the spectral network's ONNX export differs from torch by {difference:.2e} in "
            f"probability (allowed {MAX_PROBABILITY_DIFFERENCE:.0e})"
        )
    return runner
