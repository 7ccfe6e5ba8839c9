"""``amaqc version``, ``models`` and ``info``: what is installed and what a checkpoint holds."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from model.acquisition import ACQUISITION_LABELS

from .common import console, fail

app = typer.Typer()


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
            f"threshold {fusion.threshold:.4f} over {len(fusion.features)} features"
            + "".join(f", or {h.feature} alone where higher" for h in fusion.either)
            + " (served by default; --detector cnn for AMAResNet alone)",
        )
        for family, value in sorted(fusion.acquisition_thresholds.items()):
            table.add_row(
                f"threshold for {family}",
                f"{value:.4f} ({ACQUISITION_LABELS.get(family, family)} series)",
            )
    if meta.spectral:
        table.add_row("spectral network", spectral_summary(meta.spectral))
    if meta.arch == "amaresnet18":
        table.add_row("int8 network", int8_summary(checkpoint))
    for key, value in sorted(meta.metrics.items()):
        table.add_row(f"metric {key}", f"{value:.4f}" if isinstance(value, float) else str(value))
    table.add_row("created", f"{meta.created_at} (amaqc {meta.amaqc_version})")
    console.print(table)


def int8_summary(checkpoint: Path) -> str:
    """Whether a CPU worker serves ``checkpoint``'s network as int8 (with
    AMAQC_INFERENCE_PRECISION=auto): an accepted record for these bytes in the export cache or
    shipped beside the file, a rejected one, or none."""
    from model.backends import cache_folder, file_digest
    from model.int8 import MAX_AUC_CHANGE, first_accepted, int8_folders, read_record

    digest = file_digest(checkpoint)
    folders = int8_folders(checkpoint, cache_folder(checkpoint))
    found = first_accepted(folders, digest)
    if found is not None:
        path, record = found
        return (
            f"accepted (largest held-out ROC-AUC change {record.worst_change:.4f} < "
            f"{MAX_AUC_CHANGE}): CPU workers serve {path}"
        )
    for folder in folders:
        stored = read_record(folder, digest)
        if stored is not None:
            worst = "n/a" if stored.worst_change is None else f"{stored.worst_change:.4f}"
            return f"not served (record in {folder}: largest change {worst}); float32"
    return "none measured for this file (`amaqc quantize --data DIR`); float32"


def spectral_summary(description: dict[str, Any]) -> str:
    """One line on the spectral network a checkpoint carries: one network's training recipe, or
    an ensemble's size and each member's."""
    from training.fit.spectral import recipe

    info = description.get("info") or {}
    members = info.get("members") or []
    if int(description.get("members", 1)) > 1:
        each = "; ".join(recipe(m) for m in members) or "recipes not recorded"
        return f"ensemble of {description['members']} networks (mean logit): {each}"
    return f"1 network: {recipe(info)}"
