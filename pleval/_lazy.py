"""Names of a package imported on first use (PEP 562 module ``__getattr__``), so that importing
the package loads none of its heavy submodules."""

from __future__ import annotations

import importlib
import sys
from typing import Any, Callable, Mapping


def lazy_getattr(package: str, names: Mapping[str, str],
                 computed: Mapping[str, Callable[[], Any]] | None = None) -> Callable[[str], Any]:
    """A module ``__getattr__`` for ``package``: a name of ``names`` is imported from the
    submodule it maps to (relative to ``package``: ``"estimate"`` is ``package.estimate``,
    ``".outputs"`` the parent's ``outputs``); a name of ``computed`` is its function's value;
    any other name is tried as a submodule not imported yet (``pleval.report.to_pdf``). The
    value is then bound on the module, so each name is resolved once."""
    computed = computed or {}

    def __getattr__(name: str) -> Any:
        if name in computed:
            value = computed[name]()
        elif name in names:
            value = getattr(importlib.import_module(f".{names[name]}", package), name)
        elif name.startswith("__"):
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        else:
            try:
                return importlib.import_module(f".{name}", package)
            except ModuleNotFoundError as exc:
                if exc.name != f"{package}.{name}":
                    raise
                raise AttributeError(f"module {package!r} has no attribute {name!r}") from None
        setattr(sys.modules[package], name, value)
        return value

    return __getattr__
