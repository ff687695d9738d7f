"""Run a CUDA kernel from ``kernels/`` on the CPU, thread by thread, to test its logic without a GPU.

The ``.cu`` file is compiled as C++ with a small shim that defines ``threadIdx``, ``blockIdx``,
``blockDim`` and ``gridDim`` and drops the CUDA qualifiers; a generated launcher loops over the
grid and calls the kernel once per thread. This checks indexing, boundary handling and
arithmetic against the NumPy reference on machines without a GPU.

Kernels that cooperate through ``__shared__`` memory and ``__syncthreads()`` run with one OS
thread per CUDA thread of a block: the block's threads run concurrently and meet at a real
barrier, blocks run one after another, and ``__shared__`` arrays are static storage owned by the
running block. That checks tile loading, halos and barrier placement (a missing barrier shows up
as a race, usually a wrong value); it is slow, so keep emulated frames small. Warp intrinsics
(shuffles, votes) and atomics are not emulated.
"""

from __future__ import annotations

import ctypes
import hashlib
import re
import shutil
import subprocess
import tempfile
from functools import cache
from pathlib import Path

import numpy as np
import pytest

from isp.paths import kernel_dir

_SHIM = r"""
#include <cmath>
#include <cstdint>
#include <pthread.h>
#include <vector>
struct uint3 { unsigned int x, y, z; };
struct dim3 { unsigned int x, y, z; };
static thread_local uint3 threadIdx, blockIdx;
static dim3 blockDim, gridDim;
static pthread_barrier_t emulated_barrier;
static inline void __syncthreads() { pthread_barrier_wait(&emulated_barrier); }
#define __global__
#define __device__
#define __host__
#define __forceinline__ inline
#define __shared__ static
static inline int min(int a, int b) { return a < b ? a : b; }
static inline int max(int a, int b) { return a > b ? a : b; }
static inline unsigned min(unsigned a, unsigned b) { return a < b ? a : b; }
static inline unsigned max(unsigned a, unsigned b) { return a > b ? a : b; }
static inline float min(float a, float b) { return std::fmin(a, b); }
static inline float max(float a, float b) { return std::fmax(a, b); }
static inline float rsqrtf(float x) { return 1.0f / std::sqrt(x); }
static inline float __saturatef(float x) { return x < 0.f ? 0.f : (x > 1.f ? 1.f : x); }
template <typename T> static inline T __ldg(const T* p) { return *p; }
"""

# Thread by thread: no cooperation inside a block.
_LAUNCHER = r"""
extern "C" void launch_{name}(unsigned gx, unsigned gy, unsigned gz, unsigned bx, unsigned by, unsigned bz, void** args)
{{
    gridDim = {{gx, gy, gz}};
    blockDim = {{bx, by, bz}};
    for (unsigned z = 0; z < gz; ++z) for (unsigned y = 0; y < gy; ++y) for (unsigned x = 0; x < gx; ++x)
    for (unsigned tz = 0; tz < bz; ++tz) for (unsigned ty = 0; ty < by; ++ty) for (unsigned tx = 0; tx < bx; ++tx) {{
        blockIdx = {{x, y, z}};
        threadIdx = {{tx, ty, tz}};
        {name}({call});
    }}
}}
"""

# One OS thread per CUDA thread of a block, meeting at a barrier; blocks one after another.
_COOPERATIVE_LAUNCHER = r"""
struct emulated_{name}_thread {{ unsigned tx, ty, tz; void** args; }};
static void* emulated_{name}_body(void* p)
{{
    emulated_{name}_thread* t = (emulated_{name}_thread*)p;
    void** args = t->args;
    threadIdx = {{t->tx, t->ty, t->tz}};
    for (unsigned z = 0; z < gridDim.z; ++z) for (unsigned y = 0; y < gridDim.y; ++y) for (unsigned x = 0; x < gridDim.x; ++x) {{
        blockIdx = {{x, y, z}};
        {name}({call});
        pthread_barrier_wait(&emulated_barrier);  // the block ends together: its shared tiles are reused
    }}
    return nullptr;
}}
extern "C" void launch_{name}(unsigned gx, unsigned gy, unsigned gz, unsigned bx, unsigned by, unsigned bz, void** args)
{{
    gridDim = {{gx, gy, gz}};
    blockDim = {{bx, by, bz}};
    unsigned n = bx * by * bz;
    pthread_barrier_init(&emulated_barrier, nullptr, n);
    std::vector<emulated_{name}_thread> threads(n);
    std::vector<pthread_t> handles(n);
    unsigned i = 0;
    for (unsigned tz = 0; tz < bz; ++tz) for (unsigned ty = 0; ty < by; ++ty) for (unsigned tx = 0; tx < bx; ++tx, ++i) {{
        threads[i] = {{tx, ty, tz, args}};
        pthread_create(&handles[i], nullptr, emulated_{name}_body, &threads[i]);
    }}
    for (unsigned k = 0; k < n; ++k) pthread_join(handles[k], nullptr);
    pthread_barrier_destroy(&emulated_barrier);
}}
"""

_SIGNATURE = re.compile(r'extern\s+"C"\s+__global__\s+void\s+(\w+)\s*\(([^)]*)\)', re.S)


def _parameter_types(params: str) -> list[str]:
    types = []
    for param in params.split(","):
        words = param.replace("__restrict__", " ").replace("*", " * ").split()
        types.append(" ".join(words[:-1]))
    return types


@cache
def _library(source: str) -> tuple[ctypes.CDLL, dict[str, list[str]]]:
    compiler = shutil.which("g++") or shutil.which("c++")
    if compiler is None:
        pytest.skip("no C++ compiler to emulate CUDA kernels on the CPU")
    path = Path(source) if source.endswith(".cu") else kernel_dir() / f"{source}.cu"  # a name in kernels/, or a path
    text = path.read_text()
    template = _COOPERATIVE_LAUNCHER if ("__shared__" in text or "__syncthreads" in text) else _LAUNCHER
    kernels = {name: _parameter_types(params) for name, params in _SIGNATURE.findall(text)}
    launchers = "".join(
        template.format(name=name, call=", ".join(f"*({t}*)args[{i}]" for i, t in enumerate(types)))
        for name, types in kernels.items()
    )
    program = _SHIM + text + launchers
    digest = hashlib.sha1(program.encode()).hexdigest()[:16]
    build = Path(tempfile.gettempdir()) / "isp-sim-kernel-emulation"
    build.mkdir(exist_ok=True)
    library = build / f"{path.stem}-{digest}.so"
    if not library.exists():
        with tempfile.TemporaryDirectory(dir=build) as scratch:  # private names: parallel runs may race
            src = Path(scratch) / f"{path.stem}.cpp"
            src.write_text(program)
            partial = Path(scratch) / f"{path.stem}.so"
            subprocess.run([compiler, "-std=c++17", "-O1", "-shared", "-fPIC", "-pthread", "-o", str(partial), str(src)], check=True, capture_output=True, text=True)
            partial.replace(library)
    return ctypes.CDLL(str(library)), kernels


def emulate_kernel(source: str, function: str, grid: tuple[int, ...], block: tuple[int, ...], args: list) -> None:
    """Launch ``function`` from ``kernels/<source>.cu`` over ``grid`` × ``block`` on the CPU.

    ``args`` holds NumPy arrays (passed as device pointers; written in place) and NumPy scalars
    (``np.int32``, ``np.float32``, ...), in the kernel's parameter order.
    """
    library, kernels = _library(source)
    if function not in kernels or len(kernels[function]) != len(args):
        raise ValueError(f"{source}.cu: kernel {function} takes {kernels.get(function)}, got {len(args)} arguments")
    holders = []
    for arg in args:
        if isinstance(arg, np.ndarray):
            if not arg.flags.c_contiguous:
                raise ValueError("emulated kernels need C-contiguous arrays")
            holders.append(ctypes.c_void_p(arg.ctypes.data))
        else:
            scalar = np.asarray(arg)
            holders.append(np.ctypeslib.as_ctypes_type(scalar.dtype)(scalar.item()))
    pointers = (ctypes.c_void_p * len(holders))(*(ctypes.cast(ctypes.pointer(h), ctypes.c_void_p) for h in holders))
    g = (*grid, 1, 1)[:3]
    b = (*block, 1, 1)[:3]
    getattr(library, f"launch_{function}")(*(ctypes.c_uint(v) for v in (*g, *b)), pointers)
