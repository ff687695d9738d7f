"""isp-sim: a GPU-accelerated phone-camera simulator (physically based sensor + configurable ISP).

The Python API (:mod:`isp.api`) is importable from here: ``isp.compose``, ``isp.run``,
``isp.Simulation``, and ``isp.emva`` (the simulated EMVA 1288 characterisation of a sensor).
They load lazily, so ``import isp.backend`` stays light.
"""

from importlib import metadata

try:
    __version__ = metadata.version("isp-sim")
except metadata.PackageNotFoundError:  # a checkout on sys.path without an install
    __version__ = "0+unknown"

_API = ("compose", "run", "emva", "Simulation", "SimulationResult")

__all__ = ["__version__", *_API]


def __getattr__(name: str):
    if name in _API:
        from isp import api  # noqa: PLC0415

        return getattr(api, name)
    raise AttributeError(f"module 'isp' has no attribute {name!r}")
