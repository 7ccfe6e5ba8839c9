"""``amaqc keys create / list / revoke / set-role``: the service's API keys.

Revoking a key or changing its role ends every web UI session of the key at once
(``app.db.web_sessions``). ``app/cli/__init__.py`` adds this group to the root as ``keys``.
"""

from __future__ import annotations

from typing import Annotated

import typer
from rich.table import Table

from .common import DataDir, console, fail, load_settings, upgrade_schema

app = typer.Typer(help="Create, list and revoke API keys, change their role.", no_args_is_help=True)

KeyId = Annotated[int, typer.Argument(help="The key's id (amaqc keys list).")]


@app.command("create")
def keys_create(
    role: Annotated[str, typer.Option(help="scanner, radiographer or admin.")],
    name: Annotated[str, typer.Option(help="Who or what uses the key.")],
    data_dir: DataDir = None,
) -> None:
    """Create an API key and print it once, alone on the last line (only its hash is stored)."""
    from app.db import repo
    from app.db.session import session_scope

    settings = load_settings(data_dir)
    upgrade_schema(settings.database_url)
    try:
        with session_scope(settings.database_url) as session:
            key, plain = repo.create_api_key(session, name, role)
            key_id = key.id
    except ValueError as exc:
        raise fail(str(exc)) from None
    console.print(f"created {role} key {key_id} for {name!r}; it is shown only now:")
    print(plain, flush=True)


@app.command("list")
def keys_list(data_dir: DataDir = None) -> None:
    """Every key (revoked ones too) with its role and open web UI sessions; never the key."""
    from sqlalchemy import select

    from app.db import web_sessions
    from app.db.models import ApiKey
    from app.db.session import session_scope

    settings = load_settings(data_dir)
    upgrade_schema(settings.database_url)
    table = Table("id", "name", "role", "prefix", "created", "revoked", "sessions")
    with session_scope(settings.database_url) as session:
        keys = list(session.scalars(select(ApiKey).order_by(ApiKey.id)))
        for key in keys:
            table.add_row(
                str(key.id),
                key.name,
                key.role,
                key.prefix,
                f"{key.created_at:%Y-%m-%d %H:%M}",
                "yes" if key.revoked else "",
                str(web_sessions.count_sessions(session, key.id)),
            )
    console.print(table)
    console.print(f"{len(keys)} key(s)")


def _change(data_dir: DataDir, key_id: int, what: str, role: str | None = None) -> None:
    from app.db import web_sessions
    from app.db.models import ApiKey
    from app.db.session import session_scope

    settings = load_settings(data_dir)
    upgrade_schema(settings.database_url)
    try:
        with session_scope(settings.database_url) as session:
            key = session.get(ApiKey, key_id)
            if key is None:
                raise fail(f"no API key with id {key_id} (amaqc keys list shows them)")
            if role is None:
                ended = web_sessions.revoke_api_key(session, key)
            else:
                ended = web_sessions.set_api_key_role(session, key, role)
            name = key.name
    except ValueError as exc:
        raise fail(str(exc)) from None
    console.print(f"key {key_id} {name!r} {what}; {ended} web UI session(s) ended")


@app.command("revoke")
def keys_revoke(key_id: KeyId, data_dir: DataDir = None) -> None:
    """Revoke a key: it authenticates nothing more and its web UI sessions end at once."""
    _change(data_dir, key_id, "revoked")


@app.command("set-role")
def keys_set_role(
    key_id: KeyId,
    role: Annotated[str, typer.Option(help="scanner, radiographer or admin.")],
    data_dir: DataDir = None,
) -> None:
    """Change a key's role; its web UI sessions end at once (sign in again for the new role)."""
    _change(data_dir, key_id, f"is now {role}", role)
