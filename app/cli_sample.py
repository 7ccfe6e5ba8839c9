"""``amaqc sample-series``: a real MR series to send on a first try of the service."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from .cli import app, console, fail


@app.command("sample-series")
def sample_series(
    out_dir: Annotated[Path, typer.Argument(help="Empty folder for the DICOM files.")],
    artifact: Annotated[
        str | None,
        typer.Option(help="Corrupt the slices first: motion, ghosting, spike, gibbs or wrap."),
    ] = None,
    severity: Annotated[str, typer.Option(help="mild, moderate or severe.")] = "severe",
    data: Annotated[
        Path, typer.Option(help="A dataset from `amaqc data build` (real MR slices).")
    ] = Path(".data/ds"),
    slices: Annotated[int, typer.Option(min=1, help="How many slices.")] = 12,
    split: Annotated[str, typer.Option(help="The dataset split the slices come from.")] = "test",
    seed: Annotated[int, typer.Option(help="Seed of the simulated artifact.")] = 0,
) -> None:
    """Write a sample DICOM series: consecutive real MR slices of the prepared dataset (by
    default a subject the served model never trained on), clean or with a simulated artifact,
    as one new series of a made-up patient (AMAQC-SAMPLE). Send it with the printed command."""
    from .sample_series import SampleDataMissing, write_sample_series

    try:
        series = write_sample_series(
            data,
            out_dir,
            artifact=artifact,
            severity=severity,
            count=slices,
            split=split,
            seed=seed,
        )
    except (SampleDataMissing, FileExistsError, ValueError) as exc:
        raise fail(str(exc)) from None
    console.print(f"source: {series.source}")
    console.print("send it (KEY: a scanner or admin key):")
    console.print(
        f'  curl -H "Authorization: Bearer $KEY" '
        f"$(for f in {out_dir}/*.dcm; do printf -- '-F files=@%s ' \"$f\"; done) "
        "http://127.0.0.1:8000/api/v1/series",
        markup=False,
    )
    console.print(
        f"wrote {len(series.files)} DICOM files of series {series.description!r} "
        f"(UID {series.series_uid}) to {out_dir}"
    )
