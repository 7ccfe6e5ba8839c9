"""The second cross-simulator evaluation split (``msim/``): artifacts made by MONAI's k-space
transforms, not by our own simulator nor by TorchIO (MONAI, Cardoso et al. 2022,
https://arxiv.org/abs/2211.02701). **Never train on it, never choose a threshold on it.**

Gibbs ringing is our weakest kind and TorchIO has none; MONAI's ``GibbsNoise`` truncates k-space
outside a disc of radius ``(1 - alpha) * max(H, W) / sqrt(2)`` (``alpha = 0`` keeps every
frequency: the input comes back), so edges ring. ``KSpaceSpikeNoise`` sets the log-magnitude of
k-space at given locations (an RF spike: stripes over the whole slice), and ``RandRicianNoise``
adds the noise of a magnitude image at a level that is clearly visible (a scan one repeats). The
clean twins carry nuisances a radiographer would *not* repeat a scan for: a smooth multiplicative
bias field (``RandBiasField``) or a mild gamma contrast change (``AdjustContrast``).

MONAI works channel-first: a slice goes in as a (1, H, W) tensor (channel, then the two spatial
axes; k-space is taken over both). Parameters are drawn here with numpy's seeded Generator and
handed to MONAI's deterministic ``GibbsNoise``, ``KSpaceSpikeNoise`` and ``AdjustContrast``; the
Rician noise and the bias field exist only as random transforms, so those are seeded per slice
from the same Generator, and the seed, the noise level and the field's coefficients are recorded.
As in ``simulate.cross_sim``: half of the slices are transposed first, and every artifact is
redrawn (up to ``MAX_TRIES`` times) until it is *visible*, aligned NRMSE within ``VISIBLE`` =
(0.05, 0.45); severity ``moderate`` below 0.15, ``severe`` from there.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Final

import numpy as np
import torch

from ..data.samples import Sample
from .cross_sim import foreign_pairs

__all__ = [
    "CLEAN_NUISANCES",
    "KINDS",
    "gibbs",
    "kspace_spikes",
    "monai_artifact",
    "monai_nuisance",
    "monai_sim_pairs",
]

KINDS: Final = ("monai_gibbs", "monai_spike", "monai_noise")
CLEAN_NUISANCES: Final = ("monai_bias", "monai_gamma")
#: Gibbs truncation strength drawn uniformly in this range (below ~0.3 MONAI's disc still holds
#: the whole square of k-space on a square slice: nothing changes)
GIBBS_ALPHA: Final = (0.45, 0.85)
#: spike: 1-3 spikes, each adding this fraction of the DC magnitude to k-space at a location
#: this fraction of the half-width away from the centre
SPIKE_STRENGTH: Final = (0.02, 0.25)
SPIKE_RADIUS: Final = (0.1, 0.8)
#: Rician noise: sigma of each Gaussian channel as a fraction of the slice's 99th percentile
NOISE_SIGMA: Final = (0.03, 0.12)
#: bias field: MONAI's Legendre coefficients (degree 3) drawn in this range
BIAS_COEFF: Final = (-0.1, 0.1)
#: gamma of the contrast change, drawn log-uniformly in this range
GAMMA: Final = (0.85, 1.18)


def _chw(image: np.ndarray) -> torch.Tensor:
    """(H, W) -> the (1, H, W) float64 tensor MONAI expects (channel first)."""
    if image.ndim != 2:
        raise ValueError(f"image must be (H, W), got shape {image.shape}")
    return torch.from_numpy(np.asarray(image, dtype=np.float64)[None].copy())


def _out(image: Any) -> np.ndarray:
    return np.clip(np.asarray(image, dtype=np.float64)[0], 0, None).astype(np.float32)


def gibbs(image: np.ndarray, alpha: float) -> np.ndarray:
    """Gibbs ringing on (H, W) ``image``: MONAI's ``GibbsNoise(alpha)`` (k-space outside a centred
    disc zeroed; ``alpha`` in [0, 1], 0 returns the input)."""
    from monai.transforms.intensity.array import GibbsNoise

    if not 0 <= alpha <= 1:
        raise ValueError(f"alpha must be in [0, 1], got {alpha}")
    return _out(GibbsNoise(alpha)(_chw(image)))


def kspace_spikes(
    image: np.ndarray, locs: Sequence[tuple[int, int]], strengths: Sequence[float]
) -> tuple[np.ndarray, list[float]]:
    """RF spikes on (H, W) ``image``: at each (row, col) of the centred k-space, the magnitude is
    raised by ``strength`` x the DC magnitude (phase kept; 0 returns the input), handed to MONAI's
    ``KSpaceSpikeNoise`` as log-magnitudes; returns the image and those log-magnitudes."""
    from monai.transforms.intensity.array import KSpaceSpikeNoise

    if len(locs) != len(strengths) or not locs:
        raise ValueError(f"need one strength per location, got {len(locs)} and {len(strengths)}")
    if min(strengths) < 0:
        raise ValueError(f"strengths must be >= 0, got {list(strengths)}")
    h, w = image.shape
    k = np.abs(np.fft.fftshift(np.fft.fft2(np.asarray(image, dtype=np.float64))))
    dc = float(k[h // 2, w // 2])
    for r, c in locs:
        if not (0 <= r < h and 0 <= c < w):
            raise ValueError(f"spike location {(r, c)} outside k-space of shape {(h, w)}")
    # MONAI adds 1e-10 before the log: the same here, so a zero strength is exactly the input
    log_mag = [
        float(np.log(k[r, c] + 1e-10 + s * dc)) for (r, c), s in zip(locs, strengths, strict=True)
    ]
    transform = KSpaceSpikeNoise([(0, int(r), int(c)) for r, c in locs], log_mag)
    return _out(transform(_chw(image))), log_mag


def _spike_locations(shape: tuple[int, ...], n: int, rng: np.random.Generator) -> list[list[int]]:
    h, w = shape
    radius = rng.uniform(*SPIKE_RADIUS, n)
    angle = rng.uniform(0, 2 * np.pi, n)
    rows = np.clip(np.round(h // 2 + radius * (h / 2) * np.sin(angle)), 0, h - 1)
    cols = np.clip(np.round(w // 2 + radius * (w / 2) * np.cos(angle)), 0, w - 1)
    return [[int(r), int(c)] for r, c in zip(rows, cols, strict=True)]


def monai_artifact(
    image: np.ndarray, kind: str, rng: np.random.Generator
) -> tuple[np.ndarray, dict[str, Any]]:
    """One MONAI artifact of ``kind`` on (H, W) ``image``, with its parameters (one draw; see
    :func:`monai_sim_pairs` for the visibility redraw)."""
    if kind == "monai_gibbs":
        alpha = float(rng.uniform(*GIBBS_ALPHA))
        return gibbs(image, alpha), {"kind": kind, "alpha": alpha}
    if kind == "monai_spike":
        n = int(rng.integers(1, 4))
        locs = _spike_locations(image.shape, n, rng)
        strengths = rng.uniform(*SPIKE_STRENGTH, n).tolist()
        out, log_mag = kspace_spikes(image, [(r, c) for r, c in locs], strengths)
        record = {"kind": kind, "locs": locs, "strengths": strengths, "k_intensity": log_mag}
        return out, record
    if kind == "monai_noise":
        from monai.transforms.intensity.array import RandRicianNoise

        seed = int(rng.integers(2**31))
        relative = float(rng.uniform(*NOISE_SIGMA))
        sigma = relative * float(np.percentile(image, 99))
        noise = RandRicianNoise(prob=1.0, std=sigma, sample_std=False, dtype=np.float64)
        noise.set_random_state(seed=seed)
        out = _out(noise(_chw(image)))
        return out, {"kind": kind, "sigma": sigma, "sigma_p99": relative, "monai_seed": seed}
    raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")


def monai_nuisance(
    image: np.ndarray, kind: str, rng: np.random.Generator
) -> tuple[np.ndarray, dict[str, Any]]:
    """A clean slice with a nuisance a radiographer would not repeat a scan for."""
    if kind == "monai_bias":
        from monai.transforms.intensity.array import RandBiasField

        seed = int(rng.integers(2**31))
        field = RandBiasField(degree=3, coeff_range=BIAS_COEFF, prob=1.0, dtype=np.float64)
        field.set_random_state(seed=seed)
        out = _out(field(_chw(image)))
        return out, {"kind": kind, "monai_seed": seed, "coefficients": list(field._coeff)}
    if kind == "monai_gamma":
        from monai.transforms.intensity.array import AdjustContrast

        gamma = float(np.exp(rng.uniform(np.log(GAMMA[0]), np.log(GAMMA[1]))))
        return _out(AdjustContrast(gamma)(_chw(image))), {"kind": kind, "gamma": gamma}
    raise ValueError(f"kind must be one of {CLEAN_NUISANCES}, got {kind!r}")


def monai_sim_pairs(
    samples: Sequence[Sample], *, seed: int, variants: int = 1
) -> list[tuple[Sample, dict[str, Any]]]:
    """For each clean sample and variant: a clean twin with a MONAI nuisance (bias field and gamma
    alternating) and a visible MONAI artifact (kinds cycled); see
    :func:`.cross_sim.foreign_pairs`."""
    return foreign_pairs(
        samples,
        seed=seed,
        variants=variants,
        stream=11,
        simulator="monai",
        nuisances=CLEAN_NUISANCES,
        kinds=KINDS,
        nuisance=monai_nuisance,
        artifact=monai_artifact,
        clean_nrmse=True,
    )
