"""The API's decode of one upload, before and after "each DICOM file parsed once" (issue 18).

Times :func:`app.ingest.decode.decode` -- sniffing, the pixel-count check, every slice
decoded, the SHA-256, the DICOM identifiers: what the API does for each received file before
it stores anything -- over the files of one series: by default 24 slices of 256x256 uint16
DICOM, made as ``bench/service.py`` posts them, or the files of ``--series DIR`` (e.g. written
by ``amaqc sample-series DIR --slices 24``). "before" is ``app/ingest/decode.py`` as of
``--before`` (default: the commit before the change), loaded from git next to today's module;
everything both call (the sniffing, the reader, the hashing) is today's code, so the
difference is the decode module's alone. The machine may be busy: before and after run
interleaved in one process (their order alternates each round), and the medians of the rounds
are printed, of the wall time and of the process's CPU time, with the ``pydicom.dcmread``
calls each needs per file.

``--api`` also times whole uploads, ``POST /api/v1/series`` through FastAPI's TestClient in
this process (the multipart parse, receiving, decoding, storing, the embedded SQLite database
and local broker of a temporary data dir, a tiny checkpoint as the active model; the CPU time
includes the client's few ms of building the request), with ``app.ingest.handle.decode``
swapped for the before's; a new Series and SOP Instance UIDs every upload. ``--production``:
on a throwaway PostgreSQL database and an empty Redis database on 127.0.0.1 instead (as
``bench/service.py`` makes them), the backends of docs/performance.md's 107 ms.

    .venv/bin/python bench/ingest_decode.py [--rounds 15] [--before REF] [--series DIR]
        [--api [--production]]
"""

from __future__ import annotations

import argparse
import importlib.util
import io
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
import warnings
from collections.abc import Callable
from contextlib import ExitStack
from pathlib import Path
from types import ModuleType
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # tests.utils: the phantom and DICOM factory the tests use

import pydicom  # noqa: E402
from pydicom.uid import UID  # noqa: E402

from app.config import Settings  # noqa: E402
from app.ingest import decode as after  # noqa: E402
from app.ingest.uploads import IncomingFile  # noqa: E402
from tests.utils.images import phantom  # noqa: E402
from tests.utils.service import dicom_bytes  # noqa: E402

BEFORE = "da67b49"  # the last commit whose decode parsed each DICOM file three times
SLICES, SIZE = 24, 256
MIN_SIDE = 16  # the detector's smallest side, given: no database is looked at


def load_before(ref: str) -> ModuleType:
    """``app/ingest/decode.py`` as of ``ref``, as a module of the ``app.ingest`` package."""
    source = subprocess.run(
        ["git", "show", f"{ref}:app/ingest/decode.py"],
        cwd=ROOT,
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    name = "app.ingest._decode_before"
    spec = importlib.util.spec_from_loader(name, loader=None)
    assert spec is not None
    module = importlib.util.module_from_spec(spec)
    module.__file__ = f"{ref}:app/ingest/decode.py"
    sys.modules[name] = module
    exec(compile(source, module.__file__, "exec"), module.__dict__)
    return module


def series(folder: Path | None) -> list[bytes]:
    if folder is not None:
        return [p.read_bytes() for p in sorted(folder.iterdir()) if p.is_file()]
    uid = f"2.25.{uuid.uuid4().int}"
    return [
        dicom_bytes(phantom(SIZE, seed=i), series_uid=uid, instance=i + 1) for i in range(SLICES)
    ]


def decode_all(
    module: ModuleType, files: list[bytes], workdir: Path, settings: Settings
) -> tuple[float, float]:
    """(wall s, CPU s) to decode ``files`` as one upload; writing them is not timed."""
    paths = []
    for i, data in enumerate(files):
        path = workdir / f"part{i}"
        path.write_bytes(data)
        paths.append(path)
    wall, cpu = time.perf_counter(), time.process_time()
    decoded = [
        module.decode(IncomingFile(f"{i}.dcm", p), settings, min_side=MIN_SIDE)
        for i, p in enumerate(paths)
    ]
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    for d in decoded:
        d.path.unlink()
    return wall, cpu


def parses_per_file(
    module: ModuleType, files: list[bytes], workdir: Path, settings: Settings
) -> float:
    calls = 0
    real: Callable[..., Any] = pydicom.dcmread

    def counting(*args: Any, **kwargs: Any) -> Any:
        nonlocal calls
        calls += 1
        return real(*args, **kwargs)

    pydicom.dcmread = counting
    try:
        decode_all(module, files, workdir, settings)
    finally:
        pydicom.dcmread = real
    return calls / len(files)


def api_rounds(
    variants: dict[str, ModuleType],
    files: list[bytes],
    workdir: Path,
    rounds: int,
    production: bool,
) -> tuple[dict[str, list[float]], dict[str, list[float]]] | None:
    """(wall ms, CPU ms) of ``rounds`` uploads of the series per variant, interleaved; None
    when ``production`` and PostgreSQL or Redis is not usable."""
    with ExitStack() as stack:
        backend: dict[str, str] = {}
        if production:
            from service import production as throwaway  # bench/service.py

            made = stack.enter_context(throwaway(workdir))
            if made is None:
                return None
            backend = {
                "database_url": made.database_url,
                "broker_url": made.env["AMAQC_BROKER_URL"],
            }
        return _api_rounds(variants, files, workdir, rounds, backend)


def _api_rounds(
    variants: dict[str, ModuleType],
    files: list[bytes],
    workdir: Path,
    rounds: int,
    backend: dict[str, str],
) -> tuple[dict[str, list[float]], dict[str, list[float]]]:
    from fastapi.testclient import TestClient

    from app.api.main import app
    from app.config import get_settings
    from app.db import repo
    from app.db.session import session_scope
    from app.ingest import handle
    from app.migrate import upgrade
    from app.model_versions import register_checkpoint
    from tests.utils.service import tiny_checkpoint

    settings = Settings(
        data_dir=workdir / "api",
        checkpoint=tiny_checkpoint(workdir / "tiny.safetensors"),
        sweep_interval_seconds=0,
        database_url=backend.get("database_url", ""),
        broker_url=backend.get("broker_url", ""),
    )
    upgrade(settings.database_url)
    with session_scope(settings.database_url) as session:
        register_checkpoint(session, settings.checkpoint)
        _, key = repo.create_api_key(session, "bench", "scanner")
    headers = {"Authorization": f"Bearer {key}"}
    wall: dict[str, list[float]] = {k: [] for k in variants}
    cpu: dict[str, list[float]] = {k: [] for k in variants}
    app.dependency_overrides[get_settings] = lambda: settings
    real = handle.decode  # type: ignore[attr-defined]
    try:
        with TestClient(app) as client:

            def upload(variant: str) -> tuple[float, float]:
                setattr(handle, "decode", variants[variant].decode)  # noqa: B010
                uid = f"2.25.{uuid.uuid4().int}"
                parts = [
                    ("files", (f"{i}.dcm", _renamed(data, uid, i), "application/dicom"))
                    for i, data in enumerate(files)
                ]
                w, c = time.perf_counter(), time.process_time()
                r = client.post("/api/v1/series", files=parts, headers=headers)
                w, c = time.perf_counter() - w, time.process_time() - c
                assert r.status_code == 202, r.text
                return w * 1000, c * 1000

            for variant in variants:  # warm
                upload(variant)
            for r in range(rounds):
                for variant in list(variants) if r % 2 == 0 else list(reversed(variants)):
                    w, c = upload(variant)
                    wall[variant].append(w)
                    cpu[variant].append(c)
    finally:
        setattr(handle, "decode", real)  # noqa: B010
        app.dependency_overrides.clear()
    return wall, cpu


def _renamed(data: bytes, series_uid: str, index: int) -> bytes:
    """``data`` as a file of series ``series_uid`` with a SOP Instance UID of its own."""
    ds = pydicom.dcmread(io.BytesIO(data), force=True)
    ds.StudyInstanceUID = series_uid + ".0"
    ds.SeriesInstanceUID = series_uid
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = UID(f"{series_uid}.{index + 1}")
    out = io.BytesIO()
    ds.save_as(out, enforce_file_format=ds.preamble is not None)
    return out.getvalue()


def table(
    variants: dict[str, ModuleType],
    wall: dict[str, list[float]],
    cpu: dict[str, list[float]],
    parses: dict[str, float] | None = None,
) -> None:
    count = "| dcmread per file " if parses else ""
    print(f"| {count}| ms per upload, wall (median, min-max) | CPU ms (median) |")
    print("|---" * (4 if parses else 3) + "|")
    for key in variants:
        w = wall[key]
        print(
            f"| {key} "
            + (f"| {parses[key]:g} " if parses else "")
            + f"| {statistics.median(w):.1f} ({min(w):.1f}-{max(w):.1f})"
            f" | {statistics.median(cpu[key]):.1f} |"
        )
    ratios = [a / b for a, b in zip(wall["after"], wall["before"], strict=True)]
    print(
        f"after / before, wall: median of the rounds' ratios {statistics.median(ratios):.2f}; "
        f"CPU: {statistics.median(cpu['after']) / statistics.median(cpu['before']):.2f}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--before", default=BEFORE, help="git ref of the old decode.py")
    parser.add_argument("--series", type=Path, help="a folder of DICOM files (default: made)")
    parser.add_argument("--api", action="store_true", help="also time whole uploads")
    parser.add_argument(
        "--production", action="store_true", help="--api on PostgreSQL + Redis (127.0.0.1)"
    )
    args = parser.parse_args()
    warnings.simplefilter("ignore")
    variants = {"before": load_before(args.before), "after": after}
    files = series(args.series)
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        settings = Settings(data_dir=workdir / "data", sweep_interval_seconds=0)
        parses = {k: parses_per_file(m, files, workdir, settings) for k, m in variants.items()}
        for module in variants.values():  # warm: imports, pydicom's caches
            decode_all(module, files, workdir, settings)
        wall: dict[str, list[float]] = {k: [] for k in variants}
        cpu: dict[str, list[float]] = {k: [] for k in variants}
        for r in range(args.rounds):
            order = list(variants) if r % 2 == 0 else list(reversed(variants))
            for key in order:
                w, c = decode_all(variants[key], files, workdir, settings)
                wall[key].append(w * 1000)
                cpu[key].append(c * 1000)
        api = (
            api_rounds(variants, files, workdir, args.rounds, args.production) if args.api else None
        )
    shape = pydicom.dcmread(io.BytesIO(files[0]), stop_before_pixels=True)
    print(
        f"{len(files)} DICOM files of {shape.Rows}x{shape.Columns}, "
        f"{shape.file_meta.TransferSyntaxUID.name}; before = decode.py of {args.before}; "
        f"{args.rounds} rounds, interleaved"
    )
    print("\ndecode() of every file of one upload:")
    table(variants, wall, cpu, parses)
    if api is not None:
        where = "PostgreSQL + Redis" if args.production else "SQLite + local broker"
        print(f"\nPOST /api/v1/series of the series (TestClient, {where}):")
        table(variants, *api)
    elif args.api:
        print("\nPOST /api/v1/series: PostgreSQL or Redis on 127.0.0.1 not usable, not timed")


if __name__ == "__main__":
    main()
