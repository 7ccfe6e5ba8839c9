"""The patient, study and series context of a new series, from its DICOM header
(:func:`app.dicom_header.header_context`): written on the Study and Series rows when the series
is created, shown to radiographer and admin roles only, never logged.

Files without a DICOM header (PNG, JPEG, NIfTI) carry no context; a study keeps the first
values it was given (a later series of the same study fills only what is still empty).

The series' acquisition family (``model.acquisition``; it picks the model's threshold for the
family, ``app/db/thresholds.py``) comes from the header where there is one, and from the names
the series carries: an upload's ``protocol`` form field (also beside a header: a word such as
``ep2d`` or ``bold`` says echo-planar there as in a header's names, and a name never says "not
echo-planar") or, without a header, a series description the file gave. Every path that creates
a series (``/series``, ``/slices``, STOW-RS, the C-STORE listener) comes through
:func:`fill_context`.
"""

from __future__ import annotations

from sqlalchemy.orm import Session

from app.db.models import Series, Study
from app.dicom_header import HeaderContext, header_context
from model.acquisition import EPI, from_names

from .decode import DecodedFile

_STUDY_FIELDS = ("patient_id", "patient_name", "accession_number", "study_description")
_SERIES_FIELDS = (
    "series_description",
    "protocol_name",
    "station_name",
    "manufacturer",
    "manufacturer_model",
    "acquired_at",
)


def first_header(files: list[DecodedFile]) -> HeaderContext | None:
    """The context of the first DICOM file of ``files`` (None when there is none)."""
    import pydicom
    from pydicom.errors import InvalidDicomError

    for decoded in files:
        if decoded.ext != ".dcm":
            continue
        try:
            ds = pydicom.dcmread(decoded.path, stop_before_pixels=True, force=True)
        except (InvalidDicomError, OSError, ValueError, EOFError):
            continue
        return header_context(ds)
    return None


def fill_context(
    session: Session, series: Series, files: list[DecodedFile], *, scanner_given: bool
) -> None:
    """Write the header context of ``files`` on a new ``series`` and on its study (fields the
    study already has are kept). The scanner is named from the header (ManufacturerModelName,
    else StationName, else Manufacturer) unless the upload's form named it (``scanner_given``).
    ``series.protocol`` (the form's ``protocol``, else the first file's series description) is
    read as one of the names that may say the series is echo-planar."""
    context = first_header(files)
    series.acquisition = acquisition_of(context, series.protocol)
    if context is None:
        session.flush()
        return
    for name in _SERIES_FIELDS:
        setattr(series, name, getattr(context, name))
    if not scanner_given and context.scanner:
        series.scanner = context.scanner
    study = session.get(Study, series.study_id) if series.study_id is not None else None
    if study is not None:
        for name in _STUDY_FIELDS:
            if getattr(study, name) is None:
                setattr(study, name, getattr(context, name))
    session.flush()


def acquisition_of(context: HeaderContext | None, protocol: str | None) -> str | None:
    """The acquisition family of a new series: the header's when it says echo-planar; else
    echo-planar when ``protocol`` names it (``model.acquisition.from_names``); else the
    header's (``non_epi`` or None). The header's names were read by ``from_header`` already."""
    header_says = context.acquisition if context is not None else None
    if header_says == EPI:
        return EPI
    return from_names(protocol) or header_says
