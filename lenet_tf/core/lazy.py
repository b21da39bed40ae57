"""Lazy re-exports for a subpackage's ``__init__``: a name is imported from its module on first use, so that
importing one light module of a package (``lenet_tf.training.presets`` for ``--help``) loads nothing heavy."""

from __future__ import annotations

import importlib
from collections.abc import Callable


def lazy_exports(package: str, names: dict[str, str]) -> Callable[[str], object]:
    """A module ``__getattr__`` for ``package`` that imports ``names[name]`` (a submodule) when ``name`` is asked.

    Args:
      package: the package's ``__name__``.
      names: exported name -> the submodule, relative to ``package``, that defines it.
    """

    def __getattr__(name: str) -> object:
        if name not in names:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        return getattr(importlib.import_module(f"{package}.{names[name]}"), name)

    return __getattr__
