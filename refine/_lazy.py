"""Module-level ``__getattr__`` for packages that re-export names without importing heavy modules up front."""

from __future__ import annotations

import importlib
from typing import Any, Callable, Mapping


def lazy_getattr(package: str, names: Mapping[str, str]) -> Callable[[str], Any]:
    """A ``__getattr__`` for ``package`` that imports ``names[attr]`` (a module path) on first access of ``attr``.

    Unknown attributes raise ``AttributeError`` naming the package, as Python's own lookup does.
    """

    def __getattr__(name: str) -> Any:
        if name in names:
            return getattr(importlib.import_module(names[name]), name)
        raise AttributeError(f"module {package!r} has no attribute {name!r}")

    return __getattr__


def lazy_exports(package: str, names: Mapping[str, str]) -> tuple[Callable[[str], Any], list[str]]:
    """``(__getattr__, __all__)`` of a package that re-exports ``names`` (attribute -> module path) lazily."""
    return lazy_getattr(package, names), sorted(names)
