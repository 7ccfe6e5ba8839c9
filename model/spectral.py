"""The spectral detector: a small convolutional network on a slice's log k-space magnitude.

Every artifact the service is asked to flag is made in k-space: an RF spike is a bright point
there, Nyquist and motion ghosts modulate whole lines, motion between k-space segments puts
fringes or steps into the outer part, truncation (Gibbs) cuts the spectrum off sharply, added
noise raises its floor. A clean slice's spectrum, whatever its contrast, bias field or resolution,
falls off smoothly from the centre. So the network reads the spectrum, not the anatomy: what it
learns from our own simulator then carries over to artifacts simulated otherwise (TorchIO,
MONAI; docs/model-card.md), where AMAResNet, trained on image patches, learned the simulator.

Representation (:func:`log_spectrum`): the slice divided by its 99th percentile (scale-free), the
magnitude of its 2-D FFT at the *acquired* matrix, log, centred, resampled bilinearly to a fixed
``GRID`` x ``GRID`` grid of normalised frequencies (-0.5 .. 0.5 cycles per pixel on both axes,
whatever the matrix), standardised (median 0, unit standard deviation). numpy + scipy only.

Its output enters the fused detector (:mod:`model.fusion`) as one feature, ``spectral_logit``.
Several networks of one architecture, trained apart (other seeds, other simulated twins), can be
served as one :class:`SpectralEnsemble` whose logit is the mean of theirs: two runs of one recipe
differ by as much as the changes we measure (docs/model-card.md), and the mean takes that
run-to-run variance out of the verdict. The weights travel inside the served checkpoint as
tensors named ``spectral.*`` beside AMAResNet's, and their description in
``CheckpointMeta.spectral`` (:func:`spectral_description`): nothing is pickled.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any, Final

import numpy as np
import torch
from scipy import fft as scipy_fft
from scipy import ndimage
from torch import nn

from .iqm import Prepared

__all__ = [
    "GRID",
    "PREFIX",
    "SPECTRAL_FORMAT",
    "SpectralEnsemble",
    "SpectralError",
    "SpectralModel",
    "SpectralNet",
    "build_spectral",
    "ensemble",
    "log_spectrum",
    "log_spectrum_of",
    "logits_by_batch",
    "spectral_description",
    "spectral_from_tensors",
    "spectral_logits",
    "spectrum_or_none",
]

#: Side of the spectrum grid the network reads.
GRID: Final = 128
#: Name prefix of the spectral network's tensors inside a checkpoint file.
PREFIX: Final = "spectral."
SPECTRAL_FORMAT: Final = "amaqc-spectral/1"
#: Channel widths and strides of the convolutional blocks (the default architecture).
BLOCKS: Final = ((16, 1), (24, 2), (32, 1), (48, 2), (64, 1), (96, 2), (128, 2))


class SpectralError(ValueError):
    """A spectral network description or slice that cannot be used, with the reason."""


def log_spectrum(image: np.ndarray, grid: int = GRID) -> np.ndarray:
    """The (grid, grid) float32 standardised log k-space magnitude of a 2-D slice (see module).

    Raises:
        SpectralError: not 2-D, smaller than 8 pixels a side, not finite, or blank.
    """
    a = np.asarray(image, dtype=np.float64)
    if a.ndim != 2:
        raise SpectralError(f"expected a 2-D slice, got shape {a.shape}")
    if min(a.shape) < 8:
        raise SpectralError(f"slice {a.shape} is too small for a spectrum (>= 8 pixels a side)")
    if not np.isfinite(a).all():
        raise SpectralError("slice holds NaN or infinite values")
    positive = a[a > 0]
    if positive.size == 0:
        raise SpectralError("slice is blank (no positive pixel)")
    a = a / np.percentile(positive, 99)
    # scipy's pocketfft: the same transform as numpy's to ~1e-15, in a third of the time
    return _standardised_log(np.fft.fftshift(np.abs(scipy_fft.fft2(a))), grid)


def log_spectrum_of(image: np.ndarray, prepared: Prepared, grid: int = GRID) -> np.ndarray:
    """:func:`log_spectrum` of ``image`` from the IQM panel's k-space of it (``prepared`` =
    :func:`model.iqm.prepare` of ``image``, whose FFT the panel computes anyway): the same
    numbers to ~1e-9 in half the time. A slice the panel had to clean first (not finite, or
    signed) gets :func:`log_spectrum` itself.

    Raises:
        SpectralError: as :func:`log_spectrum`.
    """
    a = np.asarray(image)
    if a.shape != prepared.image.shape or not np.isfinite(a).all() or a.min() < 0:
        return log_spectrum(image, grid)
    # prepared.image is the slice over the 99th percentile of its non-zero (here: positive)
    # pixels, as log_spectrum scales it; its spectrum is |FFT| with the mean removed, so the DC
    # term, |sum|, is put back
    magnitude = np.array(prepared.spectrum)
    magnitude[0, 0] = abs(prepared.image.sum())
    return _standardised_log(np.fft.fftshift(magnitude), grid)


def _standardised_log(magnitude: np.ndarray, grid: int) -> np.ndarray:
    """The centred k-space magnitude -> log, resampled to (grid, grid), standardised."""
    log = np.log(magnitude + 1e-6 * magnitude.max() + 1e-12)
    h, w = log.shape
    out = ndimage.zoom(log, (grid / h, grid / w), order=1, grid_mode=True, mode="nearest")
    out = out[:grid, :grid]
    out = (out - np.median(out)) / (out.std() + 1e-6)
    return out.astype(np.float32)


def _block(c_in: int, c_out: int, stride: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False),
        nn.BatchNorm2d(c_out),
        nn.ReLU(inplace=True),
    )


class SpectralNet(nn.Module):
    """Convolutional blocks on the (N, 1, GRID, GRID) spectrum, global mean and max pooling,
    one linear unit: the artifact logit (N,)."""

    def __init__(self, blocks: Sequence[Sequence[int]] = BLOCKS) -> None:
        super().__init__()
        layers, c_in = [], 1
        for c_out, stride in blocks:
            layers.append(_block(c_in, int(c_out), int(stride)))
            c_in = int(c_out)
        self.blocks = [list(map(int, b)) for b in blocks]
        self.features = nn.Sequential(*layers)
        self.head = nn.Linear(2 * c_in, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.features(x)
        return self.head(torch.cat([h.mean((2, 3)), h.amax((2, 3))], 1))[:, 0]


class SpectralEnsemble(nn.Module):
    """Several :class:`SpectralNet` of one architecture; the logit (N,) is the mean of theirs."""

    def __init__(self, blocks: Sequence[Sequence[int]] = BLOCKS, members: int = 2) -> None:
        super().__init__()
        if members < 2:
            raise SpectralError(f"an ensemble needs at least 2 members, got {members}")
        self.members = nn.ModuleList(SpectralNet(blocks) for _ in range(members))
        self.blocks = [list(map(int, b)) for b in blocks]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.stack([member(x) for member in self.members]).mean(0)


#: What serves the spectral logit: one network, or the mean of several.
SpectralModel = SpectralNet | SpectralEnsemble


def ensemble(nets: Sequence[SpectralNet]) -> SpectralModel:
    """One network as it is, or several of one architecture as a :class:`SpectralEnsemble`
    holding copies of their weights (eval mode); raises :class:`SpectralError` on none or on
    differing architectures."""
    if not nets:
        raise SpectralError("no spectral network given")
    if len(nets) == 1:
        return nets[0].eval()
    blocks = nets[0].blocks
    if differing := [i for i, net in enumerate(nets) if net.blocks != blocks]:
        raise SpectralError(
            f"the networks of an ensemble must share one architecture: network(s) "
            f"{differing} differ from the first ({blocks})"
        )
    out = SpectralEnsemble(blocks, members=len(nets))
    for member, net in zip(out.members, nets, strict=True):
        member.load_state_dict(net.state_dict())
    return out.eval()


def spectrum_or_none(image: np.ndarray) -> np.ndarray | None:
    """:func:`log_spectrum`, or None for a slice that has none (blank): the fused detector then
    reads the training mean of ``spectral_logit`` (no evidence either way)."""
    try:
        return log_spectrum(image)
    except SpectralError:
        return None


def tensor_mismatch(expected: Mapping[str, torch.Tensor], found: Mapping[str, torch.Tensor]) -> str:
    """What keeps ``found`` tensors from loading into a module whose state is ``expected``
    (missing, unexpected and mis-shaped names, a few of each), or "" when they match."""
    missing = sorted(set(expected) - set(found))
    unexpected = sorted(set(found) - set(expected))
    shapes = [
        f"{k}: file {tuple(found[k].shape)} vs arch {tuple(v.shape)}"
        for k, v in expected.items()
        if k in found and found[k].shape != v.shape
    ]
    problems = []
    if missing:
        problems.append(f"{len(missing)} missing tensor(s) e.g. {missing[:3]}")
    if unexpected:
        problems.append(f"{len(unexpected)} unexpected tensor(s) e.g. {unexpected[:3]}")
    if shapes:
        problems.append(f"{len(shapes)} shape mismatch(es) e.g. {shapes[:3]}")
    return "; ".join(problems)


def spectral_from_tensors(
    description: Mapping[str, Any], tensors: Mapping[str, torch.Tensor]
) -> SpectralModel:
    """The network ``description`` declares, loaded with ``tensors`` (names without
    :data:`PREFIX`), float32 in eval mode; raises :class:`SpectralError` naming what does not
    match. Shared by the served checkpoint (:func:`model.checkpoint.load_spectral`) and the
    training module's network file."""
    net = build_spectral(description)
    expected = net.state_dict()
    problems = tensor_mismatch(expected, tensors)
    if problems:
        raise SpectralError(f"tensors do not match the declared spectral network: {problems}")
    net.load_state_dict({k: v.to(expected[k].dtype) for k, v in tensors.items()}, strict=True)
    return net.eval()


def build_spectral(description: Mapping[str, Any]) -> SpectralModel:
    """The (untrained) network a description declares: a :class:`SpectralEnsemble` where it
    names ``members`` >= 2 (absent: one network); raises :class:`SpectralError`."""
    if description.get("format") != SPECTRAL_FORMAT:
        raise SpectralError(
            f"unsupported spectral format {description.get('format')!r} (want {SPECTRAL_FORMAT})"
        )
    if int(description.get("grid", -1)) != GRID:
        raise SpectralError(f"spectral grid must be {GRID}, got {description.get('grid')!r}")
    blocks = description.get("blocks")
    if (
        not isinstance(blocks, list)
        or not blocks
        or not all(
            isinstance(b, list | tuple) and len(b) == 2 and all(int(v) >= 1 for v in b)
            for b in blocks
        )
    ):
        raise SpectralError(f"spectral blocks must be a list of [channels, stride], got {blocks!r}")
    members = description.get("members", 1)
    if isinstance(members, bool) or not isinstance(members, int) or members < 1:
        raise SpectralError(f"spectral members must be a whole number >= 1, got {members!r}")
    return SpectralNet(blocks) if members == 1 else SpectralEnsemble(blocks, members)


def spectral_description(
    net: SpectralModel, info: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    """What ``CheckpointMeta.spectral`` stores for ``net`` (its tensors are stored beside); an
    ensemble adds ``members``, its size."""
    description: dict[str, Any] = {
        "format": SPECTRAL_FORMAT,
        "grid": GRID,
        "blocks": [list(b) for b in net.blocks],
        "info": dict(info or {}),
    }
    if isinstance(net, SpectralEnsemble):
        description["members"] = len(net.members)
    return description


@torch.no_grad()
def spectral_logits(
    net: SpectralModel, spectra: Sequence[np.ndarray | None], *, batch_size: int = 64
) -> list[float | None]:
    """The network's logit per spectrum (None stays None: a slice without a spectrum)."""
    net.eval()
    device = next(net.parameters()).device

    def run(x: np.ndarray) -> list[float]:
        return [float(v) for v in net(torch.from_numpy(x).to(device)).float().cpu().tolist()]

    return logits_by_batch(spectra, batch_size, run)


def logits_by_batch(
    spectra: Sequence[np.ndarray | None],
    batch_size: int,
    run: Callable[[np.ndarray], Sequence[float]],
) -> list[float | None]:
    """``run`` on the spectra present, ``batch_size`` at a time as (n, 1, GRID, GRID) float32
    (C-contiguous), its logits put back in order; None (a slice without a spectrum) stays
    None. What every runtime of the network shares (torch here, ONNX Runtime in
    :mod:`model.spectral_runtime`)."""
    out: list[float | None] = [None] * len(spectra)
    present = [(i, s) for i, s in enumerate(spectra) if s is not None]
    for start in range(0, len(present), batch_size):
        chunk = present[start : start + batch_size]
        x = np.ascontiguousarray(np.stack([s for _, s in chunk]).astype(np.float32)[:, None])
        for (i, _), value in zip(chunk, run(x), strict=True):
            out[i] = float(value)
    return out
