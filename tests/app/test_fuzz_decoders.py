"""Hostile input: mutated valid files through the decoders ingest uses (issue 20).

Every seed of ``tests/app/corpus`` (DICOM explicit / implicit bare / RLE, PNG, JPEG, NIfTI,
NIfTI gzip, a ZIP of them; ``tests/utils/corpus.py`` makes them) is mutated by hypothesis:
bytes flipped, the file cut short, bytes inserted or removed, header fields (sizes, bit depths,
data types, offsets, ZIP sizes and methods, ...) overwritten with garbage. Each result goes
through what an upload goes through -- :func:`app.ingest.uploads.receive` (ZIP expansion) and
:func:`app.ingest.decode.decode` (sniffing, header checks, every slice decoded) -- and through
``training.data.read_slices``. The only failures allowed are the decoders' own:
:class:`IngestError` with a 4xx status (the API answers it as is) and
:class:`UnreadableImage`; any other exception fails the test, and a hang hits the timeout.

The examples are derandomised (the same ones in every run, so CI is repeatable); set
``AMAQC_FUZZ_EXAMPLES`` to try more per seed (default 150) and ``AMAQC_FUZZ_RANDOM=1`` for new
ones each run, e.g. for a longer local run: ``AMAQC_FUZZ_EXAMPLES=2000 AMAQC_FUZZ_RANDOM=1
.venv/bin/python -m pytest -s tests/app/test_fuzz_decoders.py``.
"""

from __future__ import annotations

import gzip
import io
import os
import struct
import tempfile
import zlib
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from app.config import Settings
from app.ingest.decode import decode
from app.ingest.errors import IngestError
from app.ingest.uploads import receive
from tests.utils.corpus import CORPUS, Field, fields_of, seeds
from training.data import UnreadableImage, read_slices

#: pydicom and nibabel warn about most damaged headers: the outcome is what is checked
pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")
EXAMPLES = int(os.environ.get("AMAQC_FUZZ_EXAMPLES", "150"))
RANDOM = os.environ.get("AMAQC_FUZZ_RANDOM", "") == "1"  # new examples each run
MIN_SIDE = 16  # below the seeds' 32 px: an unmutated seed is accepted whole
SEEDS = sorted(p.name for p in CORPUS.iterdir())
#: values that make parsers take their edge paths, written little endian at a field's size
EDGES = (0, 1, 2, 7, 8, 15, 16, 17, 0x7F, 0x80, 0xFF, 0x7FFF, 0x8000, 0xFFFF, 0x7FFFFFFF, 2**32 - 1)


def _settings(data_dir: Path) -> Settings:
    return Settings(data_dir=data_dir, max_upload_mb=1, max_unzipped_mb=4, sweep_interval_seconds=0)


def ingest_outcome(name: str, data: bytes) -> str:
    """``"accepted"`` or ``"refused <status>"`` for ``data`` uploaded as ``name`` alone;
    any exception other than a 4xx :class:`IngestError` propagates."""
    with tempfile.TemporaryDirectory() as tmp:
        config = _settings(Path(tmp))
        try:
            for item in receive([(name, io.BytesIO(data))], Path(tmp), config):
                decode(item, config, min_side=MIN_SIDE)
        except IngestError as exc:
            assert 400 <= exc.status_code < 500, (exc.status_code, exc.detail)
            assert exc.detail.strip(), "a refusal without a message"
            return f"refused {exc.status_code}"
    return "accepted"


def reader_outcome(name: str, data: bytes) -> str:
    """``"read"`` or ``"unreadable"`` for ``training.data.read_slices`` on ``data`` saved as
    ``name``; any other exception propagates."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / name
        path.write_bytes(data)
        try:
            slices = read_slices(path)
        except UnreadableImage as exc:
            assert str(exc).startswith(f"{name}: "), str(exc)
            return "unreadable"
    assert slices and all(s.pixels.ndim == 2 for s in slices)
    return "read"


def _fix_png_crc(buf: bytearray) -> None:
    """Recompute IHDR's CRC so that a garbage field reaches the decoder, not the CRC check."""
    if len(buf) >= 33 and buf[12:16] == b"IHDR":
        buf[29:33] = struct.pack(">I", zlib.crc32(bytes(buf[12:29])))


@st.composite
def mutations(draw: st.DrawFn, name: str, data: bytes, fields: list[Field]) -> bytes:
    """``data`` with one kind of damage: flipped bytes, a cut, a splice, garbage fields."""
    packed = name.endswith(".gz")
    kind = draw(st.sampled_from(("flip", "truncate", "splice", "field", "field")))
    if kind == "field":  # header fields are inside the gzip of a .nii.gz
        buf = bytearray(gzip.decompress(data) if packed else data)
        for offset, size in draw(st.lists(st.sampled_from(fields), min_size=1, max_size=3)):
            garbage = draw(
                st.one_of(
                    st.binary(min_size=size, max_size=size),
                    st.sampled_from(EDGES).map(
                        lambda v, n=size: (v % 256**n).to_bytes(n, "little")  # type: ignore[misc]
                    ),
                )
            )
            buf[offset : offset + size] = garbage
        if name.endswith(".png") and draw(st.booleans()):
            _fix_png_crc(buf)
        return gzip.compress(bytes(buf), mtime=0) if packed else bytes(buf)
    buf = bytearray(data)
    if kind == "flip":
        for _ in range(draw(st.integers(1, 8))):
            at = draw(st.integers(0, len(buf) - 1))
            buf[at] ^= draw(st.integers(1, 255))
    elif kind == "truncate":
        del buf[draw(st.integers(0, len(buf) - 1)) :]
    else:
        at = draw(st.integers(0, len(buf)))
        cut = draw(st.integers(0, 64))
        buf[at : at + cut] = draw(st.binary(max_size=64))
    return bytes(buf)


def test_every_seed_is_a_valid_upload() -> None:
    """The mutations start from files that ingest and the reader accept whole."""
    assert sorted(seeds()) == SEEDS, "tests/app/corpus differs from tests/utils/corpus.py"
    for name in SEEDS:
        data = (CORPUS / name).read_bytes()
        assert ingest_outcome(name, data) == "accepted", name
        if not name.endswith(".zip"):
            assert reader_outcome(name, data) == "read", name


@pytest.mark.timeout(300)
@pytest.mark.parametrize("name", SEEDS)
def test_mutated_files_are_refused_with_a_4xx_or_accepted(
    name: str, record_property: Callable[[str, object], None]
) -> None:
    seed = (CORPUS / name).read_bytes()
    fields = fields_of(name, gzip.decompress(seed) if name.endswith(".gz") else seed)
    outcomes: Counter[str] = Counter()

    @settings(
        max_examples=EXAMPLES,
        deadline=None,  # no timing assertion; a hang hits the timeout above
        derandomize=not RANDOM,
        database=None,
        suppress_health_check=[HealthCheck.too_slow],
    )
    @given(mutations(name, seed, fields))
    def check(data: bytes) -> None:
        outcomes[ingest_outcome(name, data)] += 1
        if not name.endswith(".zip"):
            outcomes[f"reader {reader_outcome(name, data)}"] += 1

    check()
    tried = outcomes["accepted"] + sum(n for k, n in outcomes.items() if k.startswith("refused"))
    print(f"[fuzz] {name}: {tried} mutated files, {dict(sorted(outcomes.items()))}")
    record_property("fuzz_tried", tried)
    record_property("fuzz_outcomes", dict(outcomes))
    assert any(k.startswith("refused") for k in outcomes), "no mutation was refused: not fuzzing"
