"""``amaqc thresholds set / list / remove``: per-scanner and per-protocol decision thresholds.

Like ``amaqc keys``, these work on the service's database directly (``--data-dir`` or
``AMAQC_DATABASE_URL``): whoever may run them there is an admin. Over HTTP the same is
``/api/v1/thresholds`` with an admin key. ``app/cli/__init__.py`` adds this group as
``thresholds``; ``amaqc calibrate --protocol`` learns a row from the reviews.
"""

from __future__ import annotations

from typing import Annotated

import typer
from rich.table import Table

from .common import DataDir, console, fail, load_settings, upgrade_schema

app = typer.Typer(
    help="Decision thresholds per scanner and / or protocol (most specific wins).",
    no_args_is_help=True,
)


@app.command("set")
def thresholds_set(
    value: Annotated[float, typer.Argument(help="A slice at or above it is flagged (0..1).")],
    protocol: Annotated[
        str, typer.Option(help="ProtocolName or SeriesDescription ('' for any).")
    ] = "",
    scanner: Annotated[
        str, typer.Option(help="StationName or the scanner shown in the worklist ('' for any).")
    ] = "",
    data_dir: DataDir = None,
) -> None:
    """Set (or replace) the threshold of a protocol, a scanner, or that scanner's protocol."""
    from app.db import thresholds
    from app.db.session import session_scope

    settings = load_settings(data_dir)
    upgrade_schema(settings.database_url)
    try:
        with session_scope(settings.database_url) as session:
            row = thresholds.set_threshold(
                session,
                scanner=scanner,
                protocol=protocol,
                value=value,
                origin="admin",
                set_by="amaqc thresholds set",
            )
            shown = _scope(row.scanner, row.protocol)
            row_id = row.id
    except ValueError as exc:
        raise fail(str(exc)) from None
    console.print(f"threshold {row_id}: {shown} -> {value:g}")


@app.command("list")
def thresholds_list(data_dir: DataDir = None) -> None:
    """Every threshold row, and the active model version's own threshold."""
    from app.db import repo, thresholds
    from app.db.session import session_scope

    settings = load_settings(data_dir)
    upgrade_schema(settings.database_url)
    table = Table("id", "scanner", "protocol", "threshold", "origin", "set by", "updated")
    with session_scope(settings.database_url) as session:
        rows = thresholds.list_thresholds(session)
        for row in rows:
            origin = row.origin
            if row.details.get("model_version"):
                origin += f" ({row.details['model_version']})"
            table.add_row(
                str(row.id),
                row.scanner or "any",
                row.protocol or "any",
                f"{row.value:.4g}",
                origin,
                row.set_by,
                f"{row.updated_at:%Y-%m-%d %H:%M}",
            )
        version = repo.active_model_version(session)
        model = f"{version.threshold:.4g} ({version.name})" if version else "none active"
        families = (version.acquisition_thresholds or {}) if version else {}
        if families:
            per_family = ", ".join(f"{k} {float(v):.4g}" for k, v in sorted(families.items()))
            model += f"; for a series of a known acquisition family: {per_family}"
    console.print(table)
    console.print(f"{len(rows)} threshold(s); elsewhere the model's own: {model}")


@app.command("remove")
def thresholds_remove(
    threshold_id: Annotated[int, typer.Argument(help="The row's id (amaqc thresholds list).")],
    data_dir: DataDir = None,
) -> None:
    """Remove a threshold row: its series fall back to the next matching one."""
    from app.db import thresholds
    from app.db.session import session_scope

    settings = load_settings(data_dir)
    upgrade_schema(settings.database_url)
    with session_scope(settings.database_url) as session:
        if not thresholds.remove_threshold(session, threshold_id):
            raise fail(f"no threshold {threshold_id} (amaqc thresholds list)")
    console.print(f"removed threshold {threshold_id}")


def _scope(scanner: str, protocol: str) -> str:
    return f"scanner {scanner or 'any'}, protocol {protocol or 'any'}"
