"""The QC service: API, database, queue, worker, web UI."""

import logging
import warnings


def _below_error(record: logging.LogRecord) -> bool:
    return record.levelno >= logging.ERROR


def keep_patients_out_of_logs() -> None:
    """pydicom's warnings quote the raw value of an element they find invalid, and a damaged
    header can run a UI or LO value into the patient module (PatientName, PatientID): nothing
    below ERROR from pydicom is logged (a filter, not a level: importing pydicom sets its
    logger's level), and its UserWarnings, the same text on stderr, are not shown. Patient
    identifiers are never logged (DESIGN.md). Run on import of ``app``."""
    pydicom_logger = logging.getLogger("pydicom")
    if _below_error not in pydicom_logger.filters:
        pydicom_logger.addFilter(_below_error)
    warnings.filterwarnings("ignore", category=UserWarning, module=r"pydicom(\.|$)")


keep_patients_out_of_logs()
