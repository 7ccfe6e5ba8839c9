"""The training stream: random patches of realistically varied clean slices, half of them
corrupted by a simulated artifact, generated on the fly and reproducible from (seed, epoch, i).

Both classes go through the same realism augmentation (contrast, resolution, noise, bias field,
field of view), so the only thing that separates them is the artifact. Each item is then
normalised exactly as the Predictor normalises (``model.preprocess.normalize_slice``), cropped to
a ``patch`` x ``patch`` window that contains anatomy, and flipped horizontally with p = 0.5.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import partial
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from model.preprocess import Normalization, normalize_slice

from .artifacts import KINDS, random_artifact
from .augment import apply_realism, random_realism, realism_record, split_acquisition
from .data import Sample

#: A crop must have at least this fraction of pixels above 0.1 to count as "containing anatomy".
MIN_FOREGROUND = 0.15


def anatomy_crop(
    image: torch.Tensor, patch: int, rng: np.random.Generator, tries: int = 10
) -> torch.Tensor:
    """A random ``patch`` x ``patch`` crop of a (1, S, S) tensor, preferring crops with anatomy:
    the first of ``tries`` random crops whose foreground fraction reaches MIN_FOREGROUND, else the
    crop with the most foreground."""
    _, h, w = image.shape
    if h < patch or w < patch:
        raise ValueError(f"patch {patch} is larger than the normalised image {h}x{w}")
    best, best_fg = image[:, :patch, :patch], -1.0
    for _ in range(tries):
        top = int(rng.integers(0, h - patch + 1))
        left = int(rng.integers(0, w - patch + 1))
        crop = image[:, top : top + patch, left : left + patch]
        fg = float((crop > 0.1).float().mean())
        if fg >= MIN_FOREGROUND:
            return crop
        if fg > best_fg:
            best, best_fg = crop, fg
    return best


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
    ) -> None:
        self.clean = [s for s in samples if s.label == 0]
        self.artifact = [s for s in samples if s.label == 1]
        if not self.clean:
            raise ValueError("training needs at least one clean slice")
        if not self.artifact and not simulate:
            raise ValueError("no artifact slices and simulate=False: nothing to learn from")
        if samples_per_epoch < 1:
            raise ValueError(f"samples_per_epoch must be >= 1, got {samples_per_epoch}")
        self.norm, self.patch, self.seed = norm, patch, seed
        self.samples_per_epoch = samples_per_epoch
        self.simulate, self.realism = simulate, realism
        self.whole = whole
        self.kinds, self.severities = tuple(kinds), tuple(severities)
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return self.samples_per_epoch

    def generate(self, index: int) -> tuple[np.ndarray, int, dict[str, Any]]:
        """The raw (un-normalised) image of item ``index``, its label and what was done to it."""
        rng = np.random.default_rng([self.seed, self.epoch, index])
        label = int(rng.random() < 0.5)
        use_real = label == 1 and bool(self.artifact) and (not self.simulate or rng.random() < 0.5)
        pool = self.artifact if use_real else self.clean
        sample = pool[int(rng.integers(len(pool)))]
        image = sample.pixels
        record: dict[str, Any] = {"name": sample.name}
        simulated = label == 1 and not use_real
        if not simulated:
            if self.realism:
                image, record["realism"] = random_realism(image, rng)
            return image, label, record
        artifact = partial(random_artifact, rng=rng, kinds=self.kinds, severities=self.severities)
        if not self.realism:
            image, record["artifact"] = artifact(image)
            return image, label, record
        record["realism"] = realism_record(rng)
        before, after = split_acquisition(record["realism"])
        image, record["artifact"] = artifact(apply_realism(image, before))
        return apply_realism(image, after), label, record

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        image, label, _ = self.generate(index)
        rng = np.random.default_rng([self.seed, self.epoch, index, 1])
        crop = normalize_slice(image, self.norm)
        if not self.whole:
            crop = anatomy_crop(crop, self.patch, rng)
        if rng.random() < 0.5:
            crop = crop.flip(-1)
        return crop.contiguous(), label
