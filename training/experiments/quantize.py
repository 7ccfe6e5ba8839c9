"""``amaqc quantize``: make a checkpoint's int8 export and let it serve only if it keeps accuracy.

Exports the checkpoint's network (the float32 ONNX Runtime export, cached by the checkpoint's
hash), quantises it (:func:`model.int8.quantise_onnx`) on calibration patches from the training
stream (:class:`training.fit.patches.TrainPatches` on the dataset's train split: clean patches
and mild to severe simulated artifacts, a seed the training run never drew), then scores every
held-out split present with the float32 and the int8 network through the same Predictor and
compares AMAResNet's ROC-AUC (all slices, and clean + moderate/severe artifacts). Issue 18's
rule: int8 is accepted only if no AUC moves by :data:`model.int8.MAX_AUC_CHANGE` or more.

The record (:class:`model.int8.Int8Record`) goes into the export cache either way; the int8
file only when accepted, and only then does a backend with precision ``auto`` or ``int8`` load it.
"""

from __future__ import annotations

import statistics
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Final

import numpy as np
import torch
from sklearn.metrics import roc_auc_score

from model import Predictor
from model.backends import (
    OnnxScorer,
    cache_folder,
    cached_export,
    compare_with_torch,
    file_digest,
    probe_patches,
)
from model.export import input_channels
from model.int8 import (
    DEFAULT_KEEP_FLOAT,
    MAX_AUC_CHANGE,
    AucChange,
    Int8Record,
    prune_int8,
    quantise_onnx,
    shipped_folder,
    write_int8,
)
from model.resnet import AMAResNet

from ..data.samples import Sample, load_split
from ..evaluate.scoring import target_mask
from ..fit.patches import TrainPatches

__all__ = ["HELD_OUT", "calibration_patches", "network_speed", "run_quantisation", "split_aucs"]

#: the held-out splits the rule is checked on, where the dataset has them
HELD_OUT: Final = ("test", "transfer", "xsim", "msim")
#: the calibration stream's seed: not the training run's, so these are patches it never drew
CALIBRATION_SEED: Final = 1234

Progress = Callable[[str, int], Callable[[int], None]]


def calibration_patches(
    data: Path,
    predictor: Predictor,
    count: int,
    *,
    seed: int = CALIBRATION_SEED,
    advance: Callable[[int], None] | None = None,
) -> np.ndarray:
    """(count, 1, p, p) normalised patches of the train split's stream (balanced clean /
    simulated artifact, mild to severe)."""
    stream = TrainPatches(
        load_split(data, "train"),
        norm=predictor.norm,
        patch=predictor.meta.patch_size,
        samples_per_epoch=count,
        seed=seed,
        severities=("mild", "moderate", "severe"),
    )
    patches = []
    for i in range(count):
        patches.append(stream[i][0])
        if advance:
            advance(1)
    return torch.stack(patches).numpy()


def split_aucs(
    split: str, samples: Sequence[Sample], float32: np.ndarray, int8: np.ndarray
) -> list[AucChange]:
    """AMAResNet's ROC-AUC with both precisions' slice probabilities on one split: all slices,
    and clean + moderate / severe artifacts where the split records severities. Empty where a
    split holds one class only (no AUC)."""
    labels = np.array([s.label for s in samples])
    out = []
    masks = {"all": np.ones(len(samples), dtype=bool)}
    target = target_mask(samples)
    if target is not None and not target.all():
        masks["moderate+severe"] = target
    for metric, mask in masks.items():
        if len(set(labels[mask].tolist())) < 2:
            continue
        a = float(roc_auc_score(labels[mask], float32[mask]))
        b = float(roc_auc_score(labels[mask], int8[mask]))
        out.append(AucChange(split, metric, int(mask.sum()), a, b))
    return out


def network_speed(
    scorers: dict[str, Callable[[torch.Tensor], torch.Tensor]],
    patch_size: int,
    *,
    slices: int = 32,
    patches_per_slice: int = 16,
    rounds: int = 3,
) -> dict[str, float]:
    """Network-only slices/s of each scorer on the same random batch, interleaved rounds,
    median (``slices`` x ``patches_per_slice`` patches a call)."""
    rng = np.random.default_rng(0)
    shape = (slices * patches_per_slice, 1, patch_size, patch_size)
    batch = torch.from_numpy(rng.random(shape, dtype=np.float32))
    times: dict[str, list[float]] = {name: [] for name in scorers}
    for scorer in scorers.values():  # warm-up
        scorer(batch)
    for _ in range(rounds):
        for name, scorer in scorers.items():
            t0 = time.perf_counter()
            scorer(batch)
            times[name].append(time.perf_counter() - t0)
    return {name: slices / statistics.median(t) for name, t in times.items()}


def run_quantisation(
    data: Path,
    checkpoint: Path,
    *,
    cache_dir: Path | None = None,
    splits: Sequence[str] = HELD_OUT,
    calibration: int = 512,
    keep_float: Sequence[str] = DEFAULT_KEEP_FLOAT,
    method: str = "MinMax",
    max_auc_change: float = MAX_AUC_CHANGE,
    speed_rounds: int = 3,
    ship: bool = False,
    progress: Progress | None = None,
) -> tuple[Int8Record, Path]:
    """Quantise, check and store (see the module docstring); returns the record and where it was
    written: the export cache, or with ``ship`` the shipped folder beside the checkpoint
    (``model.int8.shipped_folder``, tracked with it), which then holds this checkpoint's record
    alone (any other checkpoint's int8 files there are removed). ``splits`` that the dataset
    lacks are skipped; ``max_auc_change`` can only be made stricter than the issue's rule (a
    looser record never serves). ``progress(description, total)`` returns an ``advance(n)``
    callback."""
    data, checkpoint = Path(data), Path(checkpoint)
    if calibration < 1:
        raise ValueError(f"calibration must be >= 1 patch, got {calibration}")
    if not 0 <= max_auc_change <= MAX_AUC_CHANGE:
        raise ValueError(f"max_auc_change must be in [0, {MAX_AUC_CHANGE}], got {max_auc_change}")
    present = {}
    for split in splits:
        try:
            present[split] = load_split(data, split)
        except ValueError:
            continue
    if not present:
        raise ValueError(f"{data}: none of the held-out splits {list(splits)} is present")
    digest = file_digest(checkpoint)
    fp32 = Predictor(
        checkpoint, device="cpu", backend="onnxruntime", detector="cnn", cache_dir=cache_dir
    )
    fp32_scorer, network = fp32.scorer, fp32.model
    if not isinstance(network, AMAResNet):  # the onnxruntime backend has refused it already
        raise ValueError(f"{checkpoint}: no ONNX export for {type(network).__name__}")
    plain = cached_export(network, fp32.meta.patch_size, checkpoint, cache_dir)
    with tempfile.TemporaryDirectory() as tmp:
        int8_file = Path(tmp) / "int8.onnx"
        advance = progress("calibration patches", calibration) if progress else None
        patches = calibration_patches(data, fp32, calibration, advance=advance)
        kept = quantise_onnx(plain, int8_file, patches, keep_float=keep_float, method=method)
        int8_scorer = OnnxScorer(int8_file, precision="int8")
        probes = probe_patches(input_channels(network), fp32.meta.patch_size)
        probe_difference = compare_with_torch(int8_scorer, network, probes)

        aucs: list[AucChange] = []
        advance = progress("held-out slices", sum(map(len, present.values()))) if progress else None
        for split, samples in present.items():
            pixels = [s.pixels for s in samples]
            fp32.scorer = fp32_scorer
            a = np.array([p.probability for p in fp32.predict(pixels)])
            fp32.scorer = int8_scorer  # the same normalisation, patches and aggregation
            b = np.array([p.probability for p in fp32.predict(pixels)])
            aucs += split_aucs(split, samples, a, b)
            if advance:
                advance(len(samples))
        fp32.scorer = fp32_scorer
        speed = (
            network_speed(
                {"float32": fp32_scorer, "int8": int8_scorer},
                fp32.meta.patch_size,
                rounds=speed_rounds,
            )
            if speed_rounds > 0
            else {}
        )
        record = Int8Record(
            checkpoint_sha256=digest,
            aucs=aucs,
            max_auc_change=max_auc_change,
            calibration={
                "patches": calibration,
                "method": method,
                "split": "train",
                "seed": CALIBRATION_SEED,
                "severities": ["mild", "moderate", "severe"],
            },
            keep_float=list(keep_float),
            float_nodes=len(kept),
            onnx_sha256=file_digest(int8_file),
            probe_difference=probe_difference,
            speed={k: round(v, 2) for k, v in speed.items()},
            dataset=str(data),
            created=datetime.now(UTC).isoformat(timespec="seconds"),
        )
        if not record.accepted:
            record = replace(record, onnx_sha256=None)  # the int8 file is not kept
        folder = shipped_folder(checkpoint) if ship else cache_folder(checkpoint, cache_dir)
        folder.mkdir(parents=True, exist_ok=True)
        path = write_int8(folder, record, int8_file)
        if ship:
            prune_int8(folder, digest)
    return record, path
