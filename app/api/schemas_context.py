"""The patient and study context of a series (from its DICOM header, ``app/ingest/context.py``)
as the API and the web UI show it: to radiographer and admin keys only, never to a scanner key,
with patient names left out where ``AMAQC_HIDE_PATIENT_NAMES`` says so. Never logged."""

from __future__ import annotations

from typing import TYPE_CHECKING

from pydantic import BaseModel, Field

if TYPE_CHECKING:
    from app.db.models import Series, Study

#: the roles that see patient and study context (a scanner key never does)
CONTEXT_ROLES = ("radiographer", "admin")


class SeriesContextPublic(BaseModel):
    """What the DICOM header says about the patient, the study and the series (null: the tag
    was absent, or the series came without a DICOM header)."""

    patient_id: str | None = Field(description="PatientID")
    patient_name: str | None = Field(
        description="PatientName as 'Family, Given'; null when names_hidden"
    )
    names_hidden: bool = Field(description="Patient names are hidden by AMAQC_HIDE_PATIENT_NAMES")
    accession_number: str | None = Field(description="AccessionNumber")
    study_description: str | None = Field(description="StudyDescription")
    series_description: str | None = Field(description="SeriesDescription")
    protocol_name: str | None = Field(description="ProtocolName")
    station_name: str | None = Field(description="StationName")
    manufacturer: str | None = Field(description="Manufacturer")
    manufacturer_model: str | None = Field(description="ManufacturerModelName")
    acquired_at: str | None = Field(
        description="AcquisitionDateTime (else the acquisition, series or study date and time) "
        "as ISO text in the scanner's local time: DICOM times carry no zone"
    )


def series_context(
    series: Series, study: Study | None, *, role: str, hide_names: bool
) -> SeriesContextPublic | None:
    """The context of ``series`` for a caller of ``role``: None unless the role is one of
    :data:`CONTEXT_ROLES`."""
    if role not in CONTEXT_ROLES:
        return None
    return SeriesContextPublic(
        patient_id=study.patient_id if study else None,
        patient_name=None if hide_names or study is None else study.patient_name,
        names_hidden=hide_names,
        accession_number=study.accession_number if study else None,
        study_description=study.study_description if study else None,
        series_description=series.series_description,
        protocol_name=series.protocol_name,
        station_name=series.station_name,
        manufacturer=series.manufacturer,
        manufacturer_model=series.manufacturer_model,
        acquired_at=series.acquired_at,
    )
