"""The training stream: random patches of realistically varied clean slices, half of them
corrupted by a simulated artifact, generated on the fly and reproducible from (seed, epoch, i).

Both classes go through the same realism augmentation (contrast, resolution, noise, bias field,
field of view), so the only thing that separates them is the artifact. Each item is then
normalised exactly as the Predictor normalises (``model.preprocess.normalize_slice``), cropped to
a ``patch`` x ``patch`` window that contains anatomy, and flipped horizontally with p = 0.5.

A random window can miss an artifact that is only visible in part of the slice (ringing at an
edge, a ghost in the background): a patch labelled "artifact" that shows none is a wrong label.
So for a share of the items (``guided``) the window is the one, of a few random anatomy windows,
where the simulated artifact changed the image most. To keep *where* a crop lies from telling
the classes apart, clean items choose their window the same way, by an artifact simulated on
them for that purpose only (a phantom) whose image is then thrown away.

A patch of an artifact slice can also show nothing of its artifact even where the window is
guided (a spike that rings in one corner, motion that blurs one edge). With ``patch_floor`` an
artifact patch keeps label 1 only where the artifact visibly changed it: the RMS of the change
inside the patch, relative to the RMS of the whole clean slice, reaches the floor (the same
NRMSE scale as the slice-level visibility floor, ``training.simulate.cross_sim.VISIBLE``);
otherwise it is labelled clean, as a reader would label it (issue 17, item 5). The joint loss's
Dice term then measures the overlap of predicted and truly changed patches in a batch.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import partial
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from model.preprocess import Normalization, normalize_slice

from ..data.samples import Sample
from ..simulate.artifacts import KINDS, random_artifact
from ..simulate.augment import apply_realism, realism_record, split_acquisition

#: A crop must have at least this fraction of pixels above 0.1 to count as "containing anatomy".
MIN_FOREGROUND = 0.15


def _foreground(crop: torch.Tensor) -> float:
    """Fraction of a crop's pixels above 0.1 (compared with MIN_FOREGROUND)."""
    return float((crop > 0.1).float().mean())


def anatomy_window(
    image: torch.Tensor, patch: int, rng: np.random.Generator, tries: int = 10
) -> tuple[int, int]:
    """(top, left) of a random ``patch`` x ``patch`` window of a (1, S, S) tensor, preferring
    windows with anatomy: the first of ``tries`` random windows whose foreground fraction reaches
    MIN_FOREGROUND, else the window with the most foreground."""
    _, h, w = image.shape
    if h < patch or w < patch:
        raise ValueError(f"patch {patch} is larger than the normalised image {h}x{w}")
    best, best_fg = (0, 0), -1.0
    for _ in range(tries):
        top = int(rng.integers(0, h - patch + 1))
        left = int(rng.integers(0, w - patch + 1))
        fg = _foreground(image[:, top : top + patch, left : left + patch])
        if fg >= MIN_FOREGROUND:
            return top, left
        if fg > best_fg:
            best, best_fg = (top, left), fg
    return best


def anatomy_crop(
    image: torch.Tensor, patch: int, rng: np.random.Generator, tries: int = 10
) -> torch.Tensor:
    """The crop at :func:`anatomy_window`."""
    top, left = anatomy_window(image, patch, rng, tries)
    return image[:, top : top + patch, left : left + patch]


def patch_change(
    change: torch.Tensor, clean: torch.Tensor, top: int, left: int, patch: int
) -> float:
    """RMS of ``change`` (an artifact's signed or absolute change, (1, S, S)) inside the window,
    relative to the RMS of the whole ``clean`` slice: a patch's share of the slice's NRMSE scale
    (a change spread evenly over a slice at NRMSE x reads x in every patch)."""
    scale = float(clean.square().mean().sqrt())
    if scale == 0.0:
        return 0.0
    window = change[:, top : top + patch, left : left + patch]
    return float(window.square().mean().sqrt()) / scale


def guided_window(
    image: torch.Tensor,
    change: torch.Tensor,
    patch: int,
    rng: np.random.Generator,
    tries: int = 10,
) -> tuple[int, int] | None:
    """(top, left) of the ``patch`` x ``patch`` window, of ``tries`` random ones of a (1, S, S)
    tensor whose foreground fraction reaches MIN_FOREGROUND, where ``change`` (same shape: how
    much an artifact altered each pixel) is largest on average; None when none has anatomy."""
    _, h, w = image.shape
    if h < patch or w < patch:
        raise ValueError(f"patch {patch} is larger than the normalised image {h}x{w}")
    if change.shape != image.shape:
        raise ValueError(f"change {tuple(change.shape)} must match image {tuple(image.shape)}")
    best: tuple[int, int] | None = None
    best_change = -1.0
    for _ in range(tries):
        top = int(rng.integers(0, h - patch + 1))
        left = int(rng.integers(0, w - patch + 1))
        window = (slice(None), slice(top, top + patch), slice(left, left + patch))
        if _foreground(image[window]) < MIN_FOREGROUND:
            continue
        amount = float(change[window].mean())
        if amount > best_change:
            best, best_change = (top, left), amount
    return best


def guided_or_anatomy_window(
    image: torch.Tensor,
    change: torch.Tensor,
    patch: int,
    rng: np.random.Generator,
    tries: int = 10,
) -> tuple[int, int]:
    """:func:`guided_window`, or :func:`anatomy_window` when no window has anatomy."""
    at = guided_window(image, change, patch, rng, tries)
    return at if at is not None else anatomy_window(image, patch, rng, tries)


def guided_crop(
    image: torch.Tensor,
    change: torch.Tensor,
    patch: int,
    rng: np.random.Generator,
    tries: int = 10,
) -> torch.Tensor:
    """The crop at :func:`guided_or_anatomy_window`."""
    top, left = guided_or_anatomy_window(image, change, patch, rng, tries)
    return image[:, top : top + patch, left : left + patch]


class TrainPatches(Dataset[tuple[torch.Tensor, int]]):
    """``samples_per_epoch`` balanced (patch, label) pairs per epoch.

    Args:
        samples: clean (label 0) and, optionally, real artifact (label 1) slices.
        norm: the normalisation the checkpoint will record.
        patch: crop side in pixels (the network's input size).
        samples_per_epoch: items per epoch (the stream is generated, so an epoch is a budget).
        seed: base seed; item ``i`` of epoch ``e`` depends on (seed, e, i) only, so results do
            not depend on the number of DataLoader workers or on ranks in distributed training.
        simulate: add simulated artifacts to clean slices (always, when there is no real
            artifact slice; otherwise half of the artifact items are simulated).
        kinds, severities: what the simulator may draw.
        realism: apply the realism augmentation to both classes.
        whole: return the whole normalised (1, size, size) slice instead of a patch (for
            slice-level training, ``TrainConfig.slice_level``).
        guided: share of items (0..1) cropped by :func:`guided_crop` where the simulated
            artifact (for clean items, a phantom one) changed the image most; needs
            ``simulate``; real artifact slices always get :func:`anatomy_crop`.
        patch_floor: 0 = every patch carries its slice's label; > 0 = a patch of a simulated
            artifact slice is labelled artifact only when :func:`patch_change` there reaches
            this floor (NRMSE scale; real artifact slices keep their label).
    """

    def __init__(
        self,
        samples: Sequence[Sample],
        *,
        norm: Normalization,
        patch: int,
        samples_per_epoch: int,
        seed: int = 0,
        simulate: bool = True,
        kinds: Sequence[str] = KINDS,
        severities: Sequence[str] = ("moderate", "severe"),
        realism: bool = True,
        whole: bool = False,
        guided: float = 0.0,
        patch_floor: float = 0.0,
    ) -> None:
        self.clean = [s for s in samples if s.label == 0]
        self.artifact = [s for s in samples if s.label == 1]
        if not self.clean:
            raise ValueError("training needs at least one clean slice")
        if not self.artifact and not simulate:
            raise ValueError("no artifact slices and simulate=False: nothing to learn from")
        if samples_per_epoch < 1:
            raise ValueError(f"samples_per_epoch must be >= 1, got {samples_per_epoch}")
        if not 0.0 <= guided <= 1.0:
            raise ValueError(f"guided must be in [0, 1], got {guided}")
        if not 0.0 <= patch_floor < 1.0:
            raise ValueError(f"patch_floor must be in [0, 1), got {patch_floor}")
        self.norm, self.patch, self.seed = norm, patch, seed
        self.samples_per_epoch = samples_per_epoch
        self.simulate, self.realism = simulate, realism
        self.whole = whole
        self.guided = guided if simulate else 0.0
        self.patch_floor = patch_floor if simulate and not whole else 0.0
        self.kinds, self.severities = tuple(kinds), tuple(severities)
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return self.samples_per_epoch

    def generate(self, index: int) -> tuple[np.ndarray, int, dict[str, Any]]:
        """The raw (un-normalised) image of item ``index``, its label and what was done to it."""
        image, label, record, _ = self._generate(index)
        return image, label, record

    def _generate(
        self, index: int, split: bool = False
    ) -> tuple[np.ndarray, int, dict[str, Any], tuple[np.ndarray, np.ndarray | None] | None]:
        """:meth:`generate` plus ``(slice, the same with the artifact)`` before the acquisition
        ops (None for a clean slice, whose realism is then applied in those two steps too, as an
        artifact slice's is: ``split``), or None for a real slice (what :meth:`_change` needs)."""
        rng = np.random.default_rng([self.seed, self.epoch, index])
        label = int(rng.random() < 0.5)
        use_real = label == 1 and bool(self.artifact) and (not self.simulate or rng.random() < 0.5)
        pool = self.artifact if use_real else self.clean
        sample = pool[int(rng.integers(len(pool)))]
        image = sample.pixels
        record: dict[str, Any] = {"name": sample.name}
        simulated = label == 1 and not use_real
        if not simulated:
            if not self.realism:
                return image, label, record, None if use_real else (image, None)
            record["realism"] = realism_record(rng)
            if use_real or not split:
                return apply_realism(image, record["realism"]), label, record, None
            before, after = split_acquisition(record["realism"])
            base = apply_realism(image, before)
            return apply_realism(base, after), label, record, (base, None)
        artifact = partial(random_artifact, rng=rng, kinds=self.kinds, severities=self.severities)
        if not self.realism:
            corrupted, record["artifact"] = artifact(image)
            return corrupted, label, record, (image, corrupted)
        record["realism"] = realism_record(rng)
        before, after = split_acquisition(record["realism"])
        base = apply_realism(image, before)
        corrupted, record["artifact"] = artifact(base)
        return apply_realism(corrupted, after), label, record, (base, corrupted)

    def _change(
        self, source: tuple[np.ndarray, np.ndarray | None], rng: np.random.Generator
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(|normalised slice with the artifact - without it|, the normalised slice without it),
        before the acquisition ops (noise, ringing, 8-bit rendering: the same in both, they change
        no pixel's place). A clean slice gets a phantom artifact drawn from ``rng`` for this
        only."""
        base, corrupted = source
        if corrupted is None:
            corrupted, _ = random_artifact(
                base, rng=rng, kinds=self.kinds, severities=self.severities
            )
        clean = normalize_slice(base, self.norm)
        return (normalize_slice(corrupted, self.norm) - clean).abs(), clean

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        guide_rng = np.random.default_rng([self.seed, self.epoch, index, 2])
        guided = not self.whole and self.guided > 0 and guide_rng.random() < self.guided
        image, label, _, source = self._generate(index, split=guided)
        rng = np.random.default_rng([self.seed, self.epoch, index, 1])
        crop = normalize_slice(image, self.norm)
        if not self.whole:
            # A simulated artifact's source is (before, after); a real slice's is None.
            relabel = self.patch_floor > 0 and source is not None and source[1] is not None
            change = clean = None
            if source is not None and (guided or relabel):
                change, clean = self._change(source, guide_rng)
            if guided and change is not None:
                top, left = guided_or_anatomy_window(crop, change, self.patch, guide_rng)
            else:
                top, left = anatomy_window(crop, self.patch, rng)
            if relabel and change is not None and clean is not None:
                seen = patch_change(change, clean, top, left, self.patch)
                label = int(seen >= self.patch_floor)
            crop = crop[:, top : top + self.patch, left : left + self.patch]
        if rng.random() < 0.5:
            crop = crop.flip(-1)
        return crop.contiguous(), label
