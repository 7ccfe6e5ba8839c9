"""Does int8 static quantisation of the served network cost accuracy? Measures it, ships nothing.

Exports the served checkpoint's network (the ONNX Runtime backend's export), quantises it with
ONNX Runtime's ``quantize_static`` (QDQ, int8 weights per channel, uint8 activations) on
calibration patches from the training stream (``training.fit.patches.TrainPatches`` on the dataset's
train split, mild to severe simulated artifacts and clean patches), then scores held-out splits
with the float32 and the int8 network through the same Predictor and prints the ROC-AUC of both
(AMAResNet's own probability and the fused detector's, all slices and moderate + severe) and the
slices/s of both in one run. The rule (issue 18): keep int8 only if no held-out ROC-AUC moves by
0.005 or more.

    .venv/bin/amaqc data build .data/ds1
    .venv/bin/python bench/quantize.py --data .data/ds1 [--splits test transfer xsim]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from sklearn.metrics import roc_auc_score

from model import Predictor
from model.backends import OnnxScorer
from model.export import INPUT_NAME, export_onnx
from training.data.samples import load_split
from training.evaluate.scoring import target_mask
from training.fit.patches import TrainPatches

SERVED = Path(__file__).resolve().parents[1] / "model" / "weights" / "amaqc-default.safetensors"


def calibration_patches(data: Path, predictor: Predictor, count: int) -> np.ndarray:
    """(count, 1, p, p) normalised patches from the training stream (balanced clean/artifact)."""
    stream = TrainPatches(
        load_split(data, "train"),
        norm=predictor.norm,
        patch=predictor.meta.patch_size,
        samples_per_epoch=count,
        seed=1234,  # not the training run's seed: calibration patches it never drew
        severities=("mild", "moderate", "severe"),
    )
    return torch.stack([stream[i][0] for i in range(count)]).numpy()


def quantise(
    fp32: Path, out: Path, patches: np.ndarray, keep_float: list[str], method: str
) -> list[str]:
    """Quantise ``fp32`` to ``out``; nodes whose name starts with a ``keep_float`` prefix stay
    float32. Returns the names of the nodes kept in float32."""
    import onnx
    from onnxruntime.quantization import (
        CalibrationDataReader,
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quantize_static,
    )
    from onnxruntime.quantization.shape_inference import quant_pre_process

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self.chunks = iter(np.array_split(patches, max(1, len(patches) // 32)))

        def get_next(self) -> dict[str, np.ndarray] | None:
            chunk = next(self.chunks, None)
            return None if chunk is None else {INPUT_NAME: chunk}

    pre = out.with_name("pre.onnx")
    quant_pre_process(str(fp32), str(pre), skip_symbolic_shape=True)
    names = [n.name for n in onnx.load(str(pre)).graph.node]
    excluded = [n for n in names if any(n.startswith(k) for k in keep_float)]
    quantize_static(
        str(pre),
        str(out),
        Reader(),
        quant_format=QuantFormat.QDQ,
        activation_type=QuantType.QUInt8,
        weight_type=QuantType.QInt8,
        per_channel=True,
        nodes_to_exclude=excluded,
        calibrate_method=getattr(CalibrationMethod, method),
    )
    return excluded


def aucs(samples: list[Any], predictions: list[Any]) -> dict[str, float]:
    labels = np.array([s.label for s in samples])
    cnn = np.array([p.cnn_probability for p in predictions])
    fused = np.array([p.probability for p in predictions])
    out = {"cnn": float(roc_auc_score(labels, cnn)), "fused": float(roc_auc_score(labels, fused))}
    mask = target_mask(samples)
    if mask is not None:
        out["cnn mod+sev"] = float(roc_auc_score(labels[mask], cnn[mask]))
        out["fused mod+sev"] = float(roc_auc_score(labels[mask], fused[mask]))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=Path(".data/ds1"))
    parser.add_argument("--splits", nargs="+", default=["test", "transfer", "xsim"])
    parser.add_argument("--calibration", type=int, default=512, help="calibration patches")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument(
        "--keep-float",
        nargs="*",
        default=[],
        help="node-name prefixes left in float32, e.g. /net/stem /pyramid /net/fc",
    )
    parser.add_argument("--method", default="MinMax", choices=["MinMax", "Percentile", "Entropy"])
    args = parser.parse_args()

    fp32 = Predictor(SERVED, device="cpu", backend="onnxruntime")
    int8 = Predictor(SERVED, device="cpu", backend="onnxruntime")
    with tempfile.TemporaryDirectory() as tmp:
        plain, quant = Path(tmp) / "fp32.onnx", Path(tmp) / "int8.onnx"
        export_onnx(fp32.model, fp32.meta.patch_size, plain)
        t0 = time.perf_counter()
        print(f"calibrating on {args.calibration} training-stream patches ...", flush=True)
        patches = calibration_patches(args.data, fp32, args.calibration)
        kept = quantise(plain, quant, patches, args.keep_float, args.method)
        print(
            f"quantised in {time.perf_counter() - t0:.0f} s ({args.method} calibration; "
            f"{len(kept)} nodes kept in float32)",
            flush=True,
        )
        int8.scorer = OnnxScorer(quant)

    print("| split | slices | ROC-AUC | float32 | int8 | change |")
    print("|---|---|---|---|---|---|")
    worst = 0.0
    for split in args.splits:
        samples = load_split(args.data, split)
        pixels = [s.pixels for s in samples]
        a, b = aucs(samples, fp32.predict(pixels)), aucs(samples, int8.predict(pixels))
        for name in a:
            worst = max(worst, abs(b[name] - a[name]))
            print(
                f"| {split} | {len(samples)} | {name} | {a[name]:.4f} | {b[name]:.4f} "
                f"| {b[name] - a[name]:+.4f} |"
            )

    rng = np.random.default_rng(0)
    batch = torch.from_numpy(rng.random((32 * 16, 1, 64, 64), dtype=np.float32))
    times: dict[str, list[float]] = {"float32": [], "int8": []}
    for _ in range(2):
        fp32.patch_probabilities(batch)
        int8.patch_probabilities(batch)
    for _ in range(args.rounds):
        for name, p in (("float32", fp32), ("int8", int8)):
            t0 = time.perf_counter()
            p.patch_probabilities(batch)
            times[name].append(time.perf_counter() - t0)
    rates = {k: 32 / statistics.median(v) for k, v in times.items()}
    print(
        f"\nnetwork only, 32 slices x 16 patches: float32 {rates['float32']:.1f} slices/s, "
        f"int8 {rates['int8']:.1f} slices/s ({rates['int8'] / rates['float32']:.2f}x)"
    )
    verdict = "keep int8" if worst < 0.005 else "do not ship int8"
    print(f"largest ROC-AUC change {worst:.4f} (rule: < 0.005) -> {verdict}")


if __name__ == "__main__":
    main()
