"""``send``: post files and folders as series, wait for each verdict, and exit for scripts.

Exit codes: 0 every series clean (or, with ``--no-wait``, every series accepted), 3 at least
one series is an artifact, 1 anything went wrong (a file that cannot be read, the server
unreachable or refusing the key, an upload refused, a series that failed or had no verdict in
time). An error wins over an artifact: the printed lines say which series is which.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from rich.console import Console
from rich.markup import escape
from rich.progress import (
    BarColumn,
    DownloadColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TransferSpeedColumn,
)

from .api import Accepted, ApiError, Client, SeriesState
from .files import (
    ACCEPTED,
    BATCH_FILES,
    FileInfo,
    SeriesGroup,
    UnreadableFile,
    batches,
    classify,
    group,
    walk,
)

CLEAN, ERROR, ARTIFACT = 0, 1, 3


@dataclass
class Outcome:
    """What became of one series: accepted (then maybe a verdict) or an error."""

    group: SeriesGroup
    accepted: Accepted | None = None
    state: SeriesState | None = None
    error: str | None = None
    new_instances: int = 0


class SendError(Exception):
    """Nothing can be sent (bad paths, unreadable files, no images)."""


def collect(paths: Sequence[Path]) -> tuple[list[FileInfo], int]:
    """The image files under ``paths`` and how many other files were skipped in folders.

    Raises:
        SendError: a path does not exist, a file cannot be read, a file named on the command
            line is not an image, or there is no image at all.
    """
    infos: list[FileInfo] = []
    skipped, problems = 0, []
    for path in paths:
        if not path.exists():
            raise SendError(f"{path}: no such file or folder")
    named = {p.resolve() for p in paths if not p.is_dir()}
    for path in walk(paths):
        try:
            info = classify(path)
        except UnreadableFile as exc:
            problems.append(str(exc))
            continue
        if info is not None:
            infos.append(info)
        elif path.resolve() in named:
            problems.append(f"{path}: not an image the server takes ({ACCEPTED})")
        else:
            skipped += 1
    if problems:
        more = f" (and {len(problems) - 3} more)" if len(problems) > 3 else ""
        raise SendError("; ".join(problems[:3]) + more)
    if not infos:
        raise SendError(f"no {ACCEPTED} file under {', '.join(map(str, paths))}")
    return infos, skipped


def _progress(console: Console, *, data: bool = False) -> Progress:
    """The bar of uploading (``data``: bytes and speed) or of waiting (series done / all)."""
    counts = (DownloadColumn(), TransferSpeedColumn()) if data else (MofNCompleteColumn(),)
    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        *counts,
        TimeElapsedColumn(),
        console=console,
        transient=False,
    )


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:  # gone since it was read: its upload says so
        return 0


def upload_all(
    client: Client,
    groups: list[SeriesGroup],
    kinds: dict[Path, str],
    console: Console,
    *,
    batch_files: int = BATCH_FILES,
) -> list[Outcome]:
    """Post every group; a wrong key or an unreachable server stops at the first series."""
    outcomes = []
    sizes = {p: _size(p) for g in groups for p in g.files}
    with _progress(console, data=True) as progress:
        task = progress.add_task("uploading", total=sum(sizes.values()))
        for g in groups:
            outcome = Outcome(g)
            start = progress.tasks[0].completed
            try:
                new = 0
                for batch in batches(g.files, sizes, max_files=batch_files):  # big: in parts
                    outcome.accepted = client.upload(
                        batch,
                        series_uid=g.series_uid,
                        kinds=[kinds[p] for p in batch],
                        on_bytes=lambda n: progress.advance(task, n),
                    )
                    new += outcome.accepted.new_instances
                outcome.new_instances = new
            except ApiError as exc:
                if exc.status in (None, 401, 403):
                    raise
                outcome.error = str(exc)
            except OSError as exc:
                outcome.error = f"cannot read a file of this series: {exc}"
            outcomes.append(outcome)  # a refused series counts as done for the bar
            progress.update(task, completed=start + sum(sizes[p] for p in g.files))
    return outcomes


def wait_all(
    client: Client,
    outcomes: list[Outcome],
    console: Console,
    *,
    timeout: float,
    poll: float,
    sleep: Callable[[float], None] = time.sleep,
) -> None:
    """Poll every accepted series until it is done or failed, or ``timeout`` seconds pass."""
    waiting = [o for o in outcomes if o.accepted is not None]
    deadline = time.monotonic() + timeout
    with _progress(console) as progress:
        task = progress.add_task("verdicts", total=len(waiting))
        while waiting:
            for o in list(waiting):
                assert o.accepted is not None
                o.state = client.series(o.accepted.series_id)
                if o.state.finished:
                    waiting.remove(o)
                    progress.advance(task)
            if not waiting:
                break
            if time.monotonic() > deadline:
                for o in waiting:
                    o.error = (
                        f"no verdict within {timeout:g} s (status {o.state and o.state.status})"
                    )
                break
            sleep(poll)


def describe(o: Outcome) -> tuple[str, str]:
    """The word (artifact, clean, failed, error, sent) and the line of one series."""
    where = f" {o.group.where}" if o.group.where else ""
    files = f"{o.group.label}{where} ({len(o.group.files)} files)"
    sid = f"series {o.accepted.series_id}: " if o.accepted else ""
    state = o.state
    if o.error:
        return "error", f"{sid}{files}: {o.error}"
    if state is None or not state.finished:
        assert o.accepted is not None
        return "sent", f"{sid}{files}: accepted, {o.new_instances} new slices"
    if state.status == "failed":
        return "failed", f"{sid}{files}: {state.error or 'the server could not score it'}"
    sign = ">=" if state.label == "artifact" else "<"
    return str(state.label), (
        f"{sid}{files}: probability {state.probability:.3f} {sign} threshold "
        f"{state.threshold:.3f}, {state.flagged} of {state.slices} slices flagged"
    )


_STYLE = {"artifact": "bold red", "clean": "green", "sent": "cyan"}


def report(outcomes: list[Outcome], console: Console) -> int:
    """Print one line per series and the summary; returns the exit code."""
    counts: dict[str, int] = {}
    for o in outcomes:
        word, line = describe(o)
        counts[word] = counts.get(word, 0) + 1
        style = _STYLE.get(word, "bold yellow")
        console.print(f"[{style}]{word:<8}[/] {escape(line)}")
    summary = ", ".join(f"{n} {word}" for word, n in counts.items())
    console.print(f"{len(outcomes)} series: {summary}")
    if counts.get("error") or counts.get("failed"):
        return ERROR
    return ARTIFACT if counts.get("artifact") else CLEAN


def send(
    paths: Sequence[Path],
    *,
    url: str,
    key: str,
    wait: bool = True,
    timeout: float = 600.0,
    poll: float = 1.0,
    scanner: str | None = None,
    batch_files: int = BATCH_FILES,
    out: Console,
    err: Console,
) -> int:
    """The whole command; returns its exit code (messages on ``out`` and ``err``)."""
    try:
        infos, skipped = collect(paths)
    except SendError as exc:
        err.print(f"[bold red]error:[/] {escape(str(exc))}")
        return ERROR
    if skipped:
        err.print(f"skipped {skipped} files that are not {ACCEPTED}")
    groups = group(infos)
    kinds = {i.path: i.kind for i in infos}
    err.print(f"{len(infos)} files in {len(groups)} series")
    try:
        with Client(url, key, scanner=scanner) as client:
            outcomes = upload_all(client, groups, kinds, err, batch_files=batch_files)
            if wait:
                wait_all(client, outcomes, err, timeout=timeout, poll=poll)
    except ApiError as exc:
        err.print(f"[bold red]error:[/] {escape(str(exc))}")
        return ERROR
    code = report(outcomes, out)
    return CLEAN if code == ARTIFACT and not wait else code
