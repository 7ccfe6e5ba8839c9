"""Fixed evaluation sets: every clean slice yields one realism-augmented clean copy and one
artifact copy (kind and severity cycled so each is equally represented), seeded per slice so the
set is identical on every machine and every run."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from ..data.samples import Sample
from .artifacts import KINDS, SEVERITIES, simulate
from .augment import apply_realism, realism_record, split_acquisition


def simulated_pairs(
    samples: Sequence[Sample],
    *,
    seed: int,
    kinds: Sequence[str] = KINDS,
    severities: Sequence[str] = SEVERITIES,
    realism: bool = True,
    variants: int = 1,
    coarse_probability: float = 0.0,
) -> list[tuple[Sample, dict[str, Any]]]:
    """(sample, record) pairs: ``variants`` clean and as many artifact versions of every clean
    input slice (variant v > 0 is named ``<stem>_v<v><suffix>``). Each clean/artifact pair shares
    its realism draw; the acquisition ops (ringing, noise) are applied after the artifact.

    The record holds ``realism`` parameters and, for the artifact version, the ``artifact``
    record (kind, severity and sampled parameters), so the evaluation can be broken down by kind
    and severity. ``coarse_probability`` is passed to :func:`.augment.realism_record`
    (0: the records every evaluation split was built with).
    """
    combos = [(k, s) for s in severities for k in kinds]
    out: list[tuple[Sample, dict[str, Any]]] = []
    clean = [s for s in samples if s.label == 0]
    if variants < 1:
        raise ValueError(f"variants must be >= 1, got {variants}")
    jobs = [(i, v, sample) for i, sample in enumerate(clean) for v in range(variants)]
    for n, (i, v, sample) in enumerate(jobs):
        for label in (0, 1):
            # The clean and artifact twins share one realism draw: they differ by the artifact.
            realism_rng = np.random.default_rng([seed, i, v])
            rng = np.random.default_rng([seed, i, v, 1])
            info = dict(sample.info)
            record: dict[str, Any] = {}
            before: dict[str, Any] = {"ops": []}
            after: dict[str, Any] = before
            if realism:
                record["realism"] = realism_record(
                    realism_rng, coarse_probability=coarse_probability
                )
                before, after = split_acquisition(record["realism"])
            image = apply_realism(sample.pixels, before)
            if label:
                kind, severity = combos[n % len(combos)]
                image, record["artifact"] = simulate(image, kind, severity, rng)
                info.update(kind=kind, severity=severity)
            image = apply_realism(image, after)
            name = sample.name.replace("clean/", "artifact/" if label else "clean/", 1)
            if v:
                stem, dot, suffix = name.rpartition(".")
                name = f"{stem}_v{v}{dot}{suffix}" if dot else f"{name}_v{v}"
            out.append((Sample(image.astype(np.float32), label, sample.group, name, info), record))
    return out
