"""Patch scorers: (N, C, p, p) normalised patches in, (N,) artifact probabilities out.

Two backends run a checkpoint's network:

- ``torch``: the module itself, ``channels_last``, under ``inference_mode``, with fp16 autocast
  on CUDA. Every device; the fallback wherever ONNX Runtime is missing or cannot be used.
- ``onnxruntime``: the network's inference rewrite (:mod:`model.export`) exported to ONNX once
  and run by ONNX Runtime's CPU kernels, the fastest CPU path measured (docs/performance.md).
  The export is cached as ``<cache_dir>/<sha256 of the checkpoint file>-e<EXPORT_VERSION>.onnx``
  (default cache dir: ``.amaqc-onnx/`` next to the checkpoint), so a changed checkpoint, or a
  changed rewrite, gets a new export and an unchanged one loads in a fraction of a second.
  Every load compares it with torch on probe patches and refuses it when a probability differs
  by more than :data:`MAX_PROBABILITY_DIFFERENCE`.

``auto`` picks ONNX Runtime for a checkpoint file on the CPU when it is installed and its export
checks out, else torch; torch on CUDA, and for a network given in memory (training, tests: an
export nobody caches costs more than it saves). Nothing here reads the environment: the service
passes its choice in.

Precision (:data:`PRECISIONS`): ``float32`` runs the exports above; ``int8`` runs the checkpoint's
int8 export (:mod:`model.int8`, written by ``amaqc quantize`` into the same cache, or shipped in
``int8/`` beside the checkpoint by ``amaqc quantize --ship``) on ONNX Runtime, and only where its
record says it was measured on this checkpoint's bytes and passed issue 18's
rule; ``auto`` is int8 where such an export exists and float32 otherwise. The int8 scorer is
named ``onnxruntime-int8``, so whoever logs the backend logs the precision with it.
"""

from __future__ import annotations

import hashlib
import logging
import os
import tempfile
import threading
from collections.abc import Callable
from contextlib import nullcontext
from pathlib import Path
from typing import Any, Protocol, TypeVar

import numpy as np
import torch
from torch import nn

from .export import EXPORT_VERSION, INPUT_NAME, export_onnx, input_channels
from .pools import ProcessLocalPool

logger = logging.getLogger(__name__)
T = TypeVar("T")

BACKENDS = ("auto", "torch", "onnxruntime")
PRECISIONS = ("auto", "float32", "int8")

#: Whether ONNX Runtime's intra-op threads spin while they wait for work (its default: on).
#: In amaqc's worker they share the cores with the IQM panel's thread, the spectral networks'
#: session and the service, and spinning steals those cores: off, the whole verdict ran 2x as
#: fast for one slice a call, and as fast as before for 24-32 (docs/performance.md, 2026-12-07).
SPINNING = False
#: ONNX Runtime runs per call on the CPU, side by side, each on one intra-op thread (0: as many
#: as torch's threads), instead of one run on that many threads. One run's threads meet at a
#: barrier after every operator, so where the IQM panel's thread takes a core from one of them
#: the other waits; single-threaded runs on their own share of the patches go on regardless
#: (the same numbers: each patch's output does not depend on its batch). The whole verdict ran
#: 3-7 % faster (docs/performance.md, 2026-12-07 night).
LANES = 0
#: the threads the lanes run on, this process's own
_LANE_POOL = ProcessLocalPool(max(2, os.cpu_count() or 2), "amaqc-onnx-lane")
#: the largest probability difference from torch an export may show on the probe patches
MAX_PROBABILITY_DIFFERENCE = 1e-3
#: the same check for an int8 export: it cannot match float32 to 1e-3, so this only catches a
#: broken or foreign file; its accuracy is what ``amaqc quantize`` measured (its record)
MAX_INT8_PROBABILITY_DIFFERENCE = 0.05
#: patches per ONNX Runtime run: a 24-slice series of 256^2 slices at 64 px is 384 patches, one
#: run; larger series are cut so activations stay under ~0.5 GB
ONNX_BATCH = 1024
CACHE_DIRNAME = ".amaqc-onnx"


class BackendUnavailable(RuntimeError):
    """The backend asked for cannot run here (runtime not installed, wrong device, bad export)."""


class PatchScorer(Protocol):
    name: str
    precision: str

    def __call__(self, patches: torch.Tensor) -> torch.Tensor:
        """(N, C, p, p) float32 patches -> (N,) float32 probabilities on CPU."""
        ...


def onnxruntime_available() -> bool:
    """Whether ``import onnxruntime`` works in this process."""
    try:
        import onnxruntime  # noqa: F401
    except ImportError:
        return False
    return True


class TorchScorer:
    """The network itself on ``device`` (fp16 autocast on CUDA), ``batch_size`` patches a pass."""

    name = "torch"

    def __init__(self, network: nn.Module, device: torch.device, batch_size: int = 64) -> None:
        self.device = device
        self.precision = "float16" if device.type == "cuda" else "float32"  # autocast on CUDA
        self.batch_size = batch_size
        # channels_last lets oneDNN / cuDNN pick their fastest convolution kernels.
        self.network = network.to(device).to(memory_format=torch.channels_last).eval()

    @torch.inference_mode()
    def __call__(self, patches: torch.Tensor) -> torch.Tensor:
        autocast = (
            torch.autocast("cuda", dtype=torch.float16)
            if self.device.type == "cuda"
            else nullcontext()
        )
        out = []
        with autocast:
            for start in range(0, patches.shape[0], self.batch_size):
                chunk = patches[start : start + self.batch_size]
                chunk = chunk.to(self.device, non_blocking=True).contiguous(
                    memory_format=torch.channels_last
                )
                out.append(torch.softmax(self.network(chunk).float(), dim=1)[:, 1].cpu())
        return torch.cat(out) if out else torch.empty(0)


def lane_count() -> int:
    """How many lanes (:data:`LANES`) a served ONNX Runtime session runs in."""
    return LANES or torch.get_num_threads()


def run_in_lanes(run: Callable[[np.ndarray], np.ndarray], x: np.ndarray, lanes: int) -> np.ndarray:
    """``run`` on ``x`` split along its first axis into ``lanes`` parts run side by side (at most
    one row each), the outputs concatenated in order; one plain ``run(x)`` for 1 lane or row."""
    if lanes <= 1 or len(x) < 2:
        return run(x)
    parts = np.array_split(x, min(lanes, len(x)))
    return np.concatenate(list(_LANE_POOL.get().map(run, parts)))


class LanedSession:
    """An ONNX Runtime CPU session on an exported model with one input (``input_name``), run in
    ``lanes`` (:data:`LANES`): a call of several rows is split into that many single-threaded
    runs side by side (:func:`run_in_lanes`). A call of one row, which lanes cannot split (a
    slice's spectrum sent alone), runs on a session with ``threads`` intra-op threads, made on
    first use. With 1 lane both are one session of ``threads`` threads."""

    def __init__(
        self,
        model: str | Path | bytes,
        input_name: str,
        *,
        threads: int = 0,
        lanes: int = 1,
        spinning: bool = SPINNING,
    ) -> None:
        self.model, self.input_name = model, input_name
        self.threads, self.spinning = threads, spinning
        self.lanes = max(1, lanes)
        self.session = cpu_session(model, 1 if self.lanes > 1 else threads, spinning=spinning)
        self._wide = self.session if self.lanes == 1 else None
        self._lock = threading.Lock()

    def wide(self) -> Any:
        """The session one-row calls run on."""
        with self._lock:
            if self._wide is None:
                self._wide = cpu_session(self.model, self.threads, spinning=self.spinning)
            return self._wide

    def __call__(self, x: np.ndarray) -> np.ndarray:
        if len(x) < 2:
            return self._run(self.wide(), x)
        return run_in_lanes(lambda part: self._run(self.session, part), x, self.lanes)

    def _run(self, session: Any, x: np.ndarray) -> np.ndarray:
        return np.asarray(session.run(None, {self.input_name: x})[0])


class OnnxScorer:
    """An exported network (path or serialised bytes) run by ONNX Runtime on the CPU; with
    ``lanes`` > 1 each call's patches are split into that many single-threaded runs side by
    side (:class:`LanedSession`)."""

    name = "onnxruntime"
    precision = "float32"

    def __init__(
        self,
        model: str | Path | bytes,
        *,
        batch_size: int = ONNX_BATCH,
        threads: int = 0,
        precision: str = "float32",
        spinning: bool = SPINNING,
        lanes: int = 1,
    ) -> None:
        self.runner = LanedSession(
            model, INPUT_NAME, threads=threads, lanes=lanes, spinning=spinning
        )
        self.session, self.lanes = self.runner.session, self.runner.lanes
        self.batch_size = batch_size
        if precision != "float32":  # an int8 export: the name says so wherever it is logged
            self.precision = precision
            self.name = f"onnxruntime-{precision}"
        #: the largest probability difference from torch on the probe patches (set by the check)
        self.max_difference: float | None = None

    def __call__(self, patches: torch.Tensor) -> torch.Tensor:
        x = np.ascontiguousarray(patches.detach().cpu().numpy(), dtype=np.float32)
        out = [
            self.runner(x[start : start + self.batch_size])
            for start in range(0, x.shape[0], self.batch_size)
        ]
        return torch.from_numpy(np.concatenate(out)) if out else torch.empty(0)


def cpu_session(model: str | Path | bytes, threads: int = 0, *, spinning: bool = SPINNING) -> Any:
    """An ONNX Runtime CPU session on an exported model (path or bytes), every graph
    optimisation on, ``threads`` intra-op threads (0: as many as torch uses), their
    spin-waiting as ``spinning`` says (:data:`SPINNING`); raises :class:`BackendUnavailable`
    where onnxruntime is not installed."""
    try:
        import onnxruntime as ort
    except ImportError as exc:
        raise BackendUnavailable(f"onnxruntime is not installed ({exc})") from None
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.intra_op_num_threads = threads or torch.get_num_threads()
    options.log_severity_level = 3  # no warnings on stderr for every session
    options.add_session_config_entry("session.intra_op.allow_spinning", "1" if spinning else "0")
    source = model if isinstance(model, bytes) else str(model)
    return ort.InferenceSession(source, options, providers=["CPUExecutionProvider"])


def file_digest(path: str | Path) -> str:
    """SHA-256 hex digest of a file's bytes (the export cache key)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def export_path(checkpoint: str | Path, cache_dir: str | Path | None = None) -> Path:
    """Where the export of ``checkpoint`` (as its bytes are now) lives in the cache."""
    return cache_folder(checkpoint, cache_dir) / f"{file_digest(checkpoint)}-e{EXPORT_VERSION}.onnx"


def cache_folder(checkpoint: str | Path, cache_dir: str | Path | None = None) -> Path:
    """The export cache of ``checkpoint``: ``cache_dir``, default ``.amaqc-onnx/`` beside it."""
    return Path(cache_dir) if cache_dir is not None else Path(checkpoint).parent / CACHE_DIRNAME


def cached_export(
    network: nn.Module, patch_size: int, checkpoint: str | Path, cache_dir: str | Path | None
) -> Path:
    """The cached ONNX export of ``checkpoint``'s network, exported now if missing.

    When the cache folder cannot be written (a read-only install), the export goes to an
    ``amaqc-onnx`` folder in the system temporary directory instead.
    """
    from .resnet import AMAResNet

    if not isinstance(network, AMAResNet):
        raise BackendUnavailable(f"no ONNX export for {type(network).__name__}")
    try:
        path = export_cached(
            export_path(checkpoint, cache_dir), lambda to: export_onnx(network, patch_size, to)
        )
    except ImportError as exc:  # torch's exporter needs the onnx package
        raise BackendUnavailable(f"cannot export to ONNX ({exc})") from None
    return path


def export_cached(path: Path, export_to: Callable[[Path], object]) -> Path:
    """``path`` when the cache holds it, else exported there now by ``export_to(path)``; where
    the cache folder cannot be written (a read-only install), an ``amaqc-onnx`` folder in the
    system temporary directory holds it instead. Returns where the export is."""
    if path.is_file():
        return path
    try:
        export_to(path)
    except OSError:  # a read-only folder
        path = Path(tempfile.gettempdir()) / "amaqc-onnx" / path.name
        if not path.is_file():
            export_to(path)
    logger.info("exported %s", path)
    return path


def probe_patches(channels: int, patch_size: int, count: int = 8) -> torch.Tensor:
    """(count, channels, p, p) deterministic patches in [0, 1] that look like MR: an ellipse of
    tissue with texture and Rician-like noise, at several positions, plus one empty patch."""
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[:patch_size, :patch_size] / patch_size
    out = np.zeros((count, channels, patch_size, patch_size), dtype=np.float32)
    for i in range(1, count):
        cy, cx = rng.uniform(0.2, 0.8, 2)
        inside = ((yy - cy) / 0.45) ** 2 + ((xx - cx) / 0.35) ** 2 < 1
        texture = 0.6 + 0.25 * np.sin(9 * yy + 5 * xx + i) * np.cos(7 * xx - 3 * yy)
        noise = np.abs(rng.normal(0, 0.04, inside.shape) + 1j * rng.normal(0, 0.04, inside.shape))
        out[i, :] = np.clip(inside * texture + noise, 0, 1)
    return torch.from_numpy(out)


def compare_with_torch(scorer: PatchScorer, network: nn.Module, patches: torch.Tensor) -> float:
    """Largest absolute difference between ``scorer``'s probabilities and the float32 network's
    on ``patches`` (on the CPU)."""
    net = network.to("cpu").float().eval()
    with torch.inference_mode():
        want = torch.softmax(net(patches), dim=1)[:, 1]
    return float((scorer(patches) - want).abs().max())


def make_scorer(
    network: nn.Module,
    *,
    patch_size: int,
    device: torch.device,
    backend: str = "auto",
    batch_size: int | None = None,
    checkpoint: str | Path | None = None,
    cache_dir: str | Path | None = None,
    precision: str = "float32",
) -> PatchScorer:
    """The patch scorer for ``backend`` and ``precision`` on ``device`` (see the module
    docstring).

    ``checkpoint`` is the file the network came from (the export cache key); without it the
    network is exported in memory. ``batch_size`` is patches per pass (default: 64 for torch,
    :data:`ONNX_BATCH` for ONNX Runtime). Raises :class:`BackendUnavailable` when the backend
    or precision asked for by name cannot run; ``auto`` falls back instead (int8 to float32,
    ONNX Runtime to torch).
    """
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
    if precision != "float32":
        try:
            return _int8_scorer(
                network, patch_size, device, backend, batch_size, checkpoint, cache_dir
            )
        except BackendUnavailable as exc:
            if precision == "int8":
                raise
            logger.info("int8 not used (%s); running the network in float32", exc)

    def onnx() -> PatchScorer:
        return _onnx_scorer(network, patch_size, batch_size, checkpoint, cache_dir)

    def with_torch() -> PatchScorer:
        return TorchScorer(network, device, batch_size or 64)

    return onnx_or_torch(backend, device, checkpoint, onnx, with_torch, "the network")


def onnx_or_torch(
    backend: str,
    device: torch.device,
    checkpoint: str | Path | None,
    onnx: Callable[[], T],
    torch_runner: Callable[[], T],
    what: str,
) -> T:
    """The backend rule for every network the Predictor runs: ``torch`` asked for, ``auto`` on
    CUDA or for a network given in memory: ``torch_runner()``; ``onnxruntime``: ``onnx()`` or
    its error (refused off the CPU); ``auto`` on the CPU: ``onnx()``, else ``torch_runner()``
    whatever went wrong, saying why in the log (``what`` names the network there)."""
    if backend == "torch" or (backend == "auto" and (device.type != "cpu" or checkpoint is None)):
        return torch_runner()
    if device.type != "cpu":
        raise BackendUnavailable(
            f"the onnxruntime backend runs on the CPU, not on {device}; use backend='torch'"
        )
    try:
        return onnx()
    except Exception as exc:  # auto serves with torch whatever went wrong with the export
        if backend == "onnxruntime":
            raise
        expected = isinstance(exc, BackendUnavailable)
        logger.log(
            logging.INFO if expected else logging.WARNING,
            "ONNX Runtime not used for %s (%s); running it with torch",
            what,
            exc,
        )
        return torch_runner()


def _onnx_scorer(
    network: nn.Module,
    patch_size: int,
    batch_size: int | None,
    checkpoint: str | Path | None,
    cache_dir: str | Path | None,
) -> OnnxScorer:
    from .resnet import AMAResNet

    if not onnxruntime_available():
        raise BackendUnavailable("onnxruntime is not installed")
    if not isinstance(network, AMAResNet):
        raise BackendUnavailable(f"no ONNX export for {type(network).__name__}")
    source: Path | bytes
    try:
        if checkpoint is not None:
            source = cached_export(network, patch_size, checkpoint, cache_dir)
        else:
            source = export_onnx(network, patch_size)
    except ImportError as exc:
        raise BackendUnavailable(f"cannot export to ONNX ({exc})") from None
    scorer = open_export(
        source,
        lambda src: OnnxScorer(src, batch_size=batch_size or ONNX_BATCH, lanes=lane_count()),
        lambda path: export_onnx(network, patch_size, path),
    )
    probes = probe_patches(input_channels(network), patch_size)
    scorer.max_difference = compare_with_torch(scorer, network, probes)
    if scorer.max_difference > MAX_PROBABILITY_DIFFERENCE:
        raise BackendUnavailable(
            f"the ONNX export differs from torch by {scorer.max_difference:.2e} in probability "
            f"(allowed {MAX_PROBABILITY_DIFFERENCE:.0e})"
        )
    return scorer


def open_export(
    source: Path | bytes,
    load: Callable[[Path | bytes], T],
    export_to: Callable[[Path], object],
) -> T:
    """``load(source)``; a cached export (a path) that ONNX Runtime cannot read (truncated,
    foreign) is exported again by ``export_to(path)`` and loaded once more. An export made in
    memory that cannot be read raises :class:`BackendUnavailable`."""
    try:
        return load(source)
    except BackendUnavailable:
        raise
    except Exception as exc:  # onnxruntime's own error types: a truncated or foreign file
        if not isinstance(source, Path):
            raise BackendUnavailable(f"ONNX Runtime cannot load the export ({exc})") from None
        logger.warning("cached export %s unreadable (%s); exporting again", source, exc)
        source.unlink(missing_ok=True)
        export_to(source)
        return load(source)


def _int8_scorer(
    network: nn.Module,
    patch_size: int,
    device: torch.device,
    backend: str,
    batch_size: int | None,
    checkpoint: str | Path | None,
    cache_dir: str | Path | None,
) -> OnnxScorer:
    """The accepted int8 export of ``checkpoint`` on ONNX Runtime; raises
    :class:`BackendUnavailable` saying why where there is none or it cannot run here."""
    from .int8 import first_accepted, int8_folders
    from .resnet import AMAResNet

    if backend == "torch" or device.type != "cpu" or checkpoint is None:
        raise BackendUnavailable("int8 runs on ONNX Runtime on the CPU, from a checkpoint file")
    if not isinstance(network, AMAResNet):
        raise BackendUnavailable(f"no ONNX export for {type(network).__name__}")
    if not onnxruntime_available():
        raise BackendUnavailable("onnxruntime is not installed")
    digest = file_digest(checkpoint)
    folders = int8_folders(checkpoint, cache_folder(checkpoint, cache_dir))
    found = first_accepted(folders, digest)
    if found is None:
        raise BackendUnavailable(
            f"no accepted int8 export of checkpoint {digest[:12]} in "
            f"{' or '.join(str(f) for f in folders)} (run `amaqc quantize` on it)"
        )
    path, record = found
    try:
        scorer = OnnxScorer(
            path, batch_size=batch_size or ONNX_BATCH, precision="int8", lanes=lane_count()
        )
        probes = probe_patches(input_channels(network), patch_size)
        scorer.max_difference = compare_with_torch(scorer, network, probes)
    except Exception as exc:  # onnxruntime's own errors: a file it cannot run
        logger.warning("int8 export %s unusable: %s", path, exc)
        raise BackendUnavailable(f"int8 export {path.name} unusable ({exc})") from None
    if scorer.max_difference > MAX_INT8_PROBABILITY_DIFFERENCE:
        message = (
            f"int8 export {path.name} differs from torch by {scorer.max_difference:.3f} in "
            f"probability (allowed {MAX_INT8_PROBABILITY_DIFFERENCE})"
        )
        logger.warning(message)
        raise BackendUnavailable(message)
    logger.info(
        "serving the int8 export %s (largest held-out ROC-AUC change %.4f)",
        path.name,
        record.worst_change,
    )
    return scorer
