"""Inference throughput of the served detector, as served, against plain ResNet-18 on ONNX Runtime
and on torch, in one run.

The served detector is ``model/weights/amaqc-default.safetensors`` through ``model.Predictor`` with
its default backend (ONNX Runtime on a CPU, torch on CUDA): percentile normalisation, 16 patches
of 64 px per 256x256 slice, the network, top-k aggregation. The baselines get the same
normalisation and then run torchvision's ResNet-18 (1-channel stem, softmax) on the whole slice:
equal pixels per slice, on ONNX Runtime (same session options as the backend; also with spin-
waiting on, ONNX Runtime's default, and in single-threaded lanes as the served sessions run:
the ratio is taken against the fastest) and on torch
(``channels_last``, ``inference_mode``). Timings are interleaved, median of ``--rounds``; only
the ratios of one run are meaningful on a shared machine. Target (issue 18): the served detector
>= 1.0x ONNX Runtime ResNet-18's slices/s on 256x256 slices.

Also measured per slice, for the worker's budget: the IQM panel the fused detector adds, the
normalisation, and decoding a 24-slice DICOM series (``training.data.readers.read_slices``).
Where the export cache (``--cache-dir``, default the checkpoint's own) holds an accepted int8
export of the checkpoint (``amaqc quantize``), the served detector is also timed with it, beside
float32, in the same rounds.

The whole verdict (the fused detector: network + IQM panel + fusion) is timed twice in the same
rounds, with the panel computed after the network (``serial``) and beside it on the panel thread
(``overlapped``, ``Predictor(overlap_panel=True)``, the default); its ratios to ONNX Runtime's
ResNet-18 and overlapped / serial are taken within each round and the median over rounds
printed, so a load that drifts between rounds cancels (each round runs the paths back to back,
every other round in reverse order). ``--verdict-only`` times just the verdicts, the served CNN
and ONNX Runtime's ResNet-18 (no torch paths, no per-step timings): a shorter run for comparing
the two. The fastest round of each path and the load average before and after are printed too.

    .venv/bin/python bench/inference.py [--rounds 7] [--device cpu|cuda] [--cache-dir DIR]
        [--verdict-only]
"""

from __future__ import annotations

import argparse
import io
import os
import statistics
import tempfile
import time
import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
import torchvision

from app.sample_series import write_mr_series
from model import Predictor
from model.backends import BackendUnavailable, OnnxScorer, lane_count, onnxruntime_available
from model.export import INPUT_NAME, OPSET, OUTPUT_NAME
from model.iqm import compute_iqms
from model.partition import partition
from model.preprocess import normalize_slice
from model.spectral import SpectralEnsemble, spectrum_or_none

SERVED = Path(__file__).resolve().parents[1] / "model" / "weights" / "amaqc-default.safetensors"
SIZE = 256


def head_slices(n: int, seed: int = 0) -> list[np.ndarray]:
    """(SIZE, SIZE) uint16 12-bit head-like slices with Rician noise (realistic for the IQM
    panel, whose cost depends on the image; the networks' does not)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:SIZE, :SIZE] / SIZE - 0.5
    out = []
    for i in range(n):
        r = (yy / (0.40 - 0.002 * i)) ** 2 + (xx / 0.32) ** 2
        img = np.where(r < 1, 0.9, 0.0) - np.where(r < 0.8, 0.4, 0.0)
        img += 0.1 * np.sin(40 * yy + i) * (r < 0.8)
        noise = rng.normal(0, 0.03, (2, SIZE, SIZE))
        img = np.hypot(img + noise[0], noise[1])
        out.append(np.clip(img * 3000, 0, 4095).astype(np.uint16))
    return out


#: ResNet-18 on ONNX Runtime with its threads' spin-waiting off (``model.backends.SPINNING``)
STILL = "resnet18 (onnxruntime, no spinning)"
#: ... and as the served sessions run: single-threaded runs side by side (``model.backends.LANES``)
LANED = "resnet18 (onnxruntime, lanes)"


class PlainResNet18(torch.nn.Module):
    """torchvision ResNet-18 with a 1-channel stem, returning the artifact-class probability."""

    def __init__(self) -> None:
        super().__init__()
        self.net = torchvision.models.resnet18(num_classes=2)
        self.net.conv1 = torch.nn.Conv2d(1, 64, kernel_size=7, stride=2, padding=3, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.softmax(self.net(x), dim=1)[:, 1]


def onnx_bytes(module: torch.nn.Module, example: torch.Tensor) -> bytes:
    buffer = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            module,
            (example,),
            buffer,
            dynamo=False,
            input_names=[INPUT_NAME],
            output_names=[OUTPUT_NAME],
            dynamic_axes={INPUT_NAME: {0: "n"}, OUTPUT_NAME: {0: "n"}},
            opset_version=OPSET,
        )
    return buffer.getvalue()


def timed(fn: Callable[[], object], device: torch.device) -> float:
    if device.type == "cuda":
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    fn()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - t0


def per_slice_ms(fn: Callable[[], object], n: int, rounds: int) -> float:
    fn()
    return 1000 * statistics.median(timed(fn, torch.device("cpu")) for _ in range(rounds)) / n


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=7, help="timed rounds per configuration")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--checkpoint", type=Path, default=SERVED)
    parser.add_argument("--cache-dir", type=Path, help="export cache with an int8 export")
    parser.add_argument(
        "--verdict-only",
        action="store_true",
        help="time only the whole verdict (serial and overlapped), the served CNN and ONNX "
        "Runtime's ResNet-18",
    )
    args = parser.parse_args()
    load_before = load_average()
    device = torch.device(args.device)
    torch.manual_seed(0)

    served = Predictor(args.checkpoint, device=device, detector="cnn", cache_dir=args.cache_dir)
    try:
        int8: Predictor | None = Predictor(
            args.checkpoint,
            device=device,
            detector="cnn",
            precision="int8",
            cache_dir=args.cache_dir,
        )
    except BackendUnavailable as exc:
        print(f"int8 not timed: {exc}")
        int8 = None
    fused = Predictor(args.checkpoint, device=device)  # the fused detector, when it ships one
    served_torch = (
        None
        if args.verdict_only
        else Predictor(args.checkpoint, device=device, detector="cnn", backend="torch")
    )
    norm = served.norm
    plain = PlainResNet18().eval()
    plain_torch = plain.to(device).to(memory_format=torch.channels_last)
    # ResNet-18 as ONNX Runtime runs it out of the box (its threads spin while they wait),
    # and with spinning off as amaqc's sessions run (model.backends.SPINNING); the verdict's
    # ratio is taken against the fastest of them in each round; a third runs in lanes, as the
    # served sessions do (model.backends.LANES)
    plain_bytes = onnx_bytes(PlainResNet18().eval(), torch.zeros(2, 1, SIZE, SIZE))
    plain_ort, plain_ort_still, plain_ort_laned = (
        (
            OnnxScorer(plain_bytes, spinning=True),
            OnnxScorer(plain_bytes, spinning=False),
            OnnxScorer(plain_bytes, spinning=False, lanes=lane_count()),
        )
        if onnxruntime_available()
        else (None, None, None)
    )

    def prepared(batch: list[np.ndarray]) -> torch.Tensor:
        return torch.stack([normalize_slice(s, norm) for s in batch])

    def run_plain_torch(batch: list[np.ndarray]) -> None:
        x = prepared(batch).to(device).contiguous(memory_format=torch.channels_last)
        with torch.inference_mode():
            plain_torch(x).cpu()

    def on_ort(scorer: OnnxScorer) -> Callable[[list[np.ndarray]], object]:
        return lambda batch: scorer(prepared(batch))

    runners: dict[str, Callable[[list[np.ndarray]], object]] = {
        f"served ({served.backend})": served.predict
    }
    if served_torch is not None:
        runners["served (torch)"] = served_torch.predict
    if int8 is not None:
        runners[f"served ({int8.backend})"] = int8.predict
    verdicts: list[tuple[str, str]] = []  # (serial name, overlapped name) per precision
    if fused.detector == "fused":
        fused_all = [fused]
        if int8 is not None:  # the whole verdict as a worker with the int8 export serves it
            fused_all.append(
                Predictor(
                    args.checkpoint, device=device, precision="int8", cache_dir=args.cache_dir
                )
            )
        for predictor in fused_all:
            serial = f"verdict serial ({predictor.backend})"
            overlapped = f"verdict overlapped ({predictor.backend})"
            runners[serial] = verdict(predictor, overlap=False)
            runners[overlapped] = verdict(predictor, overlap=True)
            verdicts.append((serial, overlapped))
    if plain_ort is not None and plain_ort_still is not None and plain_ort_laned is not None:
        runners["resnet18 (onnxruntime)"] = on_ort(plain_ort)
        runners[STILL] = on_ort(plain_ort_still)
        runners[LANED] = on_ort(plain_ort_laned)
    if not args.verdict_only:
        runners["resnet18 (torch)"] = run_plain_torch

    slices = head_slices(32)
    rates: dict[int, dict[str, float]] = {}
    best: dict[int, dict[str, float]] = {}  # the fastest round: the least disturbed
    times: dict[int, dict[str, list[float]]] = {}  # seconds per call, round by round
    for batch_size in (1, 24, 32):
        batch = slices[:batch_size]
        for run in runners.values():  # warm-up
            run(batch)
        times[batch_size] = {name: [] for name in runners}
        for i in range(args.rounds):  # interleaved, so all see the same machine load; every
            order = list(runners.items())  # other round backwards, so none always follows
            for name, run in order if i % 2 == 0 else order[::-1]:  # the same neighbour
                times[batch_size][name].append(timed(lambda r=run, b=batch: r(b), device))
        rates[batch_size] = {
            k: batch_size / statistics.median(v) for k, v in times[batch_size].items()
        }
        best[batch_size] = {k: batch_size / min(v) for k, v in times[batch_size].items()}

    served_name = f"served ({served.backend})"
    names = list(runners)
    header = (
        f"device: {device} ({torch.get_num_threads()} threads), torch {torch.__version__}; "
        f"checkpoint {args.checkpoint.name}: {served.meta.arch}, "
        f"{(SIZE // served.meta.patch_size) ** 2} patches of {served.meta.patch_size} px per "
        f"{SIZE}x{SIZE} slice, aggregation {served.meta.aggregation.get('how')}; "
        f"backend {served.backend}; median of {args.rounds} rounds"
    )
    if args.verdict_only:
        print(header)
        print_rates(names, rates)
        print("best round:")
        print_rates(names, best)
        print_verdicts(verdicts, times)
        print(f"load average (1, 5, 15 min): before {load_before}, after {load_average()}")
        return

    # The networks alone on already normalised input (24 slices: one series), so the shared
    # preprocessing does not pull the ratio towards 1.
    ready = prepared(slices[:24])
    patches = partition(ready, served.meta.patch_size, served.meta.patch_stride)[0]
    networks: dict[str, Callable[[], object]] = {
        f"served network ({served.backend})": lambda: served.patch_probabilities(patches),
    }
    if int8 is not None:
        int8_net = int8.patch_probabilities
        networks[f"served network ({int8.backend})"] = lambda: int8_net(patches)
    if plain_ort is not None:
        networks["resnet18 (onnxruntime)"] = lambda: plain_ort(ready)
    networks["resnet18 (torch)"] = lambda: plain_torch(
        ready.to(device).contiguous(memory_format=torch.channels_last)
    )
    net_times: dict[str, list[float]] = {name: [] for name in networks}
    with torch.inference_mode():
        for fn in networks.values():
            fn()
        for _ in range(args.rounds):
            for name, fn in networks.items():
                net_times[name].append(timed(fn, device))
    net_rates = {k: 24 / statistics.median(v) for k, v in net_times.items()}

    with tempfile.TemporaryDirectory() as tmp:
        from training.data.readers import read_slices

        _, paths = write_mr_series(Path(tmp), slices[:24], name="{n:03d}.dcm")
        decode = per_slice_ms(lambda: [read_slices(p) for p in paths], 24, args.rounds)
    iqm = per_slice_ms(lambda: [compute_iqms(s) for s in slices[:24]], 24, args.rounds)
    normalise = per_slice_ms(lambda: prepared(slices[:24]), 24, args.rounds)

    print(header)
    print_rates(names, rates)
    target = "served / ONNX Runtime ResNet-18 (target >= 1.0)"
    print(f"| slices per call | {target} | served / torch ResNet-18 |")
    print("|---|---|---|")
    for bs, row in rates.items():
        ort_ratio = (
            f"{row[served_name] / row['resnet18 (onnxruntime)']:.2f}"
            if "resnet18 (onnxruntime)" in row
            else "n/a"
        )
        print(f"| {bs} | {ort_ratio} | {row[served_name] / row['resnet18 (torch)']:.2f} |")
    print()
    print("networks alone on normalised input, 24 slices per call:")
    print(
        "| "
        + " | ".join(f"{n} slices/s" for n in networks)
        + " | served / ONNX Runtime ResNet-18 |"
    )
    print("|---" * (len(networks) + 1) + "|")
    served_net = net_rates[f"served network ({served.backend})"]
    ort_net = net_rates.get("resnet18 (onnxruntime)")
    net_ratio = f"{served_net / ort_net:.2f}" if ort_net else "n/a"
    print("| " + " | ".join(f"{v:.1f}" for v in net_rates.values()) + f" | {net_ratio} |")
    print()
    if int8 is not None:
        name8 = f"served ({int8.backend})"
        print(
            "int8 / float32 served detector: "
            + ", ".join(f"{row[name8] / row[served_name]:.2f} at {bs}" for bs, row in rates.items())
            + " slices per call; networks alone "
            + f"{net_rates[f'served network ({int8.backend})'] / served_net:.2f}"
        )
        print()
    print(
        f"per slice, single process: DICOM decode {decode:.1f} ms, normalisation {normalise:.1f} "
        f"ms, IQM panel {iqm:.1f} ms; served network path {1000 / rates[24][served_name]:.1f} ms "
        f"(24-slice series)"
    )
    runner = fused.spectral_runner
    if runner is not None:  # what the fused verdict adds for its spectral network
        members = len(fused.spectral.members) if isinstance(fused.spectral, SpectralEnsemble) else 1
        series = slices[:24]
        spectra = [spectrum_or_none(s) for s in series]
        spectrum = per_slice_ms(lambda: [spectrum_or_none(s) for s in series], 24, args.rounds)
        network = per_slice_ms(lambda: runner(spectra), 24, args.rounds)
        print(
            f"spectral path per slice: spectrum {spectrum:.1f} ms, network {network:.1f} ms "
            f"({members} member(s) on {runner.name}, 24-slice series)"
        )
    print_verdicts(verdicts, times)
    print(f"load average (1, 5, 15 min): before {load_before}, after {load_average()}")


def verdict(predictor: Predictor, *, overlap: bool) -> Callable[[list[np.ndarray]], object]:
    """``predictor.predict`` with the panel beside the network or after it."""

    def run(batch: list[np.ndarray]) -> object:
        predictor.overlap_panel = overlap
        return predictor.predict(batch)

    return run


def load_average() -> str:
    return ", ".join(f"{v:.2f}" for v in os.getloadavg())


def print_rates(names: list[str], rates: dict[int, dict[str, float]]) -> None:
    print()
    print("| slices per call | " + " | ".join(f"{n} slices/s" for n in names) + " |")
    print("|---" * (len(names) + 1) + "|")
    for bs, row in rates.items():
        print(f"| {bs} | " + " | ".join(f"{row[n]:.1f}" for n in names) + " |")
    print()


def print_verdicts(
    verdicts: list[tuple[str, str]], times: dict[int, dict[str, list[float]]]
) -> None:
    """The whole verdict, serial and overlapped, against ONNX Runtime's ResNet-18 (the target),
    and overlapped against serial: each ratio taken within a round (the paths ran back to back
    there), the median over rounds, so a load that drifts between rounds cancels."""
    if not verdicts or "resnet18 (onnxruntime)" not in next(iter(times.values())):
        return

    def paired(fast: list[float], slow: list[float]) -> float:
        return statistics.median(s / f for f, s in zip(fast, slow, strict=True))

    print()
    print(
        "whole verdict / ONNX Runtime ResNet-18 (the fastest of its three settings; target >= "
        "1.0) and overlapped / serial, "
        "median of the rounds' own ratios:"
    )
    print("| slices per call | " + " | ".join(f"{s} | {o} | gain" for s, o in verdicts) + " |")
    print("|---" * (3 * len(verdicts) + 1) + "|")
    for bs, row in times.items():
        ort = row["resnet18 (onnxruntime)"]
        for other in (STILL, LANED):  # the fastest ResNet-18 of each round
            if other in row:
                ort = [min(a, b) for a, b in zip(ort, row[other], strict=True)]
        cells = [
            f"{paired(row[s], ort):.2f} | {paired(row[o], ort):.2f} | {paired(row[o], row[s]):.2f}"
            for s, o in verdicts
        ]
        print(f"| {bs} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
