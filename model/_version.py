"""The installed amaqc version, recorded in every checkpoint."""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version


def amaqc_version() -> str:
    try:
        return version("amaqc")
    except PackageNotFoundError:  # running from a source tree without `pip install -e .`
        return "0+unknown"
