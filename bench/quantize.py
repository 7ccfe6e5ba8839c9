"""Does int8 static quantisation of the served network cost accuracy? Measures it, ships nothing.

The same measurement as ``amaqc quantize`` (:mod:`training.experiments.quantize`: calibration on
the train split's stream, :func:`model.int8.quantise_onnx`, AMAResNet's ROC-AUC on held-out splits
with both precisions, network-only slices/s), plus the fused detector's ROC-AUC, which the
command does not need; nothing is written to the export cache. Use it to try other
``--keep-float`` sets or calibration methods before running ``amaqc quantize`` with one. The rule
(issue 18): int8 serves only if no held-out ROC-AUC moves by 0.005 or more.

    .venv/bin/amaqc data build .data/ds
    .venv/bin/python bench/quantize.py --data .data/ds [--splits test transfer xsim msim]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np

from model import Predictor
from model.backends import OnnxScorer, PatchScorer
from model.export import export_onnx
from model.int8 import CALIBRATION_METHODS, DEFAULT_KEEP_FLOAT, MAX_AUC_CHANGE, quantise_onnx
from training.data.samples import load_split
from training.experiments.quantize import calibration_patches, network_speed, split_aucs

SERVED = Path(__file__).resolve().parents[1] / "model" / "weights" / "amaqc-default.safetensors"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=Path(".data/ds"))
    parser.add_argument("--checkpoint", type=Path, default=SERVED)
    parser.add_argument("--splits", nargs="+", default=["test", "transfer", "xsim", "msim"])
    parser.add_argument("--calibration", type=int, default=512, help="calibration patches")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument(
        "--keep-float",
        nargs="*",
        default=list(DEFAULT_KEEP_FLOAT),
        help="node-name prefixes left in float32 (none: int8 everywhere)",
    )
    parser.add_argument("--method", default="MinMax", choices=CALIBRATION_METHODS)
    args = parser.parse_args()

    predictor = Predictor(args.checkpoint, device="cpu", backend="onnxruntime")
    fp32: PatchScorer = predictor.scorer
    with tempfile.TemporaryDirectory() as tmp:
        plain, quant = Path(tmp) / "fp32.onnx", Path(tmp) / "int8.onnx"
        export_onnx(predictor.model, predictor.meta.patch_size, plain)  # type: ignore[arg-type]
        t0 = time.perf_counter()
        print(f"calibrating on {args.calibration} training-stream patches ...", flush=True)
        patches = calibration_patches(args.data, predictor, args.calibration)
        kept = quantise_onnx(plain, quant, patches, keep_float=args.keep_float, method=args.method)
        print(
            f"quantised in {time.perf_counter() - t0:.0f} s ({args.method} calibration; "
            f"{len(kept)} nodes kept in float32)",
            flush=True,
        )
        int8 = OnnxScorer(quant, precision="int8")

    print("| split | slices | ROC-AUC | float32 | int8 | change |")
    print("|---|---|---|---|---|---|")
    worst = 0.0
    for split in args.splits:
        samples = load_split(args.data, split)
        pixels = [s.pixels for s in samples]
        predictor.scorer = fp32
        a = predictor.predict(pixels)
        predictor.scorer = int8
        b = predictor.predict(pixels)
        for detector, field in (("AMAResNet", "cnn_probability"), ("fused", "probability")):
            rows = split_aucs(
                split,
                samples,
                np.array([getattr(p, field) for p in a]),
                np.array([getattr(p, field) for p in b]),
            )
            for r in rows:
                if detector == "AMAResNet":
                    worst = max(worst, abs(r.change))
                print(
                    f"| {split} | {r.slices} | {detector}, {r.metric} | {r.float32:.4f} "
                    f"| {r.int8:.4f} | {r.change:+.4f} |"
                )
    predictor.scorer = fp32
    rates = network_speed(
        {"float32": fp32, "int8": int8}, predictor.meta.patch_size, rounds=args.rounds
    )
    print(
        f"\nnetwork only, 32 slices x 16 patches: float32 {rates['float32']:.1f} slices/s, "
        f"int8 {rates['int8']:.1f} slices/s ({rates['int8'] / rates['float32']:.2f}x)"
    )
    verdict = "int8 passes" if worst < MAX_AUC_CHANGE else "int8 fails"
    print(f"largest AMAResNet ROC-AUC change {worst:.4f} (rule: < {MAX_AUC_CHANGE}) -> {verdict}")


if __name__ == "__main__":
    main()
