"""Checkpoints: safetensors weights plus JSON metadata, in one file, never unpickled.

The metadata travels in the safetensors header (``__metadata__["amaqc"]``, a JSON string), so a
checkpoint is one self-describing file: the architecture and its config, the patch geometry,
aggregation, intensity normalisation and decision threshold the Predictor needs, plus metrics
and provenance. :func:`load_checkpoint` rebuilds the network from the registry and refuses a
file whose tensors do not match it, naming the missing, unexpected or mis-shaped tensors.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open
from safetensors.torch import save_file
from torch import nn

from ._version import amaqc_version
from .fusion import FusionError, FusionModel
from .partition import AGGREGATIONS
from .preprocess import Normalization
from .registry import build_model
from .spectral import PREFIX as SPECTRAL_PREFIX
from .spectral import (
    SpectralError,
    SpectralModel,
    build_spectral,
    spectral_from_tensors,
    tensor_mismatch,
)

FORMAT = "amaqc-checkpoint/1"
_HEADER_KEY = "amaqc"
#: Keys every checkpoint's metadata must carry; a missing one is refused by name.
REQUIRED_KEYS = (
    "format",
    "arch",
    "arch_config",
    "patch_size",
    "patch_stride",
    "aggregation",
    "normalization",
    "threshold",
    "metrics",
    "created_at",
    "amaqc_version",
)


class CheckpointError(ValueError):
    """A checkpoint file that cannot be used, with the reason."""


@dataclass
class CheckpointMeta:
    """Everything besides the weights that inference and provenance need.

    ``arch_config`` holds the keyword arguments of :func:`model.build_model` (including
    ``in_channels`` and ``num_classes``); ``aggregation`` is ``{"how": ..., "k": ...}``;
    ``threshold`` is the decision threshold on the slice artifact probability.
    """

    arch: str
    arch_config: dict[str, Any] = field(default_factory=dict)
    patch_size: int = 128
    patch_stride: int = 128
    aggregation: dict[str, Any] = field(default_factory=lambda: {"how": "topk_mean", "k": None})
    normalization: dict[str, Any] = field(default_factory=lambda: Normalization().to_dict())
    threshold: float = 0.5
    metrics: dict[str, Any] = field(default_factory=dict)
    created_at: str = field(default_factory=lambda: datetime.now(UTC).isoformat(timespec="seconds"))
    amaqc_version: str = field(default_factory=amaqc_version)
    training: dict[str, Any] = field(default_factory=dict)
    #: the fused detector over this network and the IQM panel (``FusionModel.to_dict``); empty
    #: when the checkpoint serves AMAResNet alone
    fusion: dict[str, Any] = field(default_factory=dict)
    #: the spectral network's description (``model.spectral.spectral_description``) when the
    #: file also carries its tensors (``spectral.*``); empty otherwise
    spectral: dict[str, Any] = field(default_factory=dict)
    format: str = FORMAT

    def __post_init__(self) -> None:
        if not 0.0 <= float(self.threshold) <= 1.0:
            raise CheckpointError(f"threshold must be in [0, 1], got {self.threshold}")
        how = self.aggregation.get("how")
        if how not in AGGREGATIONS:
            raise CheckpointError(f"aggregation.how must be one of {AGGREGATIONS}, got {how!r}")
        if not 1 <= int(self.patch_stride) <= int(self.patch_size):
            raise CheckpointError(
                f"patch_stride must be in [1, patch_size={self.patch_size}], "
                f"got {self.patch_stride}"
            )
        Normalization.from_dict(self.normalization)  # raises on a bad normalisation
        if self.fusion:
            try:
                FusionModel.from_dict(self.fusion)
            except FusionError as exc:
                raise CheckpointError(str(exc)) from None
        if self.spectral:
            try:
                build_spectral(self.spectral)
            except (SpectralError, TypeError, ValueError) as exc:
                raise CheckpointError(f"spectral network: {exc}") from None

    @property
    def fusion_model(self) -> FusionModel | None:
        """The fused detector, or None when the checkpoint has none."""
        return FusionModel.from_dict(self.fusion) if self.fusion else None

    @property
    def served_threshold(self) -> float:
        """The threshold of the detector served by default: the fused one's where present."""
        fused = self.fusion_model
        return float(fused.threshold) if fused is not None else float(self.threshold)

    @property
    def norm(self) -> Normalization:
        return Normalization.from_dict(self.normalization)

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str, source: str = "checkpoint") -> CheckpointMeta:
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise CheckpointError(f"{source}: metadata is not valid JSON ({exc})") from None
        if not isinstance(data, dict):
            raise CheckpointError(f"{source}: metadata must be a JSON object")
        missing = [k for k in REQUIRED_KEYS if k not in data]
        if missing:
            raise CheckpointError(f"{source}: metadata is missing key(s) {missing}")
        if data["format"] != FORMAT:
            raise CheckpointError(
                f"{source}: unsupported format {data['format']!r} (want {FORMAT})"
            )
        known = {f for f in cls.__dataclass_fields__}
        try:
            return cls(**{k: v for k, v in data.items() if k in known})
        except (TypeError, ValueError) as exc:
            raise CheckpointError(f"{source}: invalid metadata ({exc})") from None


def save_checkpoint(
    path: str | Path,
    model: nn.Module,
    meta: CheckpointMeta,
    *,
    dtype: torch.dtype | None = None,
    spectral: SpectralModel | None = None,
) -> Path:
    """Write ``model``'s state dict and ``meta`` to ``path`` atomically.

    ``dtype=torch.float16`` halves the file (floating tensors only; integer buffers keep theirs).
    ``spectral``, the spectral network ``meta.spectral`` describes, is stored beside as
    ``spectral.*`` tensors (always float32: it is small); one without the other is refused.
    """
    path = Path(path)
    if bool(meta.spectral) != (spectral is not None):
        raise CheckpointError(
            "metadata declares a spectral network but none was given"
            if meta.spectral
            else "a spectral network needs its description in meta.spectral"
        )
    tensors = {}
    for name, tensor in model.state_dict().items():
        t = tensor.detach().cpu()
        if dtype is not None and t.is_floating_point():
            t = t.to(dtype)
        tensors[name] = t.contiguous()
    if spectral is not None:
        for name, tensor in spectral.state_dict().items():
            tensors[SPECTRAL_PREFIX + name] = tensor.detach().cpu().contiguous()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    save_file(tensors, str(tmp), metadata={_HEADER_KEY: meta.to_json()})
    tmp.replace(path)
    return path


def read_metadata(path: str | Path) -> CheckpointMeta:
    """Read only the metadata (cheap: the header, not the weights)."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: no such checkpoint file")
    try:
        with safe_open(str(path), framework="pt") as f:
            header = f.metadata() or {}
    except Exception as exc:  # safetensors raises its own error types for corrupt files
        raise CheckpointError(f"{path}: not a readable safetensors file ({exc})") from None
    if _HEADER_KEY not in header:
        raise CheckpointError(f"{path}: safetensors file has no amaqc metadata")
    return CheckpointMeta.from_json(header[_HEADER_KEY], source=str(path))


def _check_tensors(
    path: Path, expected: dict[str, torch.Tensor], found: dict[str, torch.Tensor]
) -> None:
    problems = tensor_mismatch(expected, found)
    if problems:
        raise CheckpointError(f"{path}: tensors do not match the declared arch: {problems}")


def load_checkpoint(
    path: str | Path, *, device: str | torch.device = "cpu"
) -> tuple[nn.Module, CheckpointMeta]:
    """Rebuild the network declared in the metadata and load the weights (float32, eval mode)."""
    path = Path(path)
    meta = read_metadata(path)
    try:
        model = build_model(meta.arch, **meta.arch_config)
    except (TypeError, ValueError) as exc:
        raise CheckpointError(f"{path}: cannot build arch {meta.arch!r} ({exc})") from None
    try:
        with safe_open(str(path), framework="pt", device="cpu") as f:
            found = {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118 (safe_open has no iter)
    except Exception as exc:
        raise CheckpointError(f"{path}: cannot read tensors ({exc})") from None
    if meta.spectral:  # the spectral network's tensors are load_spectral's
        found = {k: v for k, v in found.items() if not k.startswith(SPECTRAL_PREFIX)}
    expected = model.state_dict()
    _check_tensors(path, expected, found)
    state = {k: v.to(expected[k].dtype) for k, v in found.items()}
    model.load_state_dict(state, strict=True)
    return model.to(device).eval(), meta


def load_spectral(
    path: str | Path, meta: CheckpointMeta | None = None, *, device: str | torch.device = "cpu"
) -> SpectralModel | None:
    """The spectral network stored in the checkpoint at ``path`` (float32, eval mode), or None
    when its metadata declares none; a declared network whose tensors do not match is refused."""
    path = Path(path)
    meta = meta if meta is not None else read_metadata(path)
    if not meta.spectral:
        return None
    try:
        with safe_open(str(path), framework="pt", device="cpu") as f:
            found = {
                k[len(SPECTRAL_PREFIX) :]: f.get_tensor(k)
                for k in f.keys()  # noqa: SIM118 (safe_open has no iter)
                if k.startswith(SPECTRAL_PREFIX)
            }
    except Exception as exc:
        raise CheckpointError(f"{path}: cannot read tensors ({exc})") from None
    try:
        net = spectral_from_tensors(meta.spectral, found)
    except SpectralError as exc:
        raise CheckpointError(f"{path}: {exc}") from None
    return net.to(device).eval()
