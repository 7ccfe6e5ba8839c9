"""What every ``amaqc`` command group shares: the consoles, :func:`fail`, the progress bar, the
default checkpoint and cache, and the service's ``--data-dir`` settings and schema upgrade.

The bottom of the ``app.cli`` package: it imports no command module, so the groups import it
and ``app/cli/__init__.py`` imports the groups, and no import runs in a circle.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

if TYPE_CHECKING:
    from app.config import Settings

console = Console(soft_wrap=True)  # one-line messages stay one line (and greppable)
err_console = Console(stderr=True, soft_wrap=True)

DEFAULT_CACHE = Path(".data/cache")

DataDir = Annotated[
    Path | None,
    typer.Option("--data-dir", help="Data folder (default $AMAQC_DATA_DIR or ./.amaqc)."),
]


def fail(message: str, code: int = 2) -> typer.Exit:
    """Print a one-line error to stderr and return the Exit to raise."""
    err_console.print(f"[bold red]error:[/] {message}")
    return typer.Exit(code)


def progress_bar() -> Progress:
    """The progress bar of every long command: description, bar, n/N, info, elapsed, remaining."""
    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[info]}"),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=console,
        transient=False,
    )


def progress_tasks(bar: Progress) -> Callable[[str, int], Callable[[int], None]]:
    """The ``progress(description, total) -> advance(n)`` callback long library calls take
    (``run_fusion_experiment``, ``run_quantisation``): each call adds a task to ``bar``."""

    def progress(description: str, total: int) -> Callable[[int], None]:
        task = bar.add_task(description, total=total, info="")
        return lambda n: bar.advance(task, n)

    return progress


def require_dataset(data: Path) -> None:
    """Refuse (exit 2) a ``--data`` folder that ``amaqc data build`` did not make."""
    if not (data / "manifest.csv").is_file():
        raise fail(f"{data}: not a dataset folder (no manifest.csv); run `amaqc data build {data}`")


def default_checkpoint() -> Path:
    """The checkpoint shipped in the repository and served by default."""
    import model

    return Path(model.__file__).parent / "weights" / "amaqc-default.safetensors"


def load_settings(data_dir: Path | None = None) -> Settings:
    """Settings from the environment, with ``--data-dir`` taking precedence."""
    from app.config import get_settings

    if data_dir is not None:
        os.environ["AMAQC_DATA_DIR"] = str(data_dir)
    get_settings.cache_clear()
    try:
        return get_settings()
    except ValueError as exc:
        raise fail(f"invalid AMAQC_ settings: {exc}") from None


def upgrade_schema(url: str) -> None:
    """Bring the database at ``url`` up to date (Alembic)."""
    from app.migrate import upgrade

    upgrade(url)
