"""Check one STOW-RS part as a DICOM instance amaqc can analyse, or say why not.

The Failure Reason codes are those of PS3.18 Annex I.2.2 (Store Instances Response Failure
Reason Values), plus two general DICOM statuses (PS3.7 Annex C) where they say it better:
0x0124 "Refused: not authorized" and, in the A9xx "does not match" range, 0xA901 for an
instance whose Study Instance UID is not the study of the request URL (as other STOW-RS servers
do). The decoding itself is the one every upload goes through (:func:`app.ingest.decode.decode`).
"""

from __future__ import annotations

import logging
import warnings
from dataclasses import dataclass
from enum import IntEnum
from pathlib import Path

from pydicom.dataset import Dataset
from pydicom.uid import UID

from app.config import Settings
from app.ingest import sniff
from app.ingest.decode import DecodedFile, decode, parse_dicom
from app.ingest.errors import IngestError
from app.ingest.uploads import IncomingFile

from .multipart import DICOM, Part

logger = logging.getLogger(__name__)


class FailureReason(IntEnum):
    PROCESSING_FAILURE = 0x0110
    SOP_CLASS_NOT_SUPPORTED = 0x0122
    NOT_AUTHORIZED = 0x0124
    OUT_OF_RESOURCES = 0xA700
    DOES_NOT_MATCH_SOP_CLASS = 0xA900
    NOT_IN_REQUESTED_STUDY = 0xA901
    CANNOT_UNDERSTAND = 0xC000
    TRANSFER_SYNTAX_NOT_SUPPORTED = 0xC122


@dataclass(frozen=True)
class Rejected:
    """A part that will not be stored, with its identifiers when they could be read."""

    part: int
    reason: FailureReason
    detail: str
    sop_class_uid: str | None = None
    sop_instance_uid: str | None = None


@dataclass(frozen=True)
class Header:
    """What the part says it is, read without decoding any pixel."""

    sop_class_uid: str | None
    sop_instance_uid: str | None
    study_instance_uid: str | None
    series_instance_uid: str | None
    transfer_syntax_uid: str | None
    sop_class_name: str
    has_pixels: bool


@dataclass(frozen=True)
class Accepted:
    """A part that decoded as an analysable DICOM image."""

    part: int
    header: Header
    decoded: DecodedFile


def read_header(path: Path, dataset: Dataset | None = None) -> Header | None:
    """The part's identifiers, or None when it is not parseable as DICOM at all (``dataset``:
    the part as :func:`app.ingest.decode.parse_dicom` read it, instead of reading it again)."""
    import pydicom

    from training.data.dicom_reader import has_pixel_data

    try:
        if dataset is not None:
            ds = dataset
        else:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                ds = pydicom.dcmread(path, force=True, defer_size="64 KB")
        meta = ds.file_meta

        def text(value: object) -> str | None:
            return str(value).strip() or None if value is not None else None

        sop_class = text(ds.get("SOPClassUID") or meta.get("MediaStorageSOPClassUID"))
        sop_instance = text(ds.get("SOPInstanceUID") or meta.get("MediaStorageSOPInstanceUID"))
        return Header(
            sop_class_uid=sop_class,
            sop_instance_uid=sop_instance,
            study_instance_uid=text(ds.get("StudyInstanceUID")),
            series_instance_uid=text(ds.get("SeriesInstanceUID")),
            transfer_syntax_uid=text(meta.get("TransferSyntaxUID")),
            sop_class_name=UID(sop_class).name if sop_class else "unknown",
            has_pixels=has_pixel_data(ds),
        )
    except Exception:
        return None


def decodable(transfer_syntax_uid: str) -> bool:
    """Whether pydicom (with the pylibjpeg plugins) can decode pixel data in this syntax."""
    from pydicom.pixels.decoders.base import get_decoder

    try:
        return bool(get_decoder(transfer_syntax_uid).is_available)
    except (NotImplementedError, ValueError):
        return False


def _refusal(part: Part, header: Header | None, study_uid: str | None) -> Rejected | None:
    """The first reason, from the header alone, not to store this part."""
    name = f"part {part.index}"

    def rejected(reason: FailureReason, detail: str) -> Rejected:
        uids = (header.sop_class_uid, header.sop_instance_uid) if header else (None, None)
        return Rejected(part.index, reason, f"{name}: {detail}", *uids)

    if part.content_type != DICOM:
        return rejected(
            FailureReason.CANNOT_UNDERSTAND, f"content type {part.content_type} is not {DICOM}"
        )
    if header is None or not header.sop_instance_uid:
        return rejected(FailureReason.CANNOT_UNDERSTAND, _not_an_instance(part.path))
    if study_uid is not None and header.study_instance_uid != study_uid:
        return rejected(
            FailureReason.NOT_IN_REQUESTED_STUDY,
            f"found Study Instance UID {header.study_instance_uid or '(none)'}; expected "
            f"{study_uid}, the study of the URL",
        )
    if not header.has_pixels and "Image" not in header.sop_class_name:
        return rejected(
            FailureReason.SOP_CLASS_NOT_SUPPORTED,
            f"SOP class {header.sop_class_name} is not an image; amaqc analyses images only",
        )
    ts = header.transfer_syntax_uid
    if header.has_pixels and ts and not decodable(ts):
        return rejected(
            FailureReason.TRANSFER_SYNTAX_NOT_SUPPORTED,
            f"transfer syntax {UID(ts).name} cannot be decoded here; expected one with a "
            "decoder, e.g. Explicit VR Little Endian (uncompressed)",
        )
    if not header.series_instance_uid:
        return rejected(FailureReason.DOES_NOT_MATCH_SOP_CLASS, "has no Series Instance UID")
    return None


def _not_an_instance(path: Path) -> str:
    if sniff.is_dicom(path):
        return "found a DICOM dataset without a SOP Instance UID; expected a DICOM instance"
    what, _ = sniff.found_in(path)
    return f"found {what}; expected a DICOM instance ({DICOM})"


def _decode_failure(exc: IngestError) -> FailureReason:
    if exc.status_code == 413:
        return FailureReason.OUT_OF_RESOURCES  # over AMAQC_MAX_PIXELS
    if "no pixel data" in exc.detail:  # an image object without its pixels
        return FailureReason.DOES_NOT_MATCH_SOP_CLASS
    return FailureReason.CANNOT_UNDERSTAND  # truncated, corrupt, undecodable pixels


def check_part(
    part: Part, settings: Settings, study_uid: str | None, *, min_side: int | None = None
) -> Accepted | Rejected:
    """Decode and validate the part completely, or say why it is refused (``min_side``: as
    :func:`app.ingest.decode.decode` takes it, looked up once for a request's parts).

    A part is parsed once: the dataset its header comes from is the one decoded. A part that
    does not parse whole or has no pixel data has its header read on its own, as before, so
    that its refusal says the same."""
    dataset = parse_dicom(part.path) if part.content_type == DICOM else None
    header = read_header(part.path, dataset)
    refusal = _refusal(part, header, study_uid)
    if refusal is not None:
        return refusal
    assert header is not None
    uids = (header.sop_class_uid, header.sop_instance_uid)
    try:
        decoded = decode(
            IncomingFile(f"part {part.index}", part.path),
            settings,
            min_side=min_side,
            dataset=dataset,
        )
    except IngestError as exc:
        return Rejected(part.index, _decode_failure(exc), exc.detail, *uids)
    except Exception as exc:  # a bug or a library surprise: refuse this instance, keep the rest
        logger.warning("part %d: unexpected %s while decoding", part.index, type(exc).__name__)
        detail = f"part {part.index}: processing failure"
        return Rejected(part.index, FailureReason.PROCESSING_FAILURE, detail, *uids)
    if decoded.ext != ".dcm":
        found = f"found a {sniff.FORMAT_NAMES[decoded.ext]} file; expected a DICOM instance"
        return Rejected(
            part.index, FailureReason.CANNOT_UNDERSTAND, f"part {part.index}: {found}", *uids
        )
    return Accepted(part.index, header, decoded)
