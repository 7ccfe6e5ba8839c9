"""Resumable training state without pickle: tensors in safetensors, the rest in JSON."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file
from torch import nn


def save_state(
    directory: Path, model: nn.Module, optimizer: torch.optim.Optimizer, info: dict[str, Any]
) -> None:
    """Model weights, optimizer moments and ``info`` (JSON-serialisable), written atomically."""
    directory.mkdir(parents=True, exist_ok=True)
    opt = optimizer.state_dict()
    tensors = {f"model.{k}": v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    scalars: dict[str, dict[str, Any]] = {}
    for idx, slot in opt["state"].items():
        for key, value in slot.items():
            if torch.is_tensor(value):
                tensors[f"optim.{idx}.{key}"] = value.detach().cpu().contiguous()
            else:
                scalars.setdefault(str(idx), {})[key] = value
    tmp = directory / "tensors.safetensors.tmp"
    save_file(tensors, str(tmp))
    tmp.replace(directory / "tensors.safetensors")
    payload = {**info, "param_groups": opt["param_groups"], "optim_scalars": scalars}
    (directory / "state.json.tmp").write_text(json.dumps(payload))
    (directory / "state.json.tmp").replace(directory / "state.json")


def load_state(
    directory: Path, model: nn.Module, optimizer: torch.optim.Optimizer
) -> dict[str, Any]:
    """Restore what :func:`save_state` wrote into ``model`` and ``optimizer``; return ``info``."""
    info: dict[str, Any] = json.loads((directory / "state.json").read_text())
    tensors = load_file(str(directory / "tensors.safetensors"))
    device = next(model.parameters()).device
    model.load_state_dict({k[6:]: v for k, v in tensors.items() if k.startswith("model.")})
    state: dict[int, dict[str, Any]] = {}
    for key, value in tensors.items():
        if key.startswith("optim."):
            _, idx, name = key.split(".", 2)
            state.setdefault(int(idx), {})[name] = value.to(device) if name != "step" else value
    for idx, scalars in info.pop("optim_scalars").items():
        state.setdefault(int(idx), {}).update(scalars)
    optimizer.load_state_dict({"state": state, "param_groups": info.pop("param_groups")})
    return info
