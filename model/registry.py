"""Name -> builder registry, so that the architecture name stored in a checkpoint maps back to
the code that builds it (the pattern of timm's ``register_model``)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from torch import nn

Builder = Callable[..., nn.Module]
_B = TypeVar("_B", bound=Builder)
_REGISTRY: dict[str, Builder] = {}


def register_model(name: str) -> Callable[[_B], _B]:
    """Decorator registering ``builder(*, in_channels, num_classes, **cfg) -> nn.Module``."""

    def decorator(builder: _B) -> _B:
        if name in _REGISTRY:
            raise ValueError(f"model name {name!r} is already registered")
        _REGISTRY[name] = builder
        return builder

    return decorator


def _register_builtin() -> None:
    """Import the modules that register the built-in networks (``model/__init__`` is lazy, so
    a caller that reaches this module directly may not have imported them yet)."""
    from . import baselines, resnet  # noqa: F401


def list_models() -> list[str]:
    """Names accepted by :func:`build_model`, sorted."""
    _register_builtin()
    return sorted(_REGISTRY)


def build_model(name: str, *, in_channels: int = 1, num_classes: int = 2, **cfg: Any) -> nn.Module:
    """Build a registered network by name.

    Raises:
        ValueError: unknown ``name`` (the message lists the known ones) or an option the builder
            does not accept.
    """
    _register_builtin()
    try:
        builder = _REGISTRY[name]
    except KeyError:
        known = ", ".join(list_models())
        raise ValueError(f"unknown model {name!r}; known models: {known}") from None
    return builder(in_channels=in_channels, num_classes=num_classes, **cfg)
