"""The cross-simulator evaluation split: artifacts made by TorchIO, not by our own simulator.

A detector tuned on ``simulate.artifacts`` can learn that simulator's fingerprints; this split
asks whether it flags motion, ghosting and spikes made another way (TorchIO, Pérez-García et al.,
CMPB 2021, https://doi.org/10.1016/j.cmpb.2021.106236), and whether it leaves alone clean slices
with the nuisances a scanner really produces: a smooth bias field (``RandomBiasField``) or a
1.5-3x lower acquired resolution (``RandomAnisotropy``). **Never train on it.**

TorchIO works on 3-D volumes: a slice is put in as a (1, 1, H, W) tensor (channels, x, y, z), so
``Motion`` splits k-space along the last axis (W) and not along a size-1 axis (the pitfall in
``shared/DATA.md``), its rotation is about x (in-plane) and its translation in y, z. The motion
parameters are drawn here and handed to TorchIO's deterministic ``Motion``; ghosting and spikes use
TorchIO's random transforms seeded per slice. Half of the slices are transposed first, so the
phase-encode axis is vertical for some and horizontal for others.

Every artifact is redrawn (up to ``MAX_TRIES`` times) until it is *visible*: NRMSE after
re-alignment (the best integer shift, so a global displacement does not count) between
``VISIBLE`` = (0.05, 0.45). Its severity is recorded from that NRMSE: ``moderate`` below 0.15,
``severe`` from there, so every item counts towards the moderate + severe targets.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Final

import numpy as np
import torch

from ..data.samples import Sample

__all__ = [
    "CLEAN_NUISANCES",
    "KINDS",
    "MAX_TRIES",
    "VISIBLE",
    "aligned_nrmse",
    "cross_sim_pairs",
    "foreign_pairs",
    "tio_artifact",
    "tio_nuisance",
    "visible_artifact",
]

KINDS: Final = ("tio_motion", "tio_ghosting", "tio_spike")
CLEAN_NUISANCES: Final = ("tio_bias", "tio_anisotropy")
VISIBLE: Final = (0.05, 0.45)
MAX_TRIES: Final = 30


def aligned_nrmse(reference: np.ndarray, other: np.ndarray) -> float:
    """rms(reference - other shifted by the integer shift that best aligns it) / rms(reference).

    The shift is the peak of the circular cross-correlation (FFT), so an artifact that only moves
    the whole image reads ~0.
    """
    a = np.asarray(reference, dtype=np.float64)
    b = np.asarray(other, dtype=np.float64)
    if a.shape != b.shape:
        raise ValueError(f"shapes differ: {a.shape} vs {b.shape}")
    corr = np.fft.ifft2(np.fft.fft2(a) * np.conj(np.fft.fft2(b))).real
    dy, dx = np.unravel_index(int(np.argmax(corr)), corr.shape)
    shifted = np.roll(b, (dy, dx), axis=(0, 1))
    norm = float(np.sqrt((a**2).mean()))
    return float(np.sqrt(((a - shifted) ** 2).mean()) / norm) if norm > 0 else 0.0


def _subject(image: np.ndarray) -> Any:
    import torchio as tio

    tensor = torch.from_numpy(image[None, None].astype(np.float32))
    return tio.ScalarImage(tensor=tensor)  # type: ignore[no-untyped-call]


def _out(image: Any) -> np.ndarray:
    return np.clip(image.data[0, 0].numpy().astype(np.float32), 0, None)


def tio_artifact(
    image: np.ndarray, kind: str, rng: np.random.Generator
) -> tuple[np.ndarray, dict[str, Any]]:
    """One TorchIO artifact of ``kind`` on (H, W) ``image``, with its parameters (one draw; see
    :func:`cross_sim_pairs` for the visibility redraw)."""
    import torchio as tio

    torch_seed = int(rng.integers(2**31))
    torch.manual_seed(torch_seed)
    subject = _subject(image)
    if kind == "tio_motion":
        n = int(rng.integers(1, 4))
        degrees = np.zeros((n, 3))
        degrees[:, 0] = rng.uniform(-12, 12, n)  # about x: in the (H, W) plane
        translation = np.zeros((n, 3))
        translation[:, 1:] = rng.uniform(-10, 10, (n, 2))
        times = np.sort(rng.uniform(0.2, 0.8, n))
        out = tio.Motion(degrees, translation, times, "linear")(subject)
        params = {"degrees": degrees[:, 0].tolist(), "translation": translation[:, 1:].tolist()}
        params["times"] = times.tolist()
    elif kind == "tio_ghosting":
        transform = tio.RandomGhosting(num_ghosts=(2, 10), axes=(1, 2), intensity=(0.3, 1.0))
        out = transform(subject)
        params = {"transform": "RandomGhosting"}
    elif kind == "tio_spike":
        out = tio.RandomSpike(num_spikes=(1, 3), intensity=(0.1, 1.5))(subject)
        params = {"transform": "RandomSpike"}
    else:
        raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
    return _out(out), {"kind": kind, "torch_seed": torch_seed, **params}


def tio_nuisance(
    image: np.ndarray, kind: str, rng: np.random.Generator
) -> tuple[np.ndarray, dict[str, Any]]:
    """A clean slice with a nuisance a radiographer would not repeat a scan for."""
    import torchio as tio

    torch_seed = int(rng.integers(2**31))
    torch.manual_seed(torch_seed)
    subject = _subject(image)
    if kind == "tio_bias":
        out = tio.RandomBiasField(coefficients=(0.3, 0.6), order=3)(subject)
    elif kind == "tio_anisotropy":
        out = tio.RandomAnisotropy(axes=(1, 2), downsampling=(1.5, 3.0))(subject)
    else:
        raise ValueError(f"kind must be one of {CLEAN_NUISANCES}, got {kind!r}")
    return _out(out), {"kind": kind, "torch_seed": torch_seed}


#: ``(image, kind, rng) -> (image, record)``: one draw of a simulator's artifact or nuisance.
Draw = Callable[[np.ndarray, str, np.random.Generator], tuple[np.ndarray, dict[str, Any]]]


def visible_artifact(
    image: np.ndarray, kind: str, rng: np.random.Generator, draw: Draw
) -> tuple[np.ndarray, dict[str, Any]] | None:
    """``draw`` redrawn (up to ``MAX_TRIES`` times) until the change is visible: aligned NRMSE
    within ``VISIBLE``; the record gets the NRMSE and the number of tries. None if never."""
    for attempt in range(MAX_TRIES):
        out, record = draw(image, kind, rng)
        nrmse = aligned_nrmse(image, out)
        if VISIBLE[0] <= nrmse <= VISIBLE[1]:
            record.update(nrmse=nrmse, tries=attempt + 1)
            return out, record
    return None


def foreign_pairs(
    samples: Sequence[Sample],
    *,
    seed: int,
    variants: int,
    stream: int,
    simulator: str,
    nuisances: Sequence[str],
    kinds: Sequence[str],
    nuisance: Draw,
    artifact: Draw,
    clean_nrmse: bool = False,
) -> list[tuple[Sample, dict[str, Any]]]:
    """The pairing shared by the foreign simulators' splits: for each clean sample and variant
    (its own generator, ``[seed, i, v, stream]``), half of them transposed so the phase-encode
    axis varies, a clean twin with a nuisance (``nuisances`` cycled) and a visible artifact
    (``kinds`` cycled). A slice on which no draw is visible gets no artifact twin. With
    ``clean_nrmse`` the clean twin's record also says how little its nuisance changed the slice.

    Names follow ``training.evalset``: ``clean/`` becomes ``artifact/`` for the artifact, and
    variant v > 0 gets ``_v<v>`` before the suffix.
    """
    if variants < 1:
        raise ValueError(f"variants must be >= 1, got {variants}")
    out: list[tuple[Sample, dict[str, Any]]] = []
    clean = [s for s in samples if s.label == 0]
    for n, (i, v, sample) in enumerate(
        (i, v, s) for i, s in enumerate(clean) for v in range(variants)
    ):
        rng = np.random.default_rng([seed, i, v, stream])
        transpose = bool(rng.integers(2))
        base = sample.pixels.T if transpose else sample.pixels
        name = sample.name
        if v:
            stem, dot, suffix = name.rpartition(".")
            name = f"{stem}_v{v}{dot}{suffix}" if dot else f"{name}_v{v}"
        image, record = nuisance(base, nuisances[n % len(nuisances)], rng)
        record["transposed"] = transpose
        if clean_nrmse:
            record["nrmse"] = aligned_nrmse(base, image)
        info = {**sample.info, "kind": "", "severity": ""}
        image = image.T if transpose else image
        out.append(
            (Sample(image, 0, sample.group, name, info), {"clean": record, "simulator": simulator})
        )
        kind = kinds[n % len(kinds)]
        made = visible_artifact(base, kind, rng, artifact)
        if made is None:
            continue
        art, record = made
        record["transposed"] = transpose
        severity = "moderate" if record["nrmse"] < 0.15 else "severe"
        art_info = {**sample.info, "kind": kind, "severity": severity}
        art_name = name.replace("clean/", "artifact/", 1)
        art = art.T if transpose else art
        out.append(
            (
                Sample(art, 1, sample.group, art_name, art_info),
                {"artifact": record, "simulator": simulator},
            )
        )
    return out


def cross_sim_pairs(
    samples: Sequence[Sample], *, seed: int, variants: int = 1
) -> list[tuple[Sample, dict[str, Any]]]:
    """For each clean sample and variant: a clean twin with a TorchIO nuisance (bias field and
    lower resolution alternating) and a visible TorchIO artifact (kinds cycled); see
    :func:`foreign_pairs`."""
    return foreign_pairs(
        samples,
        seed=seed,
        variants=variants,
        stream=7,
        simulator="torchio",
        nuisances=CLEAN_NUISANCES,
        kinds=KINDS,
        nuisance=tio_nuisance,
        artifact=tio_artifact,
    )
