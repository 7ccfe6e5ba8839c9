"""Train a checkpoint: Adam (lr 1e-3, weight decay 1e-4), batch 50, JointLoss(0.7, 0.3), on
random patches (``training.fit.patches``), validated every epoch at slice level through the same
Predictor the service runs; the best epoch by validation F1 is kept with the F1-optimal
threshold. Early stopping, a time budget, resumable state (safetensors + JSON, never pickles),
deterministic under a seed, CUDA + mixed precision when present, DistributedDataParallel when
launched with ``torchrun`` (``distributed=True``; gloo on CPU, NCCL on GPUs).
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from torch import nn
from torch.utils.data import DataLoader
from torch.utils.data.distributed import DistributedSampler

from model import CheckpointMeta, JointLoss, Predictor, build_model, load_checkpoint
from model.checkpoint import save_checkpoint
from model.partition import aggregate, partition
from model.preprocess import Normalization

from ..data.samples import Sample, describe, load_split
from ..evaluate.metrics import best_threshold, binary_metrics
from ..evaluate.scoring import predict_samples
from ..simulate.artifacts import KINDS, SEVERITIES
from ..simulate.evalset import simulated_pairs
from .patches import TrainPatches
from .state import load_state, save_state

LR_SCHEDULES = ("constant", "cosine")
KEEP = ("best", "last")
#: the cosine schedule ends at this fraction of the initial learning rate
LR_FLOOR = 0.01


def scheduled_lr(cfg: TrainConfig, step: int, total: int) -> float:
    """The learning rate for optimiser step ``step`` (0-based) of ``total``."""
    if cfg.lr_schedule == "constant" or total <= 1:
        return cfg.lr
    floor = cfg.lr * LR_FLOOR
    progress = min(step, total - 1) / (total - 1)
    return floor + (cfg.lr - floor) * 0.5 * (1.0 + math.cos(math.pi * progress))


@dataclass
class TrainConfig:
    """Everything a training run depends on; stored in the checkpoint's metadata."""

    data: Path
    out: Path
    arch: str = "amaresnet18"
    arch_config: dict[str, Any] = field(default_factory=dict)
    epochs: int = 20
    samples_per_epoch: int = 5000
    batch_size: int = 50
    lr: float = 1e-3
    weight_decay: float = 1e-4
    alpha: float = 0.7
    beta: float = 0.3
    patch: int = 64
    size: int = 256
    aggregation: str = "topk_mean"
    seed: int = 0
    #: Seed of the train/val split (for layouts without split folders) and of the validation
    #: set's simulated artifacts; ``None`` = ``seed``. Sweeps over seeds fix it, so the seeds
    #: vary the initialisation and the patch stream, not the data.
    split_seed: int | None = None
    patience: int = 5
    time_budget_s: float | None = None
    num_workers: int = 1
    kinds: tuple[str, ...] = KINDS
    severities: tuple[str, ...] = ("moderate", "severe")
    simulate: bool = True
    realism: bool = True
    val_split: str = "val"
    resume: bool = False
    device: str | None = None
    amp: bool = True
    distributed: bool = False
    init_from: Path | None = None
    fp16_checkpoint: bool = False
    #: the decision threshold is the F1 optimum among those flagging at most this fraction of
    #: the clean validation slices (None: unconstrained F1 optimum)
    max_false_alarm_rate: float | None = 0.1
    #: train on whole slices: the loss sees the slice probability aggregated from the patch
    #: grid exactly as the Predictor serves it (multiple-instance learning), not a random patch
    #: carrying its slice's label (a crop can miss an artifact at the edge: a wrong label)
    slice_level: bool = False
    #: "constant" (the paper's Adam at ``lr``) or "cosine": ``lr`` annealed step by step to
    #: ``lr * LR_FLOOR`` over ``epochs`` (a pure function of the step, so resuming and seeds
    #: reproduce it; set ``epochs`` to what the run will reach, not to a ceiling)
    lr_schedule: str = "constant"
    #: which epoch's weights the checkpoint holds: "best" by validation (F1, then ROC-AUC), with
    #: early stopping; or "last", the end of the run (e.g. of a cosine schedule), no early stop
    keep: str = "best"
    #: share of patches (0..1) cropped where the simulated artifact shows most, clean ones by a
    #: phantom artifact (``training.fit.patches.guided_crop``); 0 = random anatomy crops only
    guided_crops: float = 0.0
    #: > 0: a patch of a simulated artifact slice is labelled artifact only where the artifact
    #: changed it by at least this much (RMS change in the patch / RMS of the clean slice, the
    #: NRMSE scale of the visibility floor; ``training.fit.patches.patch_change``), else clean;
    #: 0 = every patch carries its slice's label
    patch_floor: float = 0.0
    #: also write every epoch's weights (float32 checkpoints ``<out>.snapshots/epochNNN``, with
    #: their validation threshold) for ``amaqc average``: validation cannot tell neighbouring
    #: epochs apart, and their weight average is usually better than any one of them
    snapshots: bool = False

    def __post_init__(self) -> None:
        self.data, self.out = Path(self.data), Path(self.out)
        for name in ("epochs", "samples_per_epoch", "batch_size", "patch", "size"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.patch > self.size:
            raise ValueError(f"patch ({self.patch}) must not exceed size ({self.size})")
        if self.lr <= 0:
            raise ValueError(f"lr must be > 0, got {self.lr}")
        bad = [k for k in self.kinds if k not in KINDS]
        if bad or not self.kinds:
            raise ValueError(f"kinds must be a non-empty subset of {KINDS}, got {self.kinds}")
        if self.lr_schedule not in LR_SCHEDULES:
            raise ValueError(f"lr_schedule must be one of {LR_SCHEDULES}, got {self.lr_schedule!r}")
        if self.keep not in KEEP:
            raise ValueError(f"keep must be one of {KEEP}, got {self.keep!r}")
        if not 0.0 <= self.guided_crops <= 1.0:
            raise ValueError(f"guided_crops must be in [0, 1], got {self.guided_crops}")
        if not 0.0 <= self.patch_floor < 1.0:
            raise ValueError(f"patch_floor must be in [0, 1), got {self.patch_floor}")
        rate = self.max_false_alarm_rate
        if rate is not None and not 0.0 <= rate <= 1.0:
            raise ValueError(f"max_false_alarm_rate must be in [0, 1], got {rate}")
        if not self.severities or any(s not in SEVERITIES for s in self.severities):
            raise ValueError(
                f"severities must be a non-empty subset of {SEVERITIES}, got {self.severities}"
            )

    def to_json(self) -> dict[str, Any]:
        return {k: str(v) if isinstance(v, Path) else v for k, v in asdict(self).items()}

    @property
    def log_path(self) -> Path:
        return self.out.with_suffix(".log.json")

    @property
    def curves_path(self) -> Path:
        return self.out.with_suffix(".curves.png")

    @property
    def state_dir(self) -> Path:
        return self.out.with_suffix(".state")

    @property
    def snapshot_dir(self) -> Path:
        return self.out.with_suffix(".snapshots")


@dataclass
class EpochLog:
    epoch: int
    train_loss: float
    train_ce: float
    train_dice: float
    samples_per_s: float
    seconds: float
    val: dict[str, Any]
    lr: float | None = None  # at the epoch's last step


@dataclass
class TrainResult:
    checkpoint: Path
    best_epoch: int
    best_val: dict[str, Any]
    history: list[EpochLog]
    stopped: str
    rank: int = 0
    world_size: int = 1


ProgressFn = Callable[[dict[str, Any]], None]


def with_both_classes(
    samples: list[Sample],
    seed: int,
    kinds: tuple[str, ...] = KINDS,
    severities: tuple[str, ...] = ("moderate", "severe"),
) -> list[Sample]:
    """A validation set of clean slices only gets a fixed simulated artifact copy of each
    (seeded: the same set on every run); one with both classes is returned as it is."""
    if {s.label for s in samples} == {0, 1}:
        return samples
    pairs = simulated_pairs(samples, seed=seed, kinds=kinds, severities=severities)
    return [s for s, _ in pairs]


def load_train_val(cfg: TrainConfig) -> tuple[list[Sample], list[Sample]]:
    """The training samples and the validation set (with its seeded simulated artifacts)."""
    split_seed = cfg.seed if cfg.split_seed is None else cfg.split_seed
    train_samples = load_split(cfg.data, "train", seed=split_seed)
    val = load_split(cfg.data, cfg.val_split, seed=split_seed)
    return train_samples, with_both_classes(val, split_seed + 1, cfg.kinds, cfg.severities)


def patch_stream(
    cfg: TrainConfig, samples: list[Sample], norm: Normalization, samples_per_epoch: int = 0
) -> TrainPatches:
    """The training patches ``cfg`` describes (``samples_per_epoch`` overrides its count)."""
    return TrainPatches(
        samples,
        norm=norm,
        patch=cfg.patch,
        samples_per_epoch=samples_per_epoch or cfg.samples_per_epoch,
        seed=cfg.seed,
        simulate=cfg.simulate,
        kinds=cfg.kinds,
        severities=cfg.severities,
        realism=cfg.realism,
        whole=cfg.slice_level,
        guided=cfg.guided_crops,
        patch_floor=cfg.patch_floor,
    )


def config_from_json(config: dict[str, Any], **overrides: Any) -> TrainConfig:
    """The :class:`TrainConfig` a checkpoint's ``training.config`` records (fields added since
    take their defaults; ones no longer known are ignored)."""
    known = {f.name for f in fields(TrainConfig)}
    values = {k: v for k, v in {**config, **overrides}.items() if k in known}
    for name in ("kinds", "severities"):
        if name in values:
            values[name] = tuple(values[name])
    if values.get("init_from") is not None:
        values["init_from"] = Path(values["init_from"])
    return TrainConfig(**values)


def validate(
    predictor: Predictor, samples: list[Sample], max_false_alarm_rate: float | None = None
) -> tuple[dict[str, Any], np.ndarray]:
    """Slice-level validation: probabilities, the F1-optimal threshold (among those within the
    false-alarm bound, when given) and the metrics at it."""
    probs = predict_samples(predictor, samples)
    labels = np.array([s.label for s in samples])
    threshold = best_threshold(labels, probs, max_false_alarm_rate)
    return binary_metrics(labels, probs, threshold), probs


def _meta(
    cfg: TrainConfig,
    norm: Normalization,
    threshold: float,
    metrics: dict[str, Any],
    training: dict[str, Any],
) -> CheckpointMeta:
    return CheckpointMeta(
        arch=cfg.arch,
        arch_config=dict(cfg.arch_config),
        patch_size=cfg.patch,
        patch_stride=cfg.patch,
        aggregation={"how": cfg.aggregation, "k": None},
        normalization=norm.to_dict(),
        threshold=float(threshold),
        metrics=metrics,
        training=training,
    )


def make_loader(
    dataset: TrainPatches,
    batch_size: int,
    num_workers: int,
    sampler: DistributedSampler[Any] | None,
    device: torch.device,
) -> DataLoader[tuple[torch.Tensor, int]]:
    """Batches of the patch stream. Workers are *not* persistent: each epoch forks them anew
    from the main process, so they see the epoch that ``dataset.set_epoch`` set (persistent
    workers keep the copy of the first epoch and would replay the same samples forever)."""
    return DataLoader(
        dataset,
        batch_size=batch_size,
        sampler=sampler,
        drop_last=True,
        num_workers=num_workers,
        persistent_workers=False,
        pin_memory=device.type == "cuda",
    )


def slice_logits(model: nn.Module, slices: torch.Tensor, cfg: TrainConfig) -> torch.Tensor:
    """(B, 2) logits of whole (B, 1, S, S) slices: the patch grid's artifact probabilities
    aggregated by ``cfg.aggregation`` (as :class:`model.Predictor` does), written as the logits
    ``[0, logit(p)]`` whose softmax is ``[1 - p, p]``, so the joint loss applies unchanged."""
    patches, grid = partition(slices, cfg.patch)
    probs = torch.softmax(model(patches.contiguous(memory_format=torch.channels_last)).float(), 1)
    slice_probs, _ = aggregate(probs[:, 1], grid, cfg.aggregation)
    logit = torch.logit(slice_probs.clamp(1e-6, 1 - 1e-6))
    return torch.stack([torch.zeros_like(logit), logit], dim=1)


def _device(cfg: TrainConfig, rank: int) -> torch.device:
    if cfg.device:
        return torch.device(cfg.device)
    if torch.cuda.is_available():
        return torch.device("cuda", rank % torch.cuda.device_count())
    return torch.device("cpu")


def train(cfg: TrainConfig, *, on_progress: ProgressFn | None = None) -> TrainResult:
    """Run a training job. ``on_progress`` receives dicts (``event`` = ``step`` | ``epoch``)."""
    rank, world = 0, 1
    if cfg.distributed:
        if not dist.is_initialized():
            dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
        rank, world = dist.get_rank(), dist.get_world_size()
    if cfg.batch_size % world:
        raise ValueError(f"batch_size {cfg.batch_size} is not divisible by {world} processes")
    device = _device(cfg, rank)
    use_amp = cfg.amp and device.type == "cuda"
    if device.type == "cpu":
        # Weight decay drives unused weights and Adam's moments below float32's normal range
        # (4 % of the weights, 22 % of exp_avg after 14 epochs of a fine-tune), and x86 cores
        # compute on such subnormals dozens of times slower: the run slowed from 48 to 17
        # patches/s. Flushing them to zero changes no value above 1e-38.
        torch.set_flush_denormal(True)
    emit = on_progress if (on_progress is not None and rank == 0) else (lambda _e: None)

    norm = Normalization(size=cfg.size)
    train_samples, val_samples = load_train_val(cfg)
    data_summary = {"train": describe(train_samples), "val": describe(val_samples)}
    dataset = patch_stream(cfg, train_samples, norm)
    sampler: DistributedSampler[Any] | None = (
        DistributedSampler(dataset, world, rank, shuffle=False) if world > 1 else None
    )
    loader = make_loader(dataset, cfg.batch_size // world, cfg.num_workers, sampler, device)
    if len(loader) == 0:
        raise ValueError(
            f"samples_per_epoch {cfg.samples_per_epoch} is smaller than one batch "
            f"({cfg.batch_size})"
        )

    torch.manual_seed(cfg.seed)
    net = build_model(cfg.arch, **cfg.arch_config)
    if cfg.init_from is not None:
        base, _ = load_checkpoint(cfg.init_from)
        net.load_state_dict(base.state_dict())
    net = net.to(device).to(memory_format=torch.channels_last)
    model: nn.Module = nn.parallel.DistributedDataParallel(net) if world > 1 else net
    # foreach: one batched update over all parameters instead of a Python loop over them.
    optimizer = torch.optim.Adam(
        net.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay, foreach=True
    )
    loss_fn = JointLoss(cfg.alpha, cfg.beta)
    scaler = torch.amp.GradScaler("cuda", enabled=use_amp)

    history: list[EpochLog] = []
    best: dict[str, Any] = {"epoch": -1, "score": (-1.0, -1.0), "val": {}}
    start_epoch, bad_epochs, elapsed_before = 0, 0, 0.0
    if cfg.resume and (cfg.state_dir / "state.json").is_file():
        state = load_state(cfg.state_dir, net, optimizer)
        if state["config"] != _resume_key(cfg):
            raise ValueError(
                f"{cfg.state_dir}: saved for a different configuration; remove it or drop --resume"
            )
        start_epoch = state["epoch"] + 1
        history = [EpochLog(**h) for h in state["history"]]
        best = {**state["best"], "score": tuple(state["best"]["score"])}
        bad_epochs, elapsed_before = state["bad_epochs"], state["elapsed"]

    t_start = time.perf_counter() - elapsed_before
    stopped = "epochs"
    for epoch in range(start_epoch, cfg.epochs):
        dataset.set_epoch(epoch)
        torch.manual_seed(cfg.seed * 1000 + epoch)  # dropout etc.: same stream on resume
        model.train()
        t0 = time.perf_counter()
        sums = {"loss": 0.0, "ce": 0.0, "dice": 0.0}
        steps = len(loader)
        lr = cfg.lr
        for step, (x, y) in enumerate(loader):
            lr = scheduled_lr(cfg, epoch * steps + step, cfg.epochs * steps)
            for group in optimizer.param_groups:
                group["lr"] = lr
            x = x.to(device, non_blocking=True).contiguous(memory_format=torch.channels_last)
            y = y.to(device, non_blocking=True)
            with torch.autocast(device.type, dtype=torch.float16, enabled=use_amp):
                logits = slice_logits(model, x, cfg) if cfg.slice_level else model(x)
            loss = loss_fn(logits.float(), y)
            optimizer.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            scaler.step(optimizer)
            scaler.update()
            sums["loss"] += float(loss.detach())
            sums["ce"] += loss_fn.last_terms["ce"]
            sums["dice"] += loss_fn.last_terms["dice"]
            emit(
                {
                    "event": "step",
                    "epoch": epoch,
                    "step": step + 1,
                    "steps": steps,
                    "loss": sums["loss"] / (step + 1),
                }
            )
        seconds = time.perf_counter() - t0

        stop = torch.zeros(1)
        if rank == 0:
            meta = _meta(cfg, norm, 0.5, {}, {})
            val, _ = validate(
                Predictor((net, meta), device=device), val_samples, cfg.max_false_alarm_rate
            )
            net.train()
            log = EpochLog(
                epoch,
                sums["loss"] / steps,
                sums["ce"] / steps,
                sums["dice"] / steps,
                steps * cfg.batch_size / seconds,
                seconds,
                val,
                lr,
            )
            history.append(log)
            score = (val["f1"], val["roc_auc"] or 0.0)
            training = {
                "config": cfg.to_json(),
                "data": data_summary,
                "best_epoch": epoch,
                "world_size": world,
                "samples_seen": (epoch + 1) * steps * cfg.batch_size,
                "seconds": round(time.perf_counter() - t_start, 1),
            }
            epoch_meta = _meta(
                cfg,
                norm,
                val["threshold"],
                {f"val_{k}": v for k, v in val.items() if k != "confusion"},
                training,
            )
            if cfg.snapshots:
                save_checkpoint(cfg.snapshot_dir / f"epoch{epoch:03d}.safetensors", net, epoch_meta)
            if cfg.keep == "last" or score > best["score"]:
                best = {"epoch": epoch, "score": score, "val": val}
                bad_epochs = 0
                save_checkpoint(
                    cfg.out, net, epoch_meta, dtype=torch.float16 if cfg.fp16_checkpoint else None
                )
            else:
                bad_epochs += 1
            elapsed = time.perf_counter() - t_start
            save_state(
                cfg.state_dir,
                net,
                optimizer,
                {
                    "config": _resume_key(cfg),
                    "epoch": epoch,
                    "bad_epochs": bad_epochs,
                    "history": [asdict(h) for h in history],
                    "elapsed": elapsed,
                    "best": {**best, "score": list(best["score"])},
                },
            )
            write_log(cfg, history, best)
            emit({"event": "epoch", **asdict(log), "best_epoch": best["epoch"]})
            if bad_epochs >= cfg.patience:
                stopped, stop[0] = f"early stop: no F1 gain in {cfg.patience} epochs", 1
            elif cfg.time_budget_s is not None and _next_epoch_exceeds(cfg, elapsed, history):
                stopped, stop[0] = "time budget", 1
        if world > 1:
            dist.broadcast(stop, src=0)
        if stop.item():
            break
    if world > 1:
        dist.barrier()
    return TrainResult(cfg.out, best["epoch"], best["val"], history, stopped, rank, world)


def _next_epoch_exceeds(cfg: TrainConfig, elapsed: float, history: list[EpochLog]) -> bool:
    assert cfg.time_budget_s is not None
    per_epoch = elapsed / max(1, len(history))
    return elapsed + per_epoch > cfg.time_budget_s


def _resume_key(cfg: TrainConfig) -> dict[str, Any]:
    """The settings a resumed run must share with the interrupted one."""
    keep = (
        "arch",
        "arch_config",
        "samples_per_epoch",
        "batch_size",
        "lr",
        "weight_decay",
        "alpha",
        "beta",
        "patch",
        "size",
        "seed",
        "split_seed",
        "kinds",
        "severities",
        "simulate",
    )
    key = {k: getattr(cfg, k) for k in keep}
    if cfg.guided_crops:  # absent when 0, so states saved before it existed still resume
        key["guided_crops"] = cfg.guided_crops
    if cfg.patch_floor:
        key["patch_floor"] = cfg.patch_floor
    if cfg.lr_schedule != "constant":  # the schedule's length is part of the run
        key |= {"lr_schedule": cfg.lr_schedule, "epochs": cfg.epochs}
    return json.loads(json.dumps(key))


def write_log(cfg: TrainConfig, history: list[EpochLog], best: dict[str, Any]) -> None:
    """The JSON log and the training-curve PNG beside the checkpoint."""
    payload = {
        "config": cfg.to_json(),
        "best_epoch": best["epoch"],
        "history": [asdict(h) for h in history],
    }
    cfg.log_path.write_text(json.dumps(payload, indent=1))
    plot_curves(history, cfg.curves_path)


def plot_curves(history: list[EpochLog], path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    epochs = [h.epoch + 1 for h in history]
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(9, 3.4), dpi=110)
    ax1.plot(epochs, [h.train_loss for h in history], "o-", label="joint loss")
    ax1.plot(epochs, [h.train_ce for h in history], "--", label="cross-entropy")
    ax1.plot(epochs, [h.train_dice for h in history], ":", label="Dice loss")
    ax1.set(xlabel="epoch", ylabel="training loss", title="training")
    ax1.legend(fontsize=8)
    for key in ("f1", "roc_auc", "accuracy"):
        ax2.plot(epochs, [h.val.get(key) or math.nan for h in history], "o-", label=key)
    ax2.set(xlabel="epoch", ylabel="validation (slice level)", ylim=(0, 1.02), title="validation")
    ax2.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path
