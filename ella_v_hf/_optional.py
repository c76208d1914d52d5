"""Optional dependencies: import them where needed, with an error that names the ``pip install`` line."""

from __future__ import annotations

import importlib
from types import ModuleType


class MissingDependencyError(ImportError):
    """An optional package some command needs is not installed; the message names the install line."""


def require(module: str, extra: str, purpose: str) -> ModuleType:
    """Import ``module`` or explain how to install it.

    Args:
        module: Import name (e.g. ``"accelerate"``).
        extra: The ella-v-hf extra that installs it (``train``, ``eval``, ``plot``, ``textgrid``).
        purpose: What needs it, for the message (e.g. ``"ella-v train"``).

    Raises:
        MissingDependencyError: ``module`` cannot be imported.
    """
    try:
        return importlib.import_module(module)
    except ImportError as error:
        raise MissingDependencyError(
            f"{purpose} needs the '{module.split('.')[0]}' package, which is not installed: pip install 'ella-v-hf[{extra}]'"
        ) from error


__all__ = ["MissingDependencyError", "require"]
