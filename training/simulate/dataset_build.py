"""``amaqc data build``: the base dataset of real clean slices (``training.data.build``) plus fixed,
seeded artifact copies for the evaluation splits, so every model is scored on the same images.

Each clean slice of ``val``, ``test`` and ``transfer`` is replaced by a realism-augmented copy
and gets an artifact twin under ``<split>/artifact/`` (kind and severity cycled, mild included
so the severity breakdown covers it). ``train`` stays clean: training simulates artifacts on
the fly. ``manifest.csv`` gains ``kind``, ``severity`` and ``artifact`` (the JSON record).
"""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path
from typing import Any

from rich.progress import Progress

from ..data.build import MANIFEST_COLUMNS, build_dataset
from ..data.readers import read_slices
from ..data.samples import Sample
from .dataset_extra import (
    CALIB_FROM,
    MSIM_FROM,
    XSIM_FROM,
    materialize_extra,
    pristine_samples,
)
from .evalset import simulated_pairs
from .files import to_png16

EVAL_SPLITS = ("val", "test", "transfer")
#: Realism/artifact draws per clean slice: val has few source slices (11), and the threshold
#: chosen on it needs more than 22 images to be stable.
VARIANTS = {"val": 4, "test": 1, "transfer": 2}
EXTRA_COLUMNS = ("kind", "severity", "artifact")


def materialize_eval(
    out_dir: Path, *, seed: int = 0, progress: bool = True
) -> list[dict[str, str]]:
    """Add the artifact twins to the evaluation splits of a built dataset; returns the rows."""
    manifest = out_dir / "manifest.csv"
    with manifest.open(newline="") as f:
        rows = list(csv.DictReader(f))
    kept = [r for r in rows if r["split"] not in EVAL_SPLITS]
    todo = [r for r in rows if r["split"] in EVAL_SPLITS and r["label"] == "0"]
    out_rows = [{**r, "kind": "", "severity": "", "artifact": ""} for r in kept]
    with Progress(disable=not progress) as bar:
        total = sum(VARIANTS[r["split"]] for r in todo)
        task = bar.add_task("simulating evaluation artifacts", total=total)
        for split_index, split in enumerate(EVAL_SPLITS):
            split_rows = [r for r in todo if r["split"] == split]
            samples = [
                Sample(read_slices(out_dir / r["file"])[0].pixels, 0, r["subject"], r["file"], r)
                for r in split_rows
            ]
            pairs = simulated_pairs(
                samples, seed=seed * 100 + split_index, variants=VARIANTS[split]
            )
            for sample, record in pairs:
                path = out_dir / sample.name
                path.parent.mkdir(parents=True, exist_ok=True)
                to_png16(sample.pixels).save(path)
                art: dict[str, Any] = record.get("artifact", {})
                out_rows.append(
                    {
                        **{k: sample.info[k] for k in MANIFEST_COLUMNS},
                        "file": sample.name,
                        "label": str(sample.label),
                        "kind": art.get("kind", ""),
                        "severity": art.get("severity", ""),
                        "artifact": json.dumps(art) if art else "",
                    }
                )
                if sample.label:
                    bar.advance(task)
    tmp = manifest.with_suffix(".csv.tmp")
    with tmp.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=[*MANIFEST_COLUMNS, *EXTRA_COLUMNS])
        writer.writeheader()
        writer.writerows(out_rows)
    tmp.replace(manifest)
    return out_rows


def build_all(
    out_dir: Path,
    cache_dir: Path,
    *,
    seed: int = 0,
    overwrite: bool = False,
    progress: bool = True,
) -> dict[str, dict[str, Any]]:
    """Build the dataset and its evaluation artifacts; per split: sources, clean and artifact
    slice counts."""
    out_dir = Path(out_dir)
    if out_dir.exists() and any(out_dir.iterdir()) and not overwrite:
        raise FileExistsError(f"{out_dir} is not empty; pass overwrite to replace it")
    # Build and simulate in a staging folder, then swap it in: an interrupted build never
    # leaves a half-simulated dataset behind.
    staging = out_dir.with_name(f".{out_dir.name}.staging")
    shutil.rmtree(staging, ignore_errors=True)
    try:
        build_dataset(staging, Path(cache_dir), seed=seed, overwrite=True, progress=progress)
        pristine = pristine_samples(staging, sorted({*XSIM_FROM, *MSIM_FROM, *CALIB_FROM}))
        rows = materialize_eval(staging, seed=seed, progress=progress)
        rows += materialize_extra(staging, pristine, seed=seed, progress=progress)
        if out_dir.exists():
            shutil.rmtree(out_dir)
        staging.rename(out_dir)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    summary: dict[str, dict[str, Any]] = {}
    for r in rows:
        s = summary.setdefault(r["split"], {"sources": [], "clean": 0, "artifact": 0})
        if r["source"] not in s["sources"]:
            s["sources"].append(r["source"])
        s["artifact" if r["label"] == "1" else "clean"] += 1
    return summary
