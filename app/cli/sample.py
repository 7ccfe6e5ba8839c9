"""``amaqc sample-series``: a real MR series to send on a first try of the service."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from .common import DEFAULT_CACHE, console, fail

app = typer.Typer()


@app.command("sample-series")
def sample_series(
    out_dir: Annotated[Path, typer.Argument(help="Empty folder for the DICOM files.")],
    artifact: Annotated[
        str | None,
        typer.Option(help="Corrupt the slices first: motion, ghosting, spike, gibbs or wrap."),
    ] = None,
    severity: Annotated[str, typer.Option(help="mild, moderate or severe.")] = "severe",
    slices: Annotated[int, typer.Option(min=1, help="How many slices.")] = 12,
    source: Annotated[
        str, typer.Option(help="A source of `amaqc data build` (default: its test subject).")
    ] = "mriqc_0042",
    plane: Annotated[str, typer.Option(help="axial, coronal or sagittal.")] = "axial",
    cache: Annotated[
        Path, typer.Option(help="The source cache of `amaqc data build`.")
    ] = DEFAULT_CACHE,
    seed: Annotated[int, typer.Option(help="Seed of the simulated artifact.")] = 0,
) -> None:
    """Write a sample DICOM series: consecutive real MR slices (by default of the dataset's
    test subject, whom the served model never trained on), clean or with a simulated artifact,
    as one new series of a made-up patient (AMAQC-SAMPLE). Fetches only that source's registry
    package when the cache lacks it. Send the series with the printed command."""
    from app.sample_series import write_sample_series
    from training.data import SourceError

    try:
        series = write_sample_series(
            out_dir,
            cache_dir=cache,
            artifact=artifact,
            severity=severity,
            count=slices,
            source=source,
            plane=plane,
            seed=seed,
            progress=True,
        )
    except (SourceError, FileExistsError, ValueError) as exc:
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
