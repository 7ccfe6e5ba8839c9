"""The int8 export of a checkpoint's network: quantisation, its record, and when it may serve.

int8 static quantisation (ONNX Runtime ``quantize_static``: QDQ, int8 weights per channel, uint8
activations, MinMax calibration) runs the network 1.4-1.55x faster on the CPU than the float32
export (docs/performance.md), but what it costs in accuracy depends on the checkpoint. Issue 18's
rule keeps it only when no held-out ROC-AUC moves by :data:`MAX_AUC_CHANGE` or more. Calibration
patches and held-out splits are training data, which ``model/`` does not read, so ``amaqc
quantize`` (:mod:`training.experiments.quantize`) measures it; this module holds what both sides
share:

- :func:`quantise_onnx`: a float32 export and calibration patches -> the int8 export;
- :class:`Int8Record`: what was measured, stored as JSON beside the int8 export;
- the cache layout, next to the float32 export (:func:`model.backends.export_path`):
  ``<sha256 of the checkpoint file>-e<EXPORT_VERSION>-int8.onnx`` and ``...-int8.json``;
- :func:`accepted_int8`: the int8 export of a checkpoint, only where its record was measured on
  these very bytes, passes the rule, and names the int8 file's own digest. A changed checkpoint
  has another digest and so never finds the old file; a changed or swapped int8 file no longer
  matches its record.
- the **shipped** int8 export (:func:`shipped_folder`: ``int8/`` beside the checkpoint, tracked
  with it; ``amaqc quantize --ship`` writes it): the same two files, so a fresh install serves
  the accepted int8 network without a dataset to quantise on. The export cache is looked in
  first (:func:`int8_folders`); the same checks apply to both.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .backends import file_digest
from .export import EXPORT_VERSION, INPUT_NAME, write_atomic

logger = logging.getLogger(__name__)

#: issue 18's rule: int8 serves only if every held-out ROC-AUC moves by less than this
MAX_AUC_CHANGE = 0.005
#: bumped whenever the quantisation scheme changes, so old int8 exports stop serving
#: (2: max-pools moved before the ReLU they followed, :func:`pool_before_relu`)
INT8_VERSION = 2
#: node-name prefixes left in float32 by default: the stem (its convolution reads the slice's
#: 12-bit values) and the classifier (docs/performance.md: int8 everywhere moved a held-out AUC
#: by 0.0067; the pyramid in int8 too, since 2026-12-07, moved none by more than 0.0040)
DEFAULT_KEEP_FLOAT: tuple[str, ...] = ("/stem", "/fc")
CALIBRATION_METHODS = ("MinMax", "Percentile", "Entropy")
#: the folder beside a checkpoint that ships its accepted int8 export (``amaqc quantize --ship``)
SHIPPED_DIRNAME = "int8"


@dataclass(frozen=True)
class AucChange:
    """One held-out ROC-AUC of AMAResNet's slice probability, float32 and int8."""

    split: str
    metric: str  # "all" or "moderate+severe"
    slices: int
    float32: float
    int8: float

    @property
    def change(self) -> float:
        return self.int8 - self.float32


@dataclass(frozen=True)
class Int8Record:
    """What ``amaqc quantize`` measured for one checkpoint, and whether it passed the rule."""

    checkpoint_sha256: str
    aucs: list[AucChange]
    max_auc_change: float = MAX_AUC_CHANGE
    calibration: dict[str, Any] = field(default_factory=dict)
    keep_float: list[str] = field(default_factory=list)
    float_nodes: int = 0
    #: SHA-256 of the int8 ONNX file; None when it was rejected (and not kept)
    onnx_sha256: str | None = None
    #: largest probability difference from the float32 network on the probe patches
    probe_difference: float | None = None
    #: network-only slices/s of both precisions on the machine that quantised
    speed: dict[str, float] = field(default_factory=dict)
    dataset: str = ""
    created: str = ""
    export_version: int = EXPORT_VERSION
    int8_version: int = INT8_VERSION

    @property
    def worst_change(self) -> float | None:
        """The largest |ROC-AUC change|, None when nothing was measured."""
        return max((abs(a.change) for a in self.aucs), default=None)

    @property
    def accepted(self) -> bool:
        """The rule, recomputed from the measurements (never read from the file): at least one
        AUC measured, every change under the bound, and the bound no looser than the issue's."""
        worst = self.worst_change
        return (
            worst is not None
            and self.max_auc_change <= MAX_AUC_CHANGE
            and worst < self.max_auc_change
        )

    def to_json(self) -> str:
        data = asdict(self)
        data["accepted"] = self.accepted  # for people reading the file; ignored when loading
        data["worst_change"] = self.worst_change
        for row, auc in zip(data["aucs"], self.aucs, strict=True):
            row["change"] = auc.change
        return json.dumps(data, indent=2) + "\n"

    @classmethod
    def from_json(cls, text: str) -> Int8Record:
        data = json.loads(text)
        if not isinstance(data, dict):
            raise ValueError("an int8 record is a JSON object")
        data.pop("accepted", None)
        data.pop("worst_change", None)
        aucs = [
            AucChange(**{k: v for k, v in row.items() if k != "change"})
            for row in data.pop("aucs", [])
        ]
        return cls(aucs=aucs, **data)


def int8_paths(folder: str | Path, checkpoint_sha256: str) -> tuple[Path, Path]:
    """(int8 ONNX, JSON record) of the checkpoint with this digest in the export cache."""
    stem = f"{checkpoint_sha256}-e{EXPORT_VERSION}-int8"
    return Path(folder) / f"{stem}.onnx", Path(folder) / f"{stem}.json"


def shipped_folder(checkpoint: str | Path) -> Path:
    """Where ``checkpoint``'s int8 export ships: ``int8/`` beside it (tracked with it)."""
    return Path(checkpoint).parent / SHIPPED_DIRNAME


def int8_folders(checkpoint: str | Path, cache: str | Path) -> list[Path]:
    """The folders an int8 export of ``checkpoint`` is looked for in, in order: the export
    ``cache`` (what ``amaqc quantize`` wrote on this machine), then the shipped folder."""
    folders = [Path(cache)]
    shipped = shipped_folder(checkpoint)
    if shipped.resolve() != folders[0].resolve():
        folders.append(shipped)
    return folders


def first_accepted(
    folders: Sequence[str | Path], checkpoint_sha256: str
) -> tuple[Path, Int8Record] | None:
    """:func:`accepted_int8` in each of ``folders`` in turn (:func:`int8_folders`): the first
    found, or None."""
    return next(filter(None, (accepted_int8(f, checkpoint_sha256) for f in folders)), None)


def prune_int8(folder: str | Path, keep_sha256: str) -> list[Path]:
    """Remove from ``folder`` the int8 exports and records of every checkpoint but
    ``keep_sha256`` (a shipped folder holds the served checkpoint's alone); returns what went."""
    keep = {p.name for p in int8_paths(folder, keep_sha256)}
    gone = []
    for path in sorted(Path(folder).glob("*-int8.*")):
        if path.suffix in (".onnx", ".json") and path.name not in keep:
            path.unlink()
            gone.append(path)
    return gone


def write_int8(folder: str | Path, record: Int8Record, onnx_file: Path | None) -> Path:
    """Store ``record`` (and, when accepted, ``onnx_file``) in the cache ``folder``; returns the
    record's path. A rejected record keeps no int8 file: any earlier one is removed."""
    model_path, record_path = int8_paths(folder, record.checkpoint_sha256)
    if record.accepted:
        if onnx_file is None:
            raise ValueError("an accepted record needs its int8 ONNX file")
        write_atomic(model_path, Path(onnx_file).read_bytes())
    else:
        model_path.unlink(missing_ok=True)
    write_atomic(record_path, record.to_json().encode())
    return record_path


def read_record(folder: str | Path, checkpoint_sha256: str) -> Int8Record | None:
    """The stored record of the checkpoint with this digest, None when there is none (or it
    cannot be read)."""
    _, record_path = int8_paths(folder, checkpoint_sha256)
    if not record_path.is_file():
        return None
    try:
        return Int8Record.from_json(record_path.read_text())
    except (OSError, ValueError, TypeError) as exc:
        logger.warning("int8 record %s unreadable (%s); ignored", record_path, exc)
        return None


def accepted_int8(folder: str | Path, checkpoint_sha256: str) -> tuple[Path, Int8Record] | None:
    """The int8 export of the checkpoint with this digest and its record, or None unless the
    record was made for this digest, this export and quantisation version, passes the rule, and
    the int8 file is the one it measured (same SHA-256)."""
    record = read_record(folder, checkpoint_sha256)
    model_path, _ = int8_paths(folder, checkpoint_sha256)
    if record is None:
        return None
    why = None
    if record.checkpoint_sha256 != checkpoint_sha256:
        why = f"it was measured on checkpoint {record.checkpoint_sha256[:12]}"
    elif (record.export_version, record.int8_version) != (EXPORT_VERSION, INT8_VERSION):
        why = "it was made by another export or quantisation version"
    elif not record.accepted:
        why = f"it was rejected (largest ROC-AUC change {record.worst_change})"
    elif not model_path.is_file() or record.onnx_sha256 != file_digest(model_path):
        why = "its int8 file is missing or not the one measured"
    if why is not None:
        logger.info("int8 export of %s not used: %s", checkpoint_sha256[:12], why)
        return None
    return model_path, record


def quantise_onnx(
    fp32: str | Path,
    out: str | Path,
    patches: np.ndarray,
    *,
    keep_float: Sequence[str] = DEFAULT_KEEP_FLOAT,
    method: str = "MinMax",
) -> list[str]:
    """Quantise the float32 export ``fp32`` to ``out`` with (N, C, p, p) calibration
    ``patches`` (normalised as the checkpoint normalises). Nodes whose name starts with a
    ``keep_float`` prefix stay float32; returns their names. Needs ``onnx`` and
    ``onnxruntime``."""
    if method not in CALIBRATION_METHODS:
        raise ValueError(f"method must be one of {CALIBRATION_METHODS}, got {method!r}")
    if len(patches) == 0:
        raise ValueError("quantisation needs at least one calibration patch")
    import onnx
    from onnxruntime.quantization import (
        CalibrationDataReader,
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quantize_static,
    )
    from onnxruntime.quantization.shape_inference import quant_pre_process

    class Reader(CalibrationDataReader):  # type: ignore[misc]  # untyped base class
        def __init__(self) -> None:
            chunks = np.array_split(patches.astype(np.float32), max(1, len(patches) // 32))
            self.chunks = iter(chunks)

        def get_next(self) -> dict[str, np.ndarray] | None:
            chunk = next(self.chunks, None)
            return None if chunk is None else {INPUT_NAME: chunk}

    out = Path(out)
    pre = out.with_name(f".{out.stem}.pre.onnx")
    try:
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
    finally:
        pre.unlink(missing_ok=True)
    model = onnx.load(str(out))
    if pool_before_relu(model):
        write_atomic(out, model.SerializeToString())
    return excluded


def pool_before_relu(model: Any) -> int:
    """Rewrite ``Relu -> MaxPool`` as ``MaxPool -> Relu`` in an ONNX ``model`` (in place) where
    the ReLU feeds only that max-pool; returns how many were rewritten.

    The result is the same to the bit (max(relu(a), relu(b)) = relu(max(a, b)): ReLU is
    monotone), but ONNX Runtime then runs the pool on its blocked (NCHWc) layout, straight on
    the float convolution's output. Left in float beside the int8 backbone (the stem's pool after
    its float convolution), ``Relu -> MaxPool -> QuantizeLinear`` falls to the plain NCHW pool
    kernel and a layout reorder: 18 % of the int8 network's time (docs/performance.md).
    """
    graph = model.graph
    consumers: dict[str, list[Any]] = {}
    for node in graph.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node)
    outputs = {o.name for o in graph.output}
    nodes = list(graph.node)
    relus = {n.output[0]: n for n in nodes if n.op_type == "Relu"}
    rewritten = 0
    for pool in nodes:
        if pool.op_type != "MaxPool" or len(pool.output) != 1:
            continue
        relu = relus.get(pool.input[0])
        if relu is None or relu.output[0] in outputs or len(consumers[relu.output[0]]) != 1:
            continue
        pooled = f"{relu.input[0]}_pooled"
        gone = relu.output[0]
        pool.input[0], pool.output[0], relu.input[0], relu.output[0] = (
            relu.input[0],
            pooled,
            pooled,
            pool.output[0],
        )
        i, j = nodes.index(relu), nodes.index(pool)
        nodes[i], nodes[j] = pool, relu
        stale = [v for v in graph.value_info if v.name == gone]
        for v in stale:
            graph.value_info.remove(v)
        rewritten += 1
    if rewritten:
        del graph.node[:]
        graph.node.extend(nodes)
    return rewritten
