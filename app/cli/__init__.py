"""The ``amaqc`` command line: one module per command group, composed here.

Each group module owns a ``typer.Typer()`` and imports only :mod:`.common` (consoles, ``fail``,
progress, settings), so no import runs in a circle (``tests/test_layering.py`` checks). Groups
are added in the order ``amaqc --help`` lists them. Subcommands import their heavy dependencies
(torch, the training package) lazily, so ``--help`` stays fast and the service processes load
only what they need.
"""

from __future__ import annotations

import typer

from amaqc_client import cli as client

from . import about, experiments, fusion, keys, quantize, sample, service, thresholds, training

app = typer.Typer(
    name="amaqc",
    help="Post-scan MRI quality control: label MR slices and series artifact-free or "
    "artifact-affected with AMAResNet.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
# The flat groups' commands are registered on the root itself (not as nameless sub-apps), so
# ``app.registered_commands`` lists every top-level command, in the order ``--help`` shows them.
groups = (
    about.app,
    experiments.app,
    training.app,
    fusion.app,
    quantize.app,
    service.app,
    sample.app,
    client.app,
)
for group in groups:  # client.app: send and watch, the scanner-side client (amaqc_client)
    app.registered_commands += group.registered_commands
app.add_typer(training.data_app, name="data")
app.add_typer(keys.app, name="keys")
app.add_typer(thresholds.app, name="thresholds")


def main() -> None:
    app()
