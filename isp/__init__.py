"""isp-sim: a GPU-accelerated phone-camera simulator (physically based sensor + configurable ISP).

The Python API (:mod:`isp.api`) is importable from here: ``isp.compose``, ``isp.run``,
``isp.Simulation``, ``isp.emva`` (the simulated EMVA 1288 characterisation of a sensor), and
``isp.Batch`` (many frames through one warm pipeline, :mod:`isp.batch`). They load lazily, so
``import isp.backend`` stays light.
"""

from importlib import metadata

try:
    __version__ = metadata.version("isp-sim")
except metadata.PackageNotFoundError:  # a checkout on sys.path without an install
    __version__ = "0+unknown"

_API = ("compose", "run", "emva", "Simulation", "SimulationResult")

__all__ = ["__version__", *_API, "Batch"]


def __getattr__(name: str):
    if name == "Batch":
        from isp.batch import Batch  # noqa: PLC0415

        return Batch
    if name in _API:
        from isp import api  # noqa: PLC0415

        return getattr(api, name)
    raise AttributeError(f"module 'isp' has no attribute {name!r}")
