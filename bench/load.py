"""Load: 1,000 single-slice uploads from 16 concurrent clients against a live ``amaqc up``
(issue 20). A benchmark, not a test: it prints what happened and asserts nothing about time.

The service is started the way users start it, ``amaqc up`` on a free loopback port (SQLite and
the local broker under a temporary data dir; ``--backend postgresql``: a throwaway PostgreSQL
database and an empty Redis database on 127.0.0.1, removed afterwards). The slices (DICOM,
``--size`` px, ``--per-series`` slices per series, sent interleaved so that clients race on
the same series) go to ``POST /api/v1/slices``; a 409 or 503 is sent again after its
Retry-After, as a client should. Then every verdict is awaited in the database and counted
(``tests/utils/load.py``): lost, duplicated, 5xx answers, upload time, drain time (from the
last upload's answer to the last verdict seen).

    .venv/bin/python bench/load.py [--uploads 1000] [--clients 16] [--per-series 10]
        [--size 128] [--backend sqlite|postgresql] [--checkpoint PATH]

Checkpoint: the served ``model/weights/amaqc-default.safetensors`` unless ``--checkpoint``.
Exit status 1 when anything was lost or duplicated or a 5xx came back.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from contextlib import ExitStack
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.service import checkpoint, embedded, log, production, running  # noqa: E402
from tests.utils.load import run_load  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--uploads", type=int, default=1000)
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--per-series", type=int, default=10, help="slices per series")
    parser.add_argument("--size", type=int, default=128, help="slice side, pixels")
    parser.add_argument("--backend", choices=("sqlite", "postgresql"), default="sqlite")
    parser.add_argument("--checkpoint", type=Path, default=None)
    parser.add_argument("--timeout", type=float, default=1800, help="seconds to drain")
    args = parser.parse_args()
    for name in ("uploads", "clients", "per_series", "size"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be >= 1, got {getattr(args, name)}")
    with ExitStack() as cleanup:
        tmp = Path(cleanup.enter_context(tempfile.TemporaryDirectory(prefix="amaqc-load-")))
        ckpt = checkpoint(tmp, args.checkpoint)
        if args.backend == "sqlite":
            backend = embedded(tmp / "data")
        else:
            found = cleanup.enter_context(production(tmp / "data"))
            if found is None:
                log("PostgreSQL + Redis not usable on 127.0.0.1")
                return 2
            backend = found
        log(f"amaqc up ({backend.name}, {ckpt.name})")
        started = time.monotonic()
        with running(backend, ckpt) as service:
            log(f"ready after {time.monotonic() - started:.1f} s")
            result = run_load(
                service.url,
                service.key,
                service.database_url,
                uploads=args.uploads,
                clients=args.clients,
                per_series=args.per_series,
                size=args.size,
                timeout=args.timeout,
                progress=log,
            )
    ok = result.lost == 0 and result.duplicated == 0 and result.server_errors == 0
    print(
        f"backend: {backend.name}; checkpoint {ckpt.name}; {args.size}x{args.size} DICOM "
        f"slices, {args.per_series} per series\n"
        f"| uploads | clients | accepted | retried (409 / 503) | 5xx | lost | duplicated "
        f"| upload s | drain s |\n|---|---|---|---|---|---|---|---|---|\n"
        f"| {result.uploads} | {result.clients} | {result.accepted} "
        f"| {result.retried[409]} / {result.retried[503]} | {result.server_errors} "
        f"| {result.lost} | {result.duplicated} | {result.upload_seconds:.1f} "
        f"| {result.drain_seconds:.1f} |\n\n{result.summary()}\n"
        f"{'OK' if ok else 'FAILED'}: {result.lost} lost, {result.duplicated} duplicated, "
        f"{result.server_errors} 5xx"
    )
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
