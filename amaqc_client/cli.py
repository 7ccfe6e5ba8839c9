"""``amaqc-client send`` / ``watch``; the full install has the same commands as ``amaqc send`` /
``amaqc watch`` (``app/cli`` adds these commands to its root).

Importing this module loads typer and rich only; each command imports httpx and pydicom when
it runs, so ``amaqc --help`` stays fast.
"""

from __future__ import annotations

from pathlib import Path
from types import ModuleType
from typing import Annotated

import typer
from rich.console import Console

app = typer.Typer(
    name="amaqc-client",
    help="Send MR images to an amaqc server and print each series' verdict.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

Url = Annotated[
    str,
    typer.Option(
        "--url", envvar="AMAQC_URL", help="The amaqc server (also $AMAQC_URL).", show_default=True
    ),
]
Key = Annotated[
    str,
    typer.Option(
        "--key",
        envvar="AMAQC_API_KEY",
        help="A scanner (or admin) API key; $AMAQC_API_KEY keeps it off the command line.",
        show_default=False,
    ),
]
Scanner = Annotated[
    str | None,
    typer.Option(
        help="The scanner's name, sent with every series (default: the DICOM header's; "
        "a PNG or NIfTI has none). Per-scanner thresholds match it."
    ),
]
BatchFiles = Annotated[
    int,
    typer.Option(
        min=1,
        help="Files per upload: a bigger series goes in several uploads to the same series "
        "(the server takes AMAQC_MAX_FILES, 2000, and AMAQC_MAX_UPLOAD_MB, 512, per request; "
        "an upload also stops at 200 MB).",
    ),
]
DEFAULT_URL = "http://127.0.0.1:8000"


def _needs_httpx() -> ModuleType:
    """The send module, or a one-line error where httpx is missing (a full amaqc install
    without its ``client`` extra)."""
    try:
        from . import send
    except ModuleNotFoundError as exc:
        if exc.name != "httpx":
            raise
        Console(stderr=True, soft_wrap=True).print(
            "error: the client needs httpx: pip install 'amaqc[client]' "
            "(or the light client: pip install ./client)",
            markup=False,
        )
        raise typer.Exit(1) from None
    return send


@app.command("send")
def send_command(
    paths: Annotated[list[Path], typer.Argument(help="Files and folders (searched recursively).")],
    url: Url = DEFAULT_URL,
    key: Key = "",
    wait: Annotated[
        bool, typer.Option("--wait/--no-wait", help="Wait for and print each verdict.")
    ] = True,
    timeout: Annotated[
        float, typer.Option(min=1, help="Seconds to wait for all verdicts.")
    ] = 600.0,
    scanner: Scanner = None,
    batch_files: BatchFiles = 500,
) -> None:
    """Post files and folders as series (DICOM grouped by SeriesInstanceUID; the PNG / JPEG
    slices of a folder, a NIfTI volume or a ZIP each as one series), then print each series'
    verdict. Exit code: 0 all clean, 3 any artifact, 1 an error (scripts can branch on it)."""
    send = _needs_httpx().send

    code = send(
        paths,
        url=url,
        key=key,
        wait=wait,
        timeout=timeout,
        scanner=scanner,
        batch_files=batch_files,
        out=Console(soft_wrap=True),
        err=Console(stderr=True, soft_wrap=True),
    )
    raise typer.Exit(code)


@app.command("watch")
def watch_command(
    export_dir: Annotated[Path, typer.Argument(help="The folder the scanner exports to.")],
    url: Url = DEFAULT_URL,
    key: Key = "",
    quiet_seconds: Annotated[
        float,
        typer.Option(min=0, help="Post a series once none of its files changed for this long."),
    ] = 10.0,
    spool: Annotated[
        Path | None,
        typer.Option(
            help="Folder of the spool (default ~/.amaqc-client/spool-<hash of EXPORT_DIR>)."
        ),
    ] = None,
    max_backoff: Annotated[
        float, typer.Option(min=1, help="Longest wait in seconds between tries of a series.")
    ] = 300.0,
    poll: Annotated[float, typer.Option(min=0.05, help="Seconds between scans.")] = 1.0,
    scanner: Scanner = None,
    batch_files: BatchFiles = 500,
) -> None:
    """Post each series written to EXPORT_DIR once its files stop changing, and log its
    verdict. Series wait in a local spool while the server is down (tried again with
    exponential backoff, also after a restart); none is sent twice; patient data is never
    logged. Stop with Ctrl-C or SIGTERM."""
    _needs_httpx()
    from .run import run_watch

    raise typer.Exit(
        run_watch(
            export_dir,
            url=url,
            key=key,
            quiet_seconds=quiet_seconds,
            spool_dir=spool,
            max_backoff=max_backoff,
            poll=poll,
            scanner=scanner,
            batch_files=batch_files,
        )
    )


def main() -> None:
    app()
