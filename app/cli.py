"""The ``amaqc`` command line.

Subcommands import their heavy dependencies (torch, the training module) lazily, so ``--help``
stays fast and the service processes load only what they need.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

app = typer.Typer(
    name="amaqc",
    help="Post-scan MRI quality control: label MR slices and series artifact-free or "
    "artifact-affected with AMAResNet.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
console = Console(soft_wrap=True)  # one-line messages stay one line (and greppable)
err_console = Console(stderr=True, soft_wrap=True)


def fail(message: str, code: int = 2) -> typer.Exit:
    """Print a one-line error to stderr and return the Exit to raise."""
    err_console.print(f"[bold red]error:[/] {message}")
    return typer.Exit(code)


@app.command()
def version() -> None:
    """Print the installed amaqc version."""
    from model._version import amaqc_version

    console.print(amaqc_version())


@app.command()
def models() -> None:
    """List the registered network architectures and their sizes."""
    from model import build_model, list_models

    table = Table("name", "parameters (M)", "SE", "pyramid", title="amaqc architectures")
    for name in list_models():
        net = build_model(name)
        params = sum(p.numel() for p in net.parameters()) / 1e6
        has_se = any(type(m).__name__ == "SEBasicBlock" for m in net.modules())
        has_pyramid = getattr(net, "pyramid", None) is not None
        table.add_row(
            name, f"{params:.2f}", "yes" if has_se else "-", "yes" if has_pyramid else "-"
        )
    console.print(table)


@app.command()
def info(
    checkpoint: Annotated[Path, typer.Argument(help="A .safetensors checkpoint file.")],
) -> None:
    """Show a checkpoint's metadata (architecture, patching, threshold, metrics)."""
    from model import CheckpointError, read_metadata

    try:
        meta = read_metadata(checkpoint)
    except CheckpointError as exc:
        raise fail(str(exc)) from None
    table = Table("field", "value", title=str(checkpoint), show_lines=False)
    table.add_row("arch", f"{meta.arch} {meta.arch_config}")
    table.add_row("patch", f"{meta.patch_size} px, stride {meta.patch_stride}")
    table.add_row("aggregation", str(meta.aggregation))
    table.add_row("normalization", str(meta.normalization))
    table.add_row("threshold", f"{meta.threshold:.4f} (AMAResNet)")
    fusion = meta.fusion_model
    if fusion is not None:
        table.add_row(
            "fused detector",
            f"threshold {fusion.threshold:.4f} over {len(fusion.features)} features "
            "(served by default; --detector cnn for AMAResNet alone)",
        )
    for key, value in sorted(meta.metrics.items()):
        table.add_row(f"metric {key}", f"{value:.4f}" if isinstance(value, float) else str(value))
    table.add_row("created", f"{meta.created_at} (amaqc {meta.amaqc_version})")
    console.print(table)


# Register data/simulate/train/evaluate/predict (cli_training), ablation/compare
# (cli_experiments), sample-series (cli_sample) and the QC service's migrate/keys/api/worker/up
# (cli_service) on `app` (imported last: they import `app`); cli_keys adds keys
# list/revoke/set-role to cli_service's `keys` group.
from . import (  # noqa: E402, F401
    cli_experiments,
    cli_fusion,
    cli_keys,
    cli_sample,
    cli_service,
    cli_training,
)


def main() -> None:
    app()
