"""Counter-based random numbers: Philox4x32-10, the same on NumPy, CuPy and in CUDA kernels.

A counter-based generator maps (key, counter) to random bits with no state, so every pixel can
draw its own numbers in any order, on any number of threads, and a crop of a frame (a tile)
draws exactly what the same pixels draw in the whole frame. The key is the run's seed; the
counter is (pixel index low, pixel index high, draw number, stream). CUDA kernels implement the
same function (``kernels/sensor.cu``, ``philox4x32_10``); the NumPy version here is their
reference.

Salmon, Moraes, Dror and Shaw, "Parallel random numbers: as easy as 1, 2, 3", SC 2011.
"""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ["philox4x32", "uniform01", "normal_pair", "pixel_counters", "stream_id"]

_M0, _M1 = 0xD2511F53, 0xCD9E8D57
_W0, _W1 = 0x9E3779B9, 0xBB67AE85
_ROUNDS = 10
_MASK = 0xFFFFFFFF


def _mulhilo(xp: Any, m: int, x: Any) -> tuple[Any, Any]:
    product = x.astype(xp.uint64) * xp.uint64(m)
    return (product >> xp.uint64(32)).astype(xp.uint32), (product & xp.uint64(_MASK)).astype(xp.uint32)


def philox4x32(counter: tuple[Any, Any, Any, Any], key: tuple[int, int], xp: Any = np) -> tuple[Any, Any, Any, Any]:
    """Philox4x32-10 of ``counter`` (four uint32 arrays, broadcastable) under ``key`` (two uint32).

    Returns four uint32 arrays of random bits. Matches the Random123 reference (known-answer
    tests in ``tests/test_rng.py``).
    """
    c0, c1, c2, c3 = (xp.asarray(c, dtype=xp.uint32) for c in counter)
    c0, c1, c2, c3 = xp.broadcast_arrays(c0, c1, c2, c3)
    k0, k1 = int(key[0]) & _MASK, int(key[1]) & _MASK
    for _ in range(_ROUNDS):
        hi0, lo0 = _mulhilo(xp, _M0, c0)
        hi1, lo1 = _mulhilo(xp, _M1, c2)
        c0, c1, c2, c3 = hi1 ^ c1 ^ xp.uint32(k0), lo1, hi0 ^ c3 ^ xp.uint32(k1), lo0
        k0, k1 = (k0 + _W0) & _MASK, (k1 + _W1) & _MASK
    return c0, c1, c2, c3


def uniform01(bits: Any, xp: Any = np) -> Any:
    """float32 uniform on the open interval (0, 1) from uint32 bits: (top 23 bits + 0.5) / 2^23.

    23 bits, not 24: ``2^24 - 0.5`` is not a float32 and would round to 1.
    """
    return ((bits >> xp.uint32(9)).astype(xp.float32) + xp.float32(0.5)) * xp.float32(2.0**-23)


def normal_pair(u1: Any, u2: Any, xp: Any = np) -> tuple[Any, Any]:
    """Two independent float32 standard normals from two uniforms on (0, 1) (Box-Muller)."""
    radius = xp.sqrt(xp.float32(-2.0) * xp.log(u1))
    angle = xp.float32(2.0 * np.pi) * u2
    return radius * xp.cos(angle), radius * xp.sin(angle)


def pixel_counters(shape: tuple[int, int], origin: tuple[int, int] = (0, 0), full_width: int | None = None, xp: Any = np) -> tuple[Any, Any]:
    """The (low, high) uint32 halves of each pixel's index in the full frame, row-major.

    ``origin`` is the crop's top-left corner in a frame ``full_width`` wide (default: the crop is
    the frame), so a tile draws what the same pixels draw in the whole frame.
    """
    width = shape[1] if full_width is None else full_width
    rows = xp.arange(origin[0], origin[0] + shape[0], dtype=xp.uint64)[:, None]
    cols = xp.arange(origin[1], origin[1] + shape[1], dtype=xp.uint64)[None, :]
    index = rows * xp.uint64(width) + cols
    return (index & xp.uint64(_MASK)).astype(xp.uint32), (index >> xp.uint64(32)).astype(xp.uint32)


def stream_id(name: str) -> int:
    """A stable uint32 for a named stream (FNV-1a of the name), the counter's fourth word."""
    h = 0x811C9DC5
    for byte in name.encode():
        h = ((h ^ byte) * 0x01000193) & _MASK
    return h
