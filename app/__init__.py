"""The QC service: API, database, queue, worker, web UI."""

import logging

# pydicom's warnings quote the raw value of an element they find invalid, and a damaged header
# can run a UI or LO value into the patient module (PatientName, PatientID): nothing below
# ERROR from pydicom is logged, as patient identifiers never are (DESIGN.md). A filter, not a
# level: importing pydicom sets its logger's level.
logging.getLogger("pydicom").addFilter(lambda record: record.levelno >= logging.ERROR)
