"""The splits ``amaqc data build`` adds for detector v2 (issue 17), from the *pristine* clean
slices of the non-training splits (read before the evaluation twins replace them):

* ``xsim/`` -- the cross-simulator check (``simulate.cross_sim``): TorchIO motion, ghosting and
  spikes, each visible, with clean twins carrying a bias field or a lower resolution, on the
  test and transfer subjects. Never trained on, never used to choose anything.
* ``msim/`` -- the second cross-simulator check (``simulate.cross_sim_monai``): MONAI's Gibbs
  ringing (k-space truncation), k-space spikes and Rician noise, each visible, with clean twins
  carrying a bias field or a mild gamma change, on the same slices as ``xsim/``. Only scored.
* ``calib/`` -- the pooled validation set the threshold is chosen on: every non-training source
  (val, test and transfer subjects; DWI b0, T1, EPI), with fresh draws of both simulators
  (ours: moderate and severe; TorchIO's) that share no image with the evaluation splits.

All use the ``<split>/clean|artifact/`` layout and get manifest rows (``kind`` is the
artifact kind, ``tio_*`` for TorchIO's, ``monai_*`` for MONAI's; ``artifact`` the JSON record).
"""

from __future__ import annotations

import csv
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Final

from rich.progress import Progress

from ..data.build import MANIFEST_COLUMNS
from ..data.readers import read_slices
from ..data.samples import Sample
from .cross_sim import cross_sim_pairs
from .cross_sim_monai import monai_sim_pairs
from .evalset import simulated_pairs
from .files import to_png16

__all__ = ["CALIB_FROM", "MSIM_FROM", "XSIM_FROM", "materialize_extra", "pristine_samples"]

#: split of the source slices -> TorchIO variants per clean slice in xsim/
XSIM_FROM: Final = {"test": 2, "transfer": 2}
#: split of the source slices -> MONAI variants per clean slice in msim/ (the same slices)
MSIM_FROM: Final = {"test": 2, "transfer": 2}
#: the splits whose sources are pooled in calib/ -> draws per clean slice and simulator (val
#: and transfer have few source slices: 11 and 45)
CALIB_FROM: Final = {"val": 4, "test": 1, "transfer": 2}
_COLUMNS: Final = (*MANIFEST_COLUMNS, "kind", "severity", "artifact")


def pristine_samples(out_dir: Path, splits: Sequence[str]) -> list[Sample]:
    """The clean slices of ``splits`` as the base build wrote them (call before
    ``materialize_eval``, which replaces them with realism-augmented copies)."""
    with (out_dir / "manifest.csv").open(newline="") as f:
        rows = [r for r in csv.DictReader(f) if r["split"] in splits and r["label"] == "0"]
    return [
        Sample(read_slices(out_dir / r["file"])[0].pixels, 0, r["subject"], r["file"], r)
        for r in rows
    ]


def _rename(sample: Sample, split: str) -> str:
    """``test/clean/x.png`` -> ``<split>/clean/x.png`` (the artifact folder kept)."""
    _, _, rest = sample.name.partition("/")
    return f"{split}/{rest}"


def _write(
    out_dir: Path, split: str, pairs: list[tuple[Sample, dict[str, Any]]]
) -> list[dict[str, str]]:
    rows = []
    for sample, record in pairs:
        name = _rename(sample, split)
        path = out_dir / name
        path.parent.mkdir(parents=True, exist_ok=True)
        to_png16(sample.pixels).save(path)
        art = record.get("artifact", {})
        rows.append(
            {
                **{k: str(sample.info.get(k, "")) for k in MANIFEST_COLUMNS},
                "file": name,
                "split": split,
                "label": str(sample.label),
                "kind": sample.info.get("kind", "") if sample.label else "",
                "severity": sample.info.get("severity", "") if sample.label else "",
                "artifact": json.dumps(art) if art else json.dumps(record.get("clean", {})),
            }
        )
    return rows


def materialize_extra(
    out_dir: Path, pristine: Sequence[Sample], *, seed: int = 0, progress: bool = True
) -> list[dict[str, str]]:
    """Write ``xsim/``, ``msim/`` and ``calib/`` from ``pristine`` (see :func:`pristine_samples`)
    and append their rows to ``manifest.csv``; returns the new rows."""
    by_split: dict[str, list[Sample]] = {}
    for s in pristine:
        by_split.setdefault(s.info["split"], []).append(s)
    new_rows: list[dict[str, str]] = []
    with Progress(disable=not progress) as bar:
        jobs = [*XSIM_FROM, *MSIM_FROM, *CALIB_FROM]
        task = bar.add_task("cross-simulator and calibration splits", total=len(jobs))
        for i, (split, variants) in enumerate(XSIM_FROM.items()):
            pairs = cross_sim_pairs(
                by_split.get(split, []), seed=seed * 100 + 10 + i, variants=variants
            )
            new_rows += _write(out_dir, "xsim", pairs)
            bar.advance(task)
        for i, (split, variants) in enumerate(MSIM_FROM.items()):
            pairs = monai_sim_pairs(
                by_split.get(split, []), seed=seed * 100 + 20 + i, variants=variants
            )
            new_rows += _write(out_dir, "msim", pairs)
            bar.advance(task)
        for i, (split, variants) in enumerate(CALIB_FROM.items()):
            samples = by_split.get(split, [])
            ours = simulated_pairs(
                samples,
                seed=seed * 100 + 50 + i,
                severities=("moderate", "severe"),
                variants=variants,
            )
            theirs = cross_sim_pairs(samples, seed=seed * 100 + 60 + i, variants=variants)
            # keep calib's file names apart per simulator (same source slice in both)
            ours = [(_tag(s, "ours"), r) for s, r in ours]
            theirs = [(_tag(s, "tio"), r) for s, r in theirs]
            new_rows += _write(out_dir, "calib", ours + theirs)
            bar.advance(task)
    manifest = out_dir / "manifest.csv"
    with manifest.open(newline="") as f:
        rows = list(csv.DictReader(f))
    tmp = manifest.with_suffix(".csv.tmp")
    with tmp.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(_COLUMNS), extrasaction="ignore")
        writer.writeheader()
        writer.writerows([*rows, *new_rows])
    tmp.replace(manifest)
    return new_rows


def _tag(sample: Sample, tag: str) -> Sample:
    stem, dot, suffix = sample.name.rpartition(".")
    name = f"{stem}_{tag}{dot}{suffix}" if dot else f"{sample.name}_{tag}"
    return Sample(sample.pixels, sample.label, sample.group, name, sample.info)
