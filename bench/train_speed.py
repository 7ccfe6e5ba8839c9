"""Training throughput of AMAResNet-18 vs plain torchvision ResNet-18 on the same patches.

One run, interleaved rounds (the machine is shared and noisy): the same batches of 128x128
patches from the real training stream (``training.fit.patches.TrainPatches`` on the built dataset,
or random patches with ``--synthetic``), the same optimiser (Adam lr 1e-3, wd 1e-4), the same
joint loss, channels_last. Prints samples/s of each and their ratio (target >= 0.6, issue 3).

    .venv/bin/python bench/train_speed.py [--data .data/ds1] [--rounds 5] [--batch 50]
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import torch
import torchvision
from torch import nn

from model import JointLoss, build_model


def make_batches(data: Path | None, batch: int, count: int, patch: int) -> list[tuple]:
    if data is None:
        g = torch.Generator().manual_seed(0)
        return [
            (
                torch.rand(batch, 1, patch, patch, generator=g),
                torch.randint(0, 2, (batch,), generator=g),
            )
            for _ in range(count)
        ]
    from model.preprocess import Normalization
    from training.data.samples import load_split
    from training.fit.patches import TrainPatches

    ds = TrainPatches(
        load_split(data, "train"),
        norm=Normalization(),
        patch=patch,
        samples_per_epoch=batch * count,
    )
    loader = torch.utils.data.DataLoader(ds, batch_size=batch, num_workers=0)
    return list(loader)


def plain_resnet18() -> nn.Module:
    net = torchvision.models.resnet18(num_classes=2)
    net.conv1 = nn.Conv2d(1, 64, kernel_size=7, stride=2, padding=3, bias=False)
    return net


def step_fn(net: nn.Module) -> object:
    net = net.to(memory_format=torch.channels_last).train()
    opt = torch.optim.Adam(net.parameters(), lr=1e-3, weight_decay=1e-4, foreach=True)
    loss_fn = JointLoss()

    def step(x: torch.Tensor, y: torch.Tensor) -> None:
        loss = loss_fn(net(x.contiguous(memory_format=torch.channels_last)), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    return step


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=Path(".data/ds1"))
    parser.add_argument("--synthetic", action="store_true", help="random patches, no dataset")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--batch", type=int, default=50)
    parser.add_argument("--steps", type=int, default=4, help="steps per timed round")
    parser.add_argument("--patch", type=int, default=128)
    args = parser.parse_args()
    torch.manual_seed(0)
    data = None if args.synthetic or not args.data.is_dir() else args.data
    batches = make_batches(data, args.batch, args.steps, args.patch)
    steps = {
        "amaresnet18": step_fn(build_model("amaresnet18")),
        "resnet18 (torchvision)": step_fn(plain_resnet18()),
    }
    for step in steps.values():  # warm-up
        step(*batches[0])
    times: dict[str, list[float]] = {name: [] for name in steps}
    for _ in range(args.rounds):
        for name, step in steps.items():
            t0 = time.perf_counter()
            for x, y in batches:
                step(x, y)
            times[name].append(time.perf_counter() - t0)
    rate = {n: args.batch * len(batches) / statistics.median(t) for n, t in times.items()}
    ama, plain = rate["amaresnet18"], rate["resnet18 (torchvision)"]
    print(
        f"device: cpu ({torch.get_num_threads()} threads), torch {torch.__version__}; "
        f"data: {'built dataset ' + str(data) if data else 'synthetic'}; "
        f"batch {args.batch} x {args.patch}^2, median of {args.rounds} rounds"
    )
    print()
    print("| model | training samples/s |")
    print("|---|---|")
    for name, r in rate.items():
        print(f"| {name} | {r:.1f} |")
    print(f"| ratio amaresnet18 / resnet18 (target >= 0.6) | {ama / plain:.2f} |")


if __name__ == "__main__":
    main()
