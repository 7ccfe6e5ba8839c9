"""A series' acquisition family: echo-planar (EPI: diffusion, BOLD fMRI) or not.

The fused detector's probabilities do not sit on one scale across readouts: an echo-planar
slice (low resolution, N/2 ghosting and susceptibility distortion by design, a noisy
background) reads a much lower regression logit when clean than a T1 does, and the panel's
rise for the same visible artifact starts from there. One threshold for both is set by
whichever family's clean slices reach highest; a threshold per family, each chosen by the same
pooled rule on that family's validation slices, flags more of the other family's artifacts
for the same false-alarm bound (``docs/model-card.md``). Torch-free: the service's ingest and
``training`` share it.

Where the family comes from, first that answers:

1. the DICOM header: Scanning Sequence (0018,0020) holding ``EP``, or Echo Planar Pulse
   Sequence (0018,9018) ``YES`` (enhanced MR), or an Image Type (0008,0008) holding
   ``DIFFUSION``: echo-planar; a Scanning Sequence without ``EP`` (``SE``, ``GR``, ``IR``,
   ...) or Echo Planar Pulse Sequence ``NO``: not echo-planar, unless a name says otherwise (2);
2. the names a series carries (Sequence Name, Protocol Name, Series Description, or an
   upload's ``protocol`` field): a word such as ``ep2d``, ``epi``, ``dwi``, ``dti``, ``bold``,
   ``fmri`` or ``diffusion`` (whole words only: ``epilepsy`` is not one) says echo-planar, even
   beside a Scanning Sequence of ``SE`` alone (some vendors write that for a spin-echo EPI); a
   name never says "not echo-planar" (a missing word proves nothing);
3. otherwise unknown: the model's pooled threshold applies.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any, Final

__all__ = [
    "ACQUISITIONS",
    "ACQUISITION_LABELS",
    "EPI",
    "NON_EPI",
    "from_header",
    "from_names",
    "of_contrast",
    "validate",
]

EPI: Final = "epi"
NON_EPI: Final = "non_epi"
#: the families a threshold may be set for
ACQUISITIONS: Final = (EPI, NON_EPI)
#: how a reader sees each family
ACQUISITION_LABELS: Final = {
    EPI: "echo-planar (diffusion, fMRI)",
    NON_EPI: "not echo-planar (spin / gradient echo: T1, T2, FLAIR, PD)",
}
#: whole words in a sequence, protocol or series name that say echo-planar
_EPI_WORDS: Final = frozenset(
    {
        "epi",
        "ep2d",
        "ep3d",
        "dwi",
        "dti",
        "dki",
        "hardi",
        "bold",
        "fmri",
        "rsfmri",
        "diff",
        "diffusion",
        "tensor",
    }
)
_WORD: Final = re.compile(r"[a-z0-9]+")
#: Siemens Sequence Name of an EPI readout: ``*epfid2d1_64``, ``*ep_b1000t``, ``epse2d1_...``
_EPI_SEQUENCE_NAME: Final = re.compile(r"^\*?ep(fid|se|_|2d|3d|i)", re.IGNORECASE)
#: training contrasts (``training.data.sources.Source.contrast``) acquired echo-planar
_EPI_CONTRASTS: Final = frozenset({"dwi", "dwi-b0", "epi", "bold", "fmri"})


def validate(acquisition: str) -> str:
    """``acquisition`` if it is one of :data:`ACQUISITIONS`, else a ValueError naming them."""
    if acquisition not in ACQUISITIONS:
        raise ValueError(
            f"unknown acquisition family {acquisition!r}; one of {', '.join(ACQUISITIONS)}"
        )
    return acquisition


def _values(value: Any) -> list[str]:
    if value is None or value == "":
        return []
    if isinstance(value, str | bytes):
        items: Iterable[Any] = [value]
    elif hasattr(value, "__iter__"):
        items = value
    else:
        items = [value]
    out: list[str] = []
    for item in items:
        text = item.decode(errors="replace") if isinstance(item, bytes) else str(item)
        out.extend(p.strip().upper() for p in text.split("\\") if p.strip())
    return out


def from_names(*names: str | None) -> str | None:
    """:data:`EPI` when a name is an EPI sequence name or holds an echo-planar word, else None
    (a name never proves a series is not echo-planar)."""
    for name in names:
        if not name:
            continue
        if _EPI_SEQUENCE_NAME.match(name.strip()):
            return EPI
        if _EPI_WORDS.intersection(_WORD.findall(name.casefold().replace("_", " "))):
            return EPI
    return None


def from_header(ds: Any) -> str | None:
    """The family of a pydicom Dataset (read with ``stop_before_pixels``), else None."""
    scanning = _values(ds.get("ScanningSequence"))
    epi_flag = _values(ds.get("EchoPlanarPulseSequence"))
    image_type = _values(ds.get("ImageType"))
    if "EP" in scanning or "YES" in epi_flag or "DIFFUSION" in image_type:
        return EPI
    named = from_names(
        *(
            str(ds.get(k) or "") or None
            for k in ("SequenceName", "PulseSequenceName", "ProtocolName", "SeriesDescription")
        )
    )
    if named is not None:
        return named
    if scanning or "NO" in epi_flag:
        return NON_EPI
    return None


def of_contrast(contrast: str) -> str:
    """The family of a training source's contrast (``"T1"``, ``"DWI-b0"``, ``"EPI"``, ...)."""
    return EPI if contrast.strip().casefold() in _EPI_CONTRASTS else NON_EPI
