"""Array backend: NumPy on the CPU or CuPy on a CUDA GPU.

This is the only module that imports CuPy. Everything else asks it for the array module
(``xp``), the matching ``ndimage`` module, seeded random generators, device synchronisation,
host transfer and compiled CUDA kernels from ``kernels/*.cu``.

``backend=auto`` picks CuPy when it imports and a GPU answers, NumPy otherwise, and logs the
choice. ``backend=cupy`` on a machine without a GPU is an error rather than a silent fallback.
"""

from __future__ import annotations

import hashlib
import logging
import threading
import zlib
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import scipy.ndimage

from isp.errors import BackendError
from isp.paths import kernel_dir

__all__ = [
    "BACKENDS",
    "Backend",
    "get_backend",
    "array_module",
    "to_host",
    "gpu_available",
    "compile_kernel_file",
    "NVRTC_OPTIONS",
]

log = logging.getLogger(__name__)

BACKENDS = ("auto", "numpy", "cupy")

#: Options every kernel is compiled with, at run time and by the compile check alike.
NVRTC_OPTIONS = ("-std=c++17",)


def _import_cupy() -> ModuleType:
    import cupy  # noqa: PLC0415 - optional dependency, imported only here

    return cupy


@cache
def _cupy_unavailable_reason() -> str | None:
    """``None`` when CuPy imports and a GPU answers, else why not (probed once per process)."""
    try:
        cupy = _import_cupy()
    except ImportError as exc:
        return f"CuPy is not installed ({exc}); install the 'gpu' extra: pip install 'isp-sim[gpu]'"
    try:
        if cupy.cuda.runtime.getDeviceCount() < 1:
            return "CuPy found no CUDA device"
        cupy.zeros(1).sum().item()  # a real allocation and launch, not just a driver query
    except Exception as exc:  # CUDARuntimeError, CUDADriverError, missing libraries, ...
        return f"CuPy cannot use a GPU here ({type(exc).__name__}: {exc})"
    return None


def gpu_available() -> bool:
    """True when CuPy imports and a CUDA GPU answers."""
    return _cupy_unavailable_reason() is None


@dataclass(frozen=True, eq=False)
class Backend:
    """One array backend: the modules to compute with and the services around them.

    Parameters
    ----------
    name
        ``"numpy"`` or ``"cupy"``.
    xp
        The array module (``numpy`` or ``cupy``).
    ndimage
        ``scipy.ndimage`` or ``cupyx.scipy.ndimage``.
    """

    name: str
    xp: ModuleType
    ndimage: ModuleType
    _kernels: dict = field(default_factory=dict, repr=False)
    _functions: dict = field(default_factory=dict, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @property
    def is_gpu(self) -> bool:
        return self.name == "cupy"

    def asarray(self, a: Any, dtype: Any = None) -> Any:
        """Move ``a`` to this backend's device (no copy when it is already there)."""
        return self.xp.asarray(a, dtype=dtype)

    def to_host(self, a: Any) -> np.ndarray:
        """A NumPy array on the host holding ``a``."""
        return to_host(a)

    def synchronize(self) -> None:
        """Wait for the device to finish queued work (a no-op on NumPy)."""
        if self.is_gpu:
            self.xp.cuda.get_current_stream().synchronize()

    def rng(self, seed: int, stream: str) -> Any:
        """A random generator for one named stream derived from ``seed``.

        Each noise source draws from its own stream, so switching one off leaves the draws of
        the others unchanged. The same seed and stream give the same numbers on the same backend.
        CuPy's generator offers fewer distributions than NumPy's: draw with ``random``,
        ``standard_normal``, ``poisson`` (and pass ``dtype=float32`` where it is accepted) so that
        one call works on both backends.
        """
        seq = np.random.SeedSequence(int(seed), spawn_key=(zlib.crc32(stream.encode()),))
        if self.is_gpu:
            return self.xp.random.default_rng(int(seq.generate_state(1, dtype=np.uint64)[0]))
        return np.random.Generator(np.random.PCG64(seq))

    def device_id(self) -> int | None:
        """The current CUDA device's ordinal (``None`` on the CPU)."""
        return int(self.xp.cuda.Device().id) if self.is_gpu else None

    def device_name(self) -> str:
        if not self.is_gpu:
            return "cpu"
        props = self.xp.cuda.runtime.getDeviceProperties(self.xp.cuda.Device().id)
        name = props["name"]
        return name.decode() if isinstance(name, bytes) else str(name)

    def kernel(self, source: str, function: str) -> Any:
        """The CUDA function ``function`` from ``kernels/<source>.cu``, compiled for this device.

        Compiled once per (device, source text) and cached; CuPy keeps the binary on disk too.
        A launch costs one ``stat`` of the file (an edited source is recompiled), not a read and
        a hash: fused kernels run in well under a millisecond, so per-launch overhead counts.
        """
        if not self.is_gpu:
            raise BackendError(f"kernel '{source}.{function}': CUDA kernels need backend=cupy")
        path = _kernel_path(source)
        stamp = path.stat()
        key = (self.device_id(), source, function)
        with self._lock:
            cached = self._functions.get(key)
            if cached is not None and cached[0] == (stamp.st_mtime_ns, stamp.st_size):
                return cached[1]
            text = path.read_text()
            module_key = (self.device_id(), source, hashlib.sha1(text.encode()).hexdigest())
            module = self._kernels.get(module_key)
            if module is None:
                module = self.xp.RawModule(code=text, options=NVRTC_OPTIONS)
                self._kernels[module_key] = module
            fn = module.get_function(function)
            self._functions[key] = ((stamp.st_mtime_ns, stamp.st_size), fn)
            return fn


def _kernel_path(source: str) -> Path:
    path = kernel_dir() / f"{source}.cu"
    if not path.is_file():
        known = sorted(p.stem for p in kernel_dir().glob("*.cu"))
        raise BackendError(f"kernel source '{source}.cu' not found in {kernel_dir()}; known: {known}")
    return path


_BACKENDS: dict[str, Backend] = {}
_BACKENDS_LOCK = threading.Lock()


def get_backend(name: str = "auto") -> Backend:
    """The backend called ``name`` (``auto``, ``numpy`` or ``cupy``).

    Raises
    ------
    BackendError
        ``name`` is not a backend, or ``cupy`` was asked for and no GPU answers.
    """
    if name not in BACKENDS:
        raise BackendError(f"backend={name!r} is not a backend; choose one of {', '.join(BACKENDS)}")
    with _BACKENDS_LOCK:
        if name == "auto":
            reason = _cupy_unavailable_reason()
            chosen = "numpy" if reason else "cupy"
            log.info("backend=auto chose %s%s", chosen, f" ({reason})" if reason else "")
        else:
            chosen = name
        if chosen not in _BACKENDS:
            _BACKENDS[chosen] = _make_backend(chosen)
            if _BACKENDS[chosen].is_gpu:
                log.info("backend: cupy on %s", _BACKENDS[chosen].device_name())
        return _BACKENDS[chosen]


def _make_backend(name: str) -> Backend:
    if name == "numpy":
        return Backend("numpy", np, scipy.ndimage)
    reason = _cupy_unavailable_reason()
    if reason:
        raise BackendError(f"backend=cupy cannot run: {reason}. Use backend=auto or backend=numpy.")
    cupy = _import_cupy()
    import cupyx.scipy.ndimage  # noqa: PLC0415

    return Backend("cupy", cupy, cupyx.scipy.ndimage)


def array_module(a: Any) -> ModuleType:
    """``numpy`` or ``cupy``, whichever holds ``a``."""
    if isinstance(a, np.ndarray) or np.isscalar(a):
        return np
    module = type(a).__module__.split(".")[0]
    if module == "cupy":
        return _import_cupy()
    return np


def to_host(a: Any) -> np.ndarray:
    """``a`` as a NumPy array on the host (a device array is copied back)."""
    if array_module(a) is np:
        return np.asarray(a)
    return a.get()


def compile_kernel_file(path: str | Path, arch: str = "compute_90") -> str:
    """Compile one CUDA source file to PTX with NVRTC and return the PTX; needs no GPU.

    This is the syntax gate CI runs on every ``kernels/*.cu``. It needs CuPy and the NVRTC
    library (the ``test`` extra installs both).

    Raises
    ------
    BackendError
        The source does not compile; the message holds the compiler log.
    """
    path = Path(path)
    try:
        from cupy.cuda import nvrtc  # noqa: PLC0415
    except ImportError as exc:
        raise BackendError(f"cannot compile {path.name}: CuPy's NVRTC binding is missing ({exc})") from exc
    program = nvrtc.createProgram(path.read_text(), path.name, [], [])
    try:
        nvrtc.compileProgram(program, [f"-arch={arch}", *NVRTC_OPTIONS])
        ptx = nvrtc.getPTX(program)
    except nvrtc.NVRTCError as exc:
        raise BackendError(f"{path}: does not compile:\n{nvrtc.getProgramLog(program)}") from exc
    finally:
        nvrtc.destroyProgram(program)
    return ptx.decode() if isinstance(ptx, bytes) else ptx
