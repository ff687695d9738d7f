"""Where the packaged resources live: ``configs/`` and ``kernels/``.

In a checkout (or an editable install) they sit at the top of the repository, beside ``isp/``;
in an installed wheel they are packaged inside ``isp/`` (see ``pyproject.toml``). This module is
the one place that knows both layouts.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path

__all__ = ["config_dir", "kernel_dir", "ResourceNotFoundError"]

_PACKAGE = Path(__file__).resolve().parent


class ResourceNotFoundError(FileNotFoundError):
    """A packaged resource folder is missing: the installation is broken."""


def _locate(name: str, marker: str) -> Path:
    for candidate in (_PACKAGE / name, _PACKAGE.parent / name):
        if (candidate / marker).exists():
            return candidate
    raise ResourceNotFoundError(
        f"isp-sim resource folder '{name}/' not found beside {_PACKAGE} (looked for "
        f"{name}/{marker} inside the package and in the repository root): reinstall isp-sim"
    )


@cache
def config_dir() -> Path:
    """Absolute path of the Hydra config folder (holds ``config.yaml``)."""
    return _locate("configs", "config.yaml")


@cache
def kernel_dir() -> Path:
    """Absolute path of the folder of CUDA sources (``*.cu``)."""
    return _locate("kernels", "README.md")
