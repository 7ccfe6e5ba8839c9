"""The IQM panel (``model.iqm.compute_iqms``) of the working tree against the one of a git revision,
in one process: per-slice time, interleaved rounds, and the largest difference of any metric.

The fused detector's panel must keep its values (the served fusion model was fitted on them), so
a faster ``model/iqm.py`` is only worth it at a relative difference within 1e-6. Slices: the 24
head-like 256x256 uint16 slices of ``bench/inference.py`` and, where ``amaqc data build``'s cache
has them, 24 real axial T1w slices of its test subject (``mriqc_0042``, cut as the dataset is)
at their own size (176x146) and resized to 256 px. Wall and CPU time per slice, median of
``--rounds``, and before / now as the median of the rounds' own ratios (every other round runs
now first); on a shared machine compare the ratios of one run, the CPU time moves less.
``--thread`` times both on a one-worker thread, as the served detector computes its panels
beside the network (``model.predictor.panel_pool``; the CPU time is that thread's): the main
thread's allocations can cost page faults a worker thread's arena does not.

    .venv/bin/python bench/iqm.py [--against HEAD] [--rounds 7] [--thread]
"""

from __future__ import annotations

import argparse
import importlib
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from types import ModuleType

import numpy as np
from scipy import ndimage

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.inference import SIZE, head_slices  # noqa: E402
from model import iqm  # noqa: E402

CACHE = ROOT / ".data" / "cache"


def panel_at(revision: str, folder: Path) -> ModuleType:
    """``model/iqm.py`` as it was at ``revision``, imported as its own module (with the
    ``model/iqm_kernels.py`` of that revision beside it, where it had one: ``model.iqm`` imports
    it relatively)."""
    package = folder / "iqm_at_revision"
    package.mkdir()
    (package / "__init__.py").write_text("")
    for name in ("iqm.py", "iqm_kernels.py"):
        shown = subprocess.run(
            ["git", "show", f"{revision}:model/{name}"], cwd=ROOT, capture_output=True
        )
        if shown.returncode == 0:
            (package / name).write_bytes(shown.stdout)
    sys.path.insert(0, str(folder))
    try:
        return importlib.import_module("iqm_at_revision.iqm")
    finally:
        sys.path.remove(str(folder))


def slice_sets() -> dict[str, list[np.ndarray]]:
    sets = {f"bench head-like {SIZE}x{SIZE}": head_slices(24)}
    try:
        from app.sample_series import pick_slices

        real, _ = pick_slices(CACHE, "mriqc_0042", "axial", 24)
    except Exception as error:  # no cache and no network: the synthetic slices only
        print(f"real slices skipped: {error}")
        return sets
    sets[f"real T1w {real[0].shape[0]}x{real[0].shape[1]}"] = real
    sets[f"real T1w resized to {SIZE} px"] = [
        ndimage.zoom(s, SIZE / max(s.shape), order=1)[:SIZE, :SIZE] for s in real
    ]
    return sets


def largest_difference(a: dict[str, float], b: dict[str, float]) -> tuple[float, str]:
    """Largest relative difference of two panels (absolute where the value is ~0)."""
    worst = (0.0, "")
    for name, value in a.items():
        diff = abs(value - b[name])
        rel = diff / abs(value) if abs(value) > 1e-9 else diff
        worst = max(worst, (rel, name))
    return worst


def per_slice(fn: Callable[[np.ndarray], object], slices: list[np.ndarray]) -> tuple[float, float]:
    """(wall, CPU) ms per slice; the CPU time is the calling thread's."""
    wall, cpu = time.perf_counter(), time.thread_time()
    for s in slices:
        fn(s)
    n = len(slices)
    return 1000 * (time.perf_counter() - wall) / n, 1000 * (time.thread_time() - cpu) / n


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--against", default="HEAD", help="git revision of the panel before")
    parser.add_argument("--rounds", type=int, default=7, help="timed rounds per panel")
    parser.add_argument(
        "--thread", action="store_true", help="time on a one-worker thread, as the panel is served"
    )
    args = parser.parse_args()
    pool = ThreadPoolExecutor(max_workers=1) if args.thread else None

    def timed(fn: Callable[[np.ndarray], object], slices: list[np.ndarray]) -> tuple[float, float]:
        return pool.submit(per_slice, fn, slices).result() if pool else per_slice(fn, slices)

    with tempfile.TemporaryDirectory() as tmp:
        before = panel_at(args.against, Path(tmp))
    where = "on a worker thread" if pool else "on the main thread"
    print(
        f"model/iqm.py at {args.against} vs the working tree, {where}; "
        f"median of {args.rounds} rounds"
    )
    print()
    print("| slices | before ms | now ms | before / now (wall) | (CPU time) | largest diff |")
    print("|---|---|---|---|---|---|")
    for name, slices in slice_sets().items():
        worst = max(largest_difference(before.compute_iqms(s), iqm.compute_iqms(s)) for s in slices)
        panels = {"before": before.compute_iqms, "now": iqm.compute_iqms}
        times: dict[str, list[tuple[float, float]]] = {"before": [], "now": []}
        for i in range(args.rounds):  # interleaved: both see the same machine load
            for key in ("before", "now") if i % 2 == 0 else ("now", "before"):
                times[key].append(timed(panels[key], slices))
        wall = {k: statistics.median(t[0] for t in v) for k, v in times.items()}
        pairs = list(zip(times["before"], times["now"], strict=True))
        ratio = [statistics.median(b[j] / n[j] for b, n in pairs) for j in (0, 1)]
        print(
            f"| {name} ({len(slices)}) | {wall['before']:.1f} | {wall['now']:.1f} | "
            f"{ratio[0]:.2f} | {ratio[1]:.2f} | {worst[0]:.1e} ({worst[1] if worst[0] else '-'}) |"
        )


if __name__ == "__main__":
    main()
