"""Average the weights of several epochs of one run (stochastic weight averaging: Izmailov et al.,
"Averaging Weights Leads to Wider Optima and Better Generalization", UAI 2018).

Validation here cannot tell neighbouring epochs apart (its ROC-AUC moves by several points from
one epoch to the next while the training loss falls steadily), so keeping "the best epoch" keeps
a noisy draw. The average of the epochs of a constant-learning-rate run sits nearer the centre
of the region they wander in. Batch-norm statistics of averaged weights are not the average of
the epochs' statistics, so they are measured again on a fresh draw of the run's own training
patches (``torch.optim.swa_utils.update_bn``); then the threshold is chosen on validation by the
run's own rule, and the result is an ordinary checkpoint.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.optim.swa_utils import update_bn

from model import CheckpointMeta, Predictor, load_checkpoint
from model.checkpoint import save_checkpoint

from .train import config_from_json, load_train_val, make_loader, patch_stream, validate

#: patches drawn to re-measure batch-norm statistics (40 batches of 50)
BN_PATCHES = 2000
#: the epoch index the BN patches are drawn for: far from any epoch a run trains on, so the
#: draw is fresh but seeded
BN_EPOCH = 10_000


def _same_network(first: CheckpointMeta, other: CheckpointMeta, path: Path) -> None:
    for name in ("arch", "arch_config", "patch_size", "normalization"):
        if getattr(first, name) != getattr(other, name):
            raise ValueError(f"{path}: {name} differs from the first checkpoint's; cannot average")


def average_weights(models: Sequence[nn.Module]) -> dict[str, torch.Tensor]:
    """The element-wise mean of floating-point tensors of the models' state dicts (integer
    buffers, such as batch-norm's batch counters, are taken from the first)."""
    states = [m.state_dict() for m in models]
    out: dict[str, torch.Tensor] = {}
    for name, first in states[0].items():
        if first.is_floating_point():
            out[name] = torch.stack([s[name].double() for s in states]).mean(0).to(first.dtype)
        else:
            out[name] = first.clone()
    return out


def average_checkpoints(
    paths: Sequence[Path],
    out: Path,
    *,
    data: Path | None = None,
    bn_patches: int = BN_PATCHES,
    fp16: bool = False,
    on_step: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Average ``paths`` (checkpoints of one run, e.g. ``amaqc train --snapshots``), re-measure
    batch-norm statistics on ``bn_patches`` training patches (0: keep the averaged statistics),
    choose the threshold on validation and write ``out``. ``data`` defaults to the dataset the
    run recorded. Returns the validation metrics."""
    if len(paths) < 2:
        raise ValueError(f"averaging needs at least two checkpoints, got {len(paths)}")
    if bn_patches < 0:
        raise ValueError(f"bn_patches must be >= 0, got {bn_patches}")
    note = on_step or (lambda _s: None)
    loaded = [load_checkpoint(p) for p in paths]
    first_meta = loaded[0][1]
    for path, (_, meta) in zip(paths[1:], loaded[1:], strict=True):
        _same_network(first_meta, meta, path)
    recorded = first_meta.training.get("config")
    if not isinstance(recorded, dict):
        raise ValueError(f"{paths[0]}: no training configuration recorded; cannot re-measure")
    overrides: dict[str, Any] = {"device": "cpu", "num_workers": 1}
    if data is not None:
        overrides["data"] = Path(data)
    cfg = config_from_json(recorded, **overrides)

    net = loaded[0][0]
    net.load_state_dict(average_weights([m for m, _ in loaded]))
    norm = first_meta.norm
    train_samples, val_samples = load_train_val(cfg)
    if bn_patches:
        note(f"re-measuring batch-norm statistics on {bn_patches} training patches")
        stream = patch_stream(cfg, train_samples, norm, samples_per_epoch=bn_patches)
        stream.set_epoch(BN_EPOCH)
        loader = make_loader(stream, cfg.batch_size, cfg.num_workers, None, torch.device("cpu"))
        torch.manual_seed(cfg.seed)
        update_bn(loader, net.to(memory_format=torch.channels_last))
    net.eval()
    note(f"choosing the threshold on {len(val_samples)} validation slices")
    val, _ = validate(Predictor((net, first_meta)), val_samples, cfg.max_false_alarm_rate)
    epochs = [m.training.get("best_epoch") for _, m in loaded]
    last = loaded[-1][1].training
    meta = replace(
        first_meta,
        threshold=float(val["threshold"]),
        metrics={f"val_{k}": v for k, v in val.items() if k != "confusion"},
        created_at=datetime.now(UTC).isoformat(timespec="seconds"),
        training={
            **first_meta.training,
            "best_epoch": epochs[-1],
            "samples_seen": last.get("samples_seen"),
            "seconds": last.get("seconds"),
            "averaged": {"epochs": epochs, "files": [Path(p).name for p in paths]},
            "bn_patches": bn_patches,
        },
    )
    save_checkpoint(out, net, meta, dtype=torch.float16 if fp16 else None)
    return val
