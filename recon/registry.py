"""String-keyed registries (the point-cloud ``LOADERS``): a second registration of a name is an error."""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


def register(registry: dict[str, T], name: str) -> Callable[[T], T]:
    """Decorator adding ``obj`` to ``registry`` under ``name``; a second registration is an error."""

    def deco(obj: T) -> T:
        if name in registry:
            raise KeyError(f"{name!r} is already registered")
        registry[name] = obj
        return obj

    return deco


def lookup(registry: dict[str, T], name: str, kind: str) -> T:
    """Fetch ``registry[name]`` or raise ``ValueError`` naming the valid choices."""
    try:
        return registry[name]
    except KeyError:
        raise ValueError(f"unknown {kind} {name!r}; expected one of {sorted(registry)}") from None
