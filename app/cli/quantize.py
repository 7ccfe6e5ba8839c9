"""``amaqc quantize``: the int8 export of a checkpoint, accepted only by issue 18's rule."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.table import Table

from .common import (
    console,
    default_checkpoint,
    fail,
    progress_bar,
    progress_tasks,
    require_dataset,
)

if TYPE_CHECKING:
    from model.int8 import Int8Record

app = typer.Typer()


@app.command("quantize")
def quantize(
    data: Annotated[
        Path, typer.Option(help="Dataset from `amaqc data build` (train, test, transfer, ...).")
    ] = Path(".data/ds"),
    checkpoint: Annotated[
        Path | None, typer.Option(help="The checkpoint to quantise (default: served).")
    ] = None,
    cache_dir: Annotated[
        Path | None,
        typer.Option(help="Export cache (default: .amaqc-onnx/ next to the checkpoint)."),
    ] = None,
    calibration: Annotated[
        int, typer.Option(min=1, help="Calibration patches from the train split's stream.")
    ] = 512,
    keep_float: Annotated[
        list[str] | None,
        typer.Option(help="Node-name prefix left in float32 (repeat; default /stem /fc)."),
    ] = None,
    split: Annotated[
        list[str] | None,
        typer.Option(help="Held-out split to check (repeat; default: test transfer xsim msim)."),
    ] = None,
    ship: Annotated[
        bool,
        typer.Option(
            help="Write the int8 export into int8/ beside the checkpoint (committed with it, "
            "so every install serves it) instead of the export cache; other checkpoints' int8 "
            "files there are removed."
        ),
    ] = False,
) -> None:
    """Quantise a checkpoint's network to int8 (ONNX Runtime, static, QDQ) on calibration
    patches of the train split, score every held-out split with float32 and int8, and accept
    int8 only if no AMAResNet ROC-AUC (all slices; clean + moderate / severe) moves by 0.005 or
    more. Writes the int8 export and its record into the export cache (or, with --ship, into
    int8/ beside the checkpoint) under the checkpoint's SHA-256; only an accepted one is served
    (AMAQC_INFERENCE_PRECISION=auto or int8). Exits 1 when int8 is rejected (the record says
    why; no int8 file is kept).
    """
    from model.int8 import DEFAULT_KEEP_FLOAT
    from training.experiments.quantize import HELD_OUT, run_quantisation

    ckpt = checkpoint or default_checkpoint()
    if not ckpt.is_file():
        raise fail(f"{ckpt}: no such checkpoint")
    require_dataset(data)
    with progress_bar() as bar:
        progress = progress_tasks(bar)
        try:
            record, path = run_quantisation(
                data,
                ckpt,
                cache_dir=cache_dir,
                splits=split or HELD_OUT,
                calibration=calibration,
                keep_float=keep_float if keep_float is not None else DEFAULT_KEEP_FLOAT,
                ship=ship,
                progress=progress,
            )
        except (ValueError, FileNotFoundError) as exc:
            raise fail(str(exc)) from None
        except OSError as exc:  # an export cache that cannot be written
            raise fail(f"cannot write the export cache: {exc}") from None
    report(record, path)
    if not record.accepted:
        raise typer.Exit(1)


def report(record: Int8Record, path: Path) -> None:
    """Print what ``amaqc quantize`` measured: the AUC table, the network's speed, and whether
    int8 was accepted (``path``: the record written)."""
    from model.int8 import MAX_AUC_CHANGE

    table = Table("split", "ROC-AUC", "slices", "float32", "int8", "change")
    for auc in record.aucs:
        style = "" if abs(auc.change) < MAX_AUC_CHANGE else "bold red"
        table.add_row(
            auc.split,
            auc.metric,
            str(auc.slices),
            f"{auc.float32:.4f}",
            f"{auc.int8:.4f}",
            f"[{style}]{auc.change:+.4f}[/]" if style else f"{auc.change:+.4f}",
        )
    console.print(table)
    speed = record.speed
    if speed:
        console.print(
            f"network only: float32 {speed['float32']:.1f} slices/s, int8 {speed['int8']:.1f} "
            f"slices/s ({speed['int8'] / speed['float32']:.2f}x); {record.float_nodes} nodes "
            f"kept in float32; probe difference {record.probe_difference:.4f}"
        )
    worst = record.worst_change
    if not record.accepted:
        console.print(
            f"int8 rejected: largest ROC-AUC change {worst if worst is None else f'{worst:.4f}'} "
            f"(rule: < {MAX_AUC_CHANGE}); serving stays float32; record {path}"
        )
        return
    console.print(
        f"int8 accepted: largest ROC-AUC change {worst:.4f} (rule: < {MAX_AUC_CHANGE}); "
        f"wrote {path.with_suffix('.onnx')} and {path}"
    )
