"""Fixed-pattern maps of one sensor instance, from a counter-based hash.

A sensor's PRNU, DSNU, sub-pixel mismatch and defect positions belong to the physical part,
not to a frame: they must be the same in every frame of a sweep, in any window of the
read-out, and on either backend. So they are not drawn from a sequential generator but
computed from a hash of ``(instance seed, map name, row, column)`` in full read-out
coordinates (Salmon et al., "Parallel random numbers: as easy as 1, 2, 3", SC 2011, make the
case for counter-based generators). The hash is MurmurHash3's 32-bit finaliser applied in
rounds; it is plain uint32 arithmetic, so NumPy and CuPy compute the same bits.
"""

from __future__ import annotations

import zlib
from typing import Any

import numpy as np

__all__ = ["hash_uniform", "hash_normal", "hash_positions"]

_GOLDEN = 0x9E3779B9  # odd constants that spread consecutive counters over the word
_C2 = 0x85EBCA77
_C3 = 0xC2B2AE3D


def _fmix32(x: Any) -> Any:
    """MurmurHash3's finaliser: a bijection on uint32 with full avalanche."""
    x = x ^ (x >> 16)
    x = x * np.uint32(0x85EBCA6B)
    x = x ^ (x >> 13)
    x = x * np.uint32(0xC2B2AE35)
    return x ^ (x >> 16)


def _key(seed: int, stream: str) -> np.uint32:
    return np.uint32(zlib.crc32(f"{int(seed)}:{stream}".encode()))


def _hash(xp: Any, seed: int, stream: str, rows: Any, cols: Any) -> Any:
    key = _key(seed, stream)
    r = _fmix32(xp.asarray(rows, dtype=xp.uint32) * np.uint32(_GOLDEN) ^ key)
    c = xp.asarray(cols, dtype=xp.uint32) * np.uint32(_C2)
    h = _fmix32(r[:, None] ^ c[None, :])
    return _fmix32(h + np.uint32((int(key) * _C3) & 0xFFFFFFFF))


def hash_uniform(xp: Any, seed: int, stream: str, origin: tuple[int, int], shape: tuple[int, int]) -> Any:
    """Uniform float32 numbers in ``(0, 1)`` for the pixels of a window of the read-out.

    Parameters
    ----------
    xp
        Array module (numpy or cupy).
    seed, stream
        The sensor instance's seed and the name of the map; a different name gives an
        independent map.
    origin
        ``(row, column)`` of the window's top-left pixel in read-out coordinates.
    shape
        ``(height, width)`` of the window.
    """
    rows = xp.arange(origin[0], origin[0] + shape[0], dtype=xp.uint32)
    cols = xp.arange(origin[1], origin[1] + shape[1], dtype=xp.uint32)
    h = _hash(xp, seed, stream, rows, cols)
    # 23 bits and the half offset stay exact in float32, which keeps 0 and 1 out.
    return ((h >> 9).astype(xp.float32) + np.float32(0.5)) * np.float32(2.0**-23)


def hash_normal(xp: Any, seed: int, stream: str, origin: tuple[int, int], shape: tuple[int, int]) -> Any:
    """Standard normal float32 numbers for a window of the read-out (Box-Muller on two hashes)."""
    u1 = hash_uniform(xp, seed, f"{stream}/u1", origin, shape)
    u2 = hash_uniform(xp, seed, f"{stream}/u2", origin, shape)
    return xp.sqrt(np.float32(-2.0) * xp.log(u1)) * xp.cos(np.float32(2.0 * np.pi) * u2)


def hash_positions(seed: int, stream: str, count: int, shape: tuple[int, int]) -> np.ndarray:
    """``count`` distinct pixel positions ``(row, column)`` of a read-out of ``shape`` (host int64).

    Position ``k`` is a hash of ``k``, so the list is the same for any window and any mode that
    maps the same photodiodes; duplicates are dropped (rare when ``count`` is far below the
    number of pixels).
    """
    k = np.arange(count, dtype=np.uint32)
    hi = _fmix32(_fmix32(k * np.uint32(_GOLDEN) ^ _key(seed, stream)) ^ np.uint32(_C2)).astype(np.uint64)
    lo = _fmix32(k * np.uint32(_C3) ^ _key(seed, f"{stream}/lo")).astype(np.uint64)
    flat = np.unique(((hi << np.uint64(32)) | lo) % np.uint64(shape[0] * shape[1])).astype(np.int64)
    return np.stack(np.divmod(flat, shape[1]), axis=1)
