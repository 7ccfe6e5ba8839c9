"""Parse a labels sheet (``.csv`` or ``.xlsx``) into rows of (key, label, group, split).

Column names are matched case-insensitively after turning spaces and hyphens into ``_``.
The key is a file column when there is one (then a patient column, if any, is the group),
else a patient id column. A sheet with no usable key or label column, or with two candidates
for one role, is refused with a ``ValueError`` that lists the columns found.
"""

from __future__ import annotations

import csv
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

FILE_COLUMNS = ("file", "filename", "file_name", "image", "image_name", "path", "file_path")
PATIENT_COLUMNS = ("patient", "patient_id", "patientid", "subject", "subject_id")
GENERIC_ID_COLUMNS = ("id",)  # only when no patient column is more specific
LABEL_COLUMNS = ("label", "artifact", "artefact", "class", "has_artifact")
SPLIT_COLUMNS = ("split", "set", "subset")

_LABEL_VALUES = {
    "0": 0, "1": 1, "clean": 0, "artifact": 1, "artefact": 1, "no": 0, "yes": 1,
    "n": 0, "y": 1, "false": 0, "true": 1,
}  # fmt: skip
_SPLIT_VALUES = {
    "train": "train", "training": "train", "val": "val", "valid": "val",
    "validation": "val", "dev": "val", "test": "test", "testing": "test",
}  # fmt: skip
KeyKind = Literal["file", "patient"]


@dataclass(frozen=True)
class LabelRow:
    """One labelled row; ``row`` is its 1-based line/row number in the sheet."""

    row: int
    key: str
    label: int
    group: str | None = None
    split: str | None = None


def read_label_sheet(sheet: Path) -> tuple[list[LabelRow], KeyKind]:
    """Rows with a key and a label (blank ones are dropped) and what the key names.

    Raises:
        ValueError: unreadable sheet, unidentifiable columns, or a label value that is not
            0/1, clean/artifact, yes/no or true/false.
    """
    table = _read_table(sheet)
    if not table:
        raise ValueError(f"{sheet.name}: the sheet is empty")
    header, body = table[0][1], table[1:]
    names = [_column_name(h) for h in header]
    found = ", ".join(repr(h) for h in header if h.strip()) or "none"

    def pick(role: str, candidates: tuple[str, ...]) -> int | None:
        hits = [i for i, name in enumerate(names) if name in candidates]
        if len(hits) > 1:
            both = " and ".join(repr(header[i]) for i in hits)
            raise ValueError(f"{sheet.name}: ambiguous {role} column ({both}); columns: {found}")
        return hits[0] if hits else None

    file_col = pick("file", FILE_COLUMNS)
    patient_col = pick("patient id", PATIENT_COLUMNS)
    if patient_col is None:
        patient_col = pick("patient id", GENERIC_ID_COLUMNS)
    label_col = pick("label", LABEL_COLUMNS)
    split_col = pick("split", SPLIT_COLUMNS)
    key_col = file_col if file_col is not None else patient_col
    if key_col is None:
        raise ValueError(
            f"{sheet.name}: no file column ({', '.join(FILE_COLUMNS)}) or patient id column "
            f"({', '.join(PATIENT_COLUMNS + GENERIC_ID_COLUMNS)}); columns found: {found}"
        )
    if label_col is None:
        raise ValueError(
            f"{sheet.name}: no label column ({', '.join(LABEL_COLUMNS)}); columns found: {found}"
        )
    group_col = patient_col if file_col is not None else None

    rows: list[LabelRow] = []
    for number, cells in body:
        key = _cell(cells, key_col)
        label_text = _cell(cells, label_col).lower()
        if not key or not label_text:
            continue  # blank row or no label yet: its files count as unlabelled
        if label_text not in _LABEL_VALUES:
            raise ValueError(
                f"{sheet.name} row {number}: label {_cell(cells, label_col)!r} is not one of "
                "0/1, clean/artifact, yes/no, true/false"
            )
        group = _cell(cells, group_col) if group_col is not None else ""
        split = _cell(cells, split_col).lower() if split_col is not None else ""
        rows.append(
            LabelRow(
                row=number,
                key=key,
                label=_LABEL_VALUES[label_text],
                group=group or None,
                split=_SPLIT_VALUES.get(split, split) or None,
            )
        )
    return rows, "file" if file_col is not None else "patient"


def _column_name(header: str) -> str:
    return "_".join(header.strip().lower().replace("-", " ").split())


def _cell(cells: list[str], col: int | None) -> str:
    return cells[col].strip() if col is not None and col < len(cells) else ""


def _text(value: object) -> str:
    """A cell as text; spreadsheet numbers 12.0 -> "12", booleans -> "true"/"false"."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def _read_table(sheet: Path) -> list[tuple[int, list[str]]]:
    """Non-blank rows as (1-based row number, cells as text)."""
    suffix = sheet.suffix.lower()
    if suffix not in (".csv", ".xlsx"):
        raise ValueError(f"{sheet.name}: labels must be a .csv or .xlsx file")
    try:
        raw: Sequence[Sequence[object]] = (
            _read_csv(sheet) if suffix == ".csv" else _read_xlsx(sheet)
        )
    except Exception as exc:  # bad encoding, not a zip, ...: name the sheet, hide the library
        reason = f"{type(exc).__name__}: {exc}"
        raise ValueError(f"{sheet.name}: cannot read the sheet ({reason})") from exc
    table = [(i, [_text(v) for v in row]) for i, row in enumerate(raw, start=1)]
    return [(i, cells) for i, cells in table if any(c.strip() for c in cells)]


def _read_csv(sheet: Path) -> list[list[str]]:
    with sheet.open(encoding="utf-8-sig", newline="") as fh:
        sample = fh.read(8192)
        fh.seek(0)
        try:  # Excel writes ';' in many locales
            dialect: type[csv.Dialect] | csv.Dialect = csv.Sniffer().sniff(sample, ",;\t")
        except csv.Error:
            dialect = csv.excel
        return list(csv.reader(fh, dialect))


def _read_xlsx(sheet: Path) -> list[list[object]]:
    import openpyxl  # only needed for spreadsheets

    workbook = openpyxl.load_workbook(sheet, read_only=True, data_only=True)
    try:
        return [list(row) for row in workbook.worksheets[0].iter_rows(values_only=True)]
    finally:
        workbook.close()
