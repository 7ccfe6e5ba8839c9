"""Train the spectral network (:mod:`model.spectral`) on our own simulator's whole-slice twins.

The training slices are :func:`.fusion.training_slices` (each clean train slice with realism-
augmented clean twins and visible artifact twins of every kind and severity moderate / severe)
drawn with *other seeds* than the fused model's own training twins (seed 0 by default), so the
logistic regression that reads the network's logit is fitted on slices the network never saw.
TorchIO's and MONAI's artifacts are never trained on.

Recipe: binary cross-entropy, Adam (lr 1e-3, weight decay 1e-4, as the paper's), batch 50, the
learning rate annealed to 0 on a cosine over a fixed number of epochs (so a run is the same
whatever the machine's speed), the spectrum transposed and flipped at random (a spectrum of a
real image is point-symmetric; the phase-encode axis may be either).
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, Final

import numpy as np
import torch
import torch.nn.functional as F
from safetensors import safe_open
from safetensors.torch import save_file

from model.backends import file_digest
from model.spectral import (
    PREFIX,
    SpectralEnsemble,
    SpectralError,
    SpectralModel,
    SpectralNet,
    ensemble,
    spectral_description,
    spectral_from_tensors,
    spectrum_or_none,
)

from ..data.samples import Sample
from .fusion import training_slices

__all__ = [
    "SPECTRAL_HEADER",
    "fit_spectral",
    "load_spectral_file",
    "load_spectral_files",
    "recipe",
    "save_spectral_file",
    "spectral_training_set",
]

#: The key of a spectral network file's metadata (safetensors header).
SPECTRAL_HEADER: Final = "amaqc_spectral"


def spectral_training_set(
    samples: Sequence[Sample],
    *,
    seeds: Sequence[int],
    variants: int = 2,
    coarse_probability: float = 0.3,
    kinds: Sequence[str] | None = None,
    advance: Callable[[int], None] | None = None,
) -> tuple[np.ndarray, np.ndarray, dict[str, Any]]:
    """(spectra (N, GRID, GRID) float16, labels (N,), info) of the training twins of every seed,
    with artifacts of ``kinds`` only (default: every kind of the simulator).

    ``advance(n)`` is called after each seed with the number of clean input slices done."""
    if not seeds:
        raise ValueError("at least one seed is needed")
    spectra: list[np.ndarray] = []
    labels: list[int] = []
    per_kind: dict[str, int] = {}
    dropped = 0
    for seed in seeds:
        twins, n_dropped = training_slices(
            samples,
            seed=seed,
            variants=variants,
            coarse_probability=coarse_probability,
            kinds=kinds,
        )
        dropped += n_dropped
        for twin in twins:
            spectrum = spectrum_or_none(twin.pixels)
            if spectrum is None:
                continue  # a blank twin: nothing to learn from
            spectra.append(spectrum.astype(np.float16))
            labels.append(int(twin.label))
            if twin.label:
                kind = str(twin.info.get("kind", "?"))
                per_kind[kind] = per_kind.get(kind, 0) + 1
        if advance is not None:
            advance(sum(1 for s in samples if s.label == 0))
    y = np.asarray(labels, dtype=np.int64)
    if len(np.unique(y)) < 2:
        raise ValueError("the spectral network needs clean and artifact training slices")
    info = {
        "seeds": list(map(int, seeds)),
        "variants": variants,
        "coarse_probability": coarse_probability,
        "slices": int(y.size),
        "artifact": int(y.sum()),
        "dropped_not_visible": dropped,
        "artifact_kinds": dict(sorted(per_kind.items())),
        "simulator": "training.artifacts (never TorchIO or MONAI)",
    }
    if kinds is not None:
        from ..simulate.artifacts import KINDS

        info["held_out_kinds"] = sorted(set(KINDS) - set(kinds))
    return np.stack(spectra), y, info


def fit_spectral(
    spectra: np.ndarray,
    labels: np.ndarray,
    *,
    epochs: int = 6,
    batch_size: int = 50,
    lr: float = 1e-3,
    weight_decay: float = 1e-4,
    seed: int = 0,
    device: str | torch.device = "cpu",
    advance: Callable[[int, float], None] | None = None,
) -> SpectralNet:
    """Train a :class:`~model.spectral.SpectralNet` (see module). ``advance(n, loss)`` is called
    after each batch with its size and loss (for a progress bar)."""
    if epochs < 1:
        raise ValueError(f"epochs must be >= 1, got {epochs}")
    n = len(labels)
    if spectra.shape[0] != n or n < batch_size:
        raise ValueError(f"{spectra.shape[0]} spectra for {n} labels (need >= {batch_size})")
    generator = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    net = SpectralNet().to(device).train()
    opt = torch.optim.Adam(net.parameters(), lr=lr, weight_decay=weight_decay)
    x_all = torch.from_numpy(np.asarray(spectra))
    y_all = torch.from_numpy(np.asarray(labels)).float()
    steps_per_epoch = n // batch_size
    total = epochs * steps_per_epoch
    step = 0
    for _ in range(epochs):
        order = torch.randperm(n, generator=generator)
        for i in range(steps_per_epoch):
            idx = order[i * batch_size : (i + 1) * batch_size]
            xb = x_all[idx].float()[:, None]
            flips = torch.rand(3, generator=generator)
            if flips[0] < 0.5:
                xb = xb.transpose(2, 3)
            if flips[1] < 0.5:
                xb = xb.flip(2)
            if flips[2] < 0.5:
                xb = xb.flip(3)
            for group in opt.param_groups:
                group["lr"] = lr * 0.5 * (1 + math.cos(math.pi * step / total))
            loss = F.binary_cross_entropy_with_logits(net(xb.to(device)), y_all[idx].to(device))
            opt.zero_grad()
            torch.autograd.backward(loss)
            opt.step()
            step += 1
            if advance is not None:
                advance(len(idx), float(loss.item()))
    return net.cpu().eval()


def save_spectral_file(path: Path, net: SpectralModel, info: dict[str, Any] | None = None) -> Path:
    """Write the network alone (``spectral.*`` tensors, its description in the header)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tensors = {PREFIX + k: v.detach().cpu().contiguous() for k, v in net.state_dict().items()}
    header = json.dumps(spectral_description(net, info), sort_keys=True)
    tmp = path.with_name(path.name + ".tmp")
    save_file(tensors, str(tmp), metadata={SPECTRAL_HEADER: header})
    tmp.replace(path)
    return path


def load_spectral_file(path: Path) -> tuple[SpectralModel, dict[str, Any]]:
    """A file of :func:`save_spectral_file`: (network in eval mode, its description)."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"{path}: no such spectral network file")
    try:
        with safe_open(str(path), framework="pt", device="cpu") as f:
            header = (f.metadata() or {}).get(SPECTRAL_HEADER)
            found = {
                k[len(PREFIX) :]: f.get_tensor(k)
                for k in f.keys()  # noqa: SIM118 (safe_open has no iter)
                if k.startswith(PREFIX)
            }
    except Exception as exc:  # safetensors raises its own error types for corrupt files
        raise ValueError(f"{path}: not a readable safetensors file ({exc})") from None
    if header is None:
        raise ValueError(f"{path}: not a spectral network file (no {SPECTRAL_HEADER} header)")
    description = json.loads(header)
    try:
        net = spectral_from_tensors(description, found)
    except SpectralError as exc:
        raise ValueError(f"{path}: {exc}") from None
    return net.eval(), description


def load_spectral_files(paths: Sequence[Path]) -> tuple[SpectralModel, dict[str, Any]]:
    """The network of one file of :func:`save_spectral_file`, or the ensemble
    (:func:`model.spectral.ensemble`) of several, with the info the model card reads: the one
    file's info (with its name and SHA-256), or ``members`` (each file's) and the kinds every
    member was trained without (``held_out_kinds``: only those were never shown to the
    ensemble). Raises ValueError naming the file or the mismatch."""
    if not paths:
        raise ValueError("no spectral network file given")
    nets, infos = [], []
    for path in map(Path, paths):
        net, description = load_spectral_file(path)
        if isinstance(net, SpectralEnsemble):
            raise ValueError(f"{path}: already an ensemble; give its member networks instead")
        nets.append(net)
        info = description.get("info") or {}
        infos.append({"file": path.name, "sha256": file_digest(path), **info})
    try:
        model = ensemble(nets)
    except SpectralError as exc:
        raise ValueError(str(exc)) from None
    if len(infos) == 1:
        return model, infos[0]
    held = set.intersection(*(set(i.get("held_out_kinds") or ()) for i in infos))
    return model, {"members": infos, "held_out_kinds": sorted(held)}


def recipe(info: Mapping[str, Any]) -> str:
    """One network's training recipe as the card and ``amaqc info`` name it, from its file's
    ``info`` (an ensemble's ``members`` each hold one)."""
    return f"seeds {info.get('seeds', '?')}, {info.get('epochs', '?')} epochs"
