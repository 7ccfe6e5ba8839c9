"""Inference throughput of AMAResNet-18 through the Predictor vs plain torchvision ResNet-18.

Prints one table from one run (the machine is shared and noisy, so only ratios measured in the
same process are meaningful): slices/s at batch 1 and 32 on 256x256 slices, effective GFLOP/s
(FLOPs counted by torch's FlopCounterMode), and the fp32 matmul GFLOP/s this process reaches as
the machine's practical peak. Targets (issue 2): AMAResNet >= 0.7x ResNet-18's slices/s at equal
pixels, and >= 40% of the matmul peak.

    .venv/bin/python bench/inference.py [--rounds 5] [--device cpu|cuda]
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import numpy as np
import torch
import torchvision
from torch.utils.flop_counter import FlopCounterMode

from model import CheckpointMeta, Predictor, build_model
from model.preprocess import normalize_slice

SIZE = 256


def matmul_peak_gflops(device: torch.device, n: int = 2048, repeats: int = 5) -> float:
    a = torch.randn(n, n, device=device)
    b = torch.randn(n, n, device=device)
    a @ b  # warm-up
    best = float("inf")
    for _ in range(repeats):
        if device.type == "cuda":
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        a @ b
        if device.type == "cuda":
            torch.cuda.synchronize()
        best = min(best, time.perf_counter() - t0)
    return 2 * n**3 / best / 1e9


def count_flops(fn: Callable[[], object]) -> float:
    with FlopCounterMode(display=False) as counter:
        fn()
    return float(counter.get_total_flops())


def timed(fn: Callable[[], object], device: torch.device) -> float:
    if device.type == "cuda":
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    fn()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - t0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5, help="timed rounds per configuration")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = parser.parse_args()
    device = torch.device(args.device)
    torch.manual_seed(0)

    meta = CheckpointMeta(arch="amaresnet18")  # patch 128, stride 128: 4 patches = 256^2 pixels
    predictor = Predictor((build_model("amaresnet18"), meta), device=device, batch_size=128)
    plain = torchvision.models.resnet18(num_classes=2)
    # One input channel, like the MR slices; everything else is torchvision's ResNet-18.
    plain.conv1 = torch.nn.Conv2d(1, 64, kernel_size=7, stride=2, padding=3, bias=False)
    plain = plain.to(device).to(memory_format=torch.channels_last).eval()

    rng = np.random.default_rng(0)
    slices = [rng.integers(0, 4096, (SIZE, SIZE), dtype=np.uint16) for _ in range(32)]

    def run_plain(batch: list[np.ndarray]) -> None:
        # Same preprocessing as the Predictor, then the whole slice in one forward pass.
        x = torch.stack([normalize_slice(s, meta.norm) for s in batch]).to(device)
        with torch.inference_mode():
            torch.softmax(plain(x.contiguous(memory_format=torch.channels_last)), 1)

    one = torch.zeros(1, 1, SIZE, SIZE, device=device)
    with torch.inference_mode():
        flops_plain = count_flops(lambda: plain(one))
        flops_ama = 4 * count_flops(lambda: predictor.model(one[:, :, :128, :128]))

    peak = matmul_peak_gflops(device)
    rows = []
    for batch_size in (1, 32):
        batch = slices[:batch_size]
        for _ in range(2):  # warm-up both
            predictor.predict(batch)
            run_plain(batch)
        t_ama, t_plain = [], []
        for _ in range(args.rounds):  # interleaved, so both see the same machine load
            t_ama.append(timed(lambda b=batch: predictor.predict(b), device))
            t_plain.append(timed(lambda b=batch: run_plain(b), device))
        sps_ama = batch_size / statistics.median(t_ama)
        sps_plain = batch_size / statistics.median(t_plain)
        rows.append(
            (
                batch_size,
                sps_ama,
                sps_plain,
                sps_ama * flops_ama / 1e9,
                sps_plain * flops_plain / 1e9,
            )
        )

    print(f"device: {device} ({torch.get_num_threads()} threads), torch {torch.__version__}")
    print(f"fp32 matmul peak (2048^2, best of 5): {peak:.1f} GFLOP/s")
    print(
        f"FLOPs per 256x256 slice: amaresnet18 (4 x 128^2 patches) {flops_ama / 1e9:.2f} G, "
        f"resnet18 {flops_plain / 1e9:.2f} G"
    )
    print()
    print(
        "| batch | amaresnet18 slices/s | resnet18 slices/s | ratio (target >= 0.7) "
        "| amaresnet18 GFLOP/s (% peak) | resnet18 GFLOP/s (% peak) |"
    )
    print("|---|---|---|---|---|---|")
    for bs, a, p, ga, gp in rows:
        print(
            f"| {bs} | {a:.1f} | {p:.1f} | {a / p:.2f} | {ga:.1f} ({100 * ga / peak:.0f}%) "
            f"| {gp:.1f} ({100 * gp / peak:.0f}%) |"
        )


if __name__ == "__main__":
    main()
