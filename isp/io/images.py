"""Reading RGB image files and writing outputs atomically.

PNG is read with pypng, which keeps 16-bit RGB exact (Pillow and imageio reduce it to 8 bits);
other formats with imageio (TIFF through tifffile). Outputs: 8-bit PNG with Pillow, 16-bit
TIFF with tifffile, JSON. Every writer goes through :func:`atomic_path`: the file appears
complete under its name or not at all.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from isp.errors import InputError

__all__ = ["read_image", "atomic_path", "write_png8", "write_tiff16", "write_json", "write_npy", "write_yaml"]


def read_image(path: str | os.PathLike) -> np.ndarray:
    """An RGB image file as float32 ``(H, W, 3)`` in [0, 1] (the encoded values, not linearised).

    Raises
    ------
    InputError
        The file is missing, unreadable, or not a 3-channel colour image (an alpha channel is
        accepted only when fully opaque).
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: no such file")
    try:
        data = _read_png(path) if path.suffix.lower() == ".png" else _read_other(path)
    except InputError:
        raise
    except Exception as exc:  # every decoder raises its own types
        raise InputError(f"{path}: cannot read as an image ({type(exc).__name__}: {exc})") from None
    if data.ndim == 3 and data.shape[2] == 4:
        alpha = data[..., 3]
        if np.any(alpha != _full_scale(data.dtype)):
            raise InputError(f"{path}: has a transparent alpha channel; a scene image must be opaque RGB")
        data = data[..., :3]
    if data.ndim != 3 or data.shape[2] != 3:
        channels = 1 if data.ndim == 2 else data.shape[-1]
        raise InputError(f"{path}: is not an RGB image ({channels} channel(s), shape {data.shape}); a scene image needs 3 colour channels")
    if data.dtype.kind == "f":
        return np.ascontiguousarray(data, dtype=np.float32)
    if data.dtype not in (np.uint8, np.uint16):
        raise InputError(f"{path}: sample type {data.dtype} is not supported (8- or 16-bit integers, or float)")
    return data.astype(np.float32) / np.float32(_full_scale(data.dtype))


def _full_scale(dtype: np.dtype) -> float:
    return 1.0 if np.dtype(dtype).kind == "f" else float(np.iinfo(dtype).max)


def _read_png(path: Path) -> np.ndarray:
    import png  # noqa: PLC0415

    width, height, rows, info = png.Reader(filename=str(path)).asDirect()
    dtype = np.uint16 if info["bitdepth"] > 8 else np.uint8
    data = np.vstack([np.asarray(row, dtype=dtype) for row in rows])
    planes = info["planes"]
    return data.reshape(height, width, planes) if planes > 1 else data.reshape(height, width)


def _read_other(path: Path) -> np.ndarray:
    import imageio.v3 as iio  # noqa: PLC0415

    return np.asarray(iio.imread(path))


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success it replaces ``path`` in one step."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.partial")
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()


#: PNG cICP chunk (ITU-T H.273 code points): primaries, transfer (13 = sRGB curve), matrix 0 (RGB),
#: full range. Primaries 1 = BT.709/sRGB, 12 = SMPTE EG 432-1 (Display P3, D65).
_CICP = {"srgb": bytes([1, 13, 0, 1]), "display_p3": bytes([12, 13, 0, 1])}


def write_png8(path: str | os.PathLike, rgb: np.ndarray, space: str = "srgb") -> Path:
    """Write an ``(H, W, 3)`` ``uint8`` array as a PNG tagged with its colour space.

    ``space`` is ``"srgb"`` or ``"display_p3"``; it is recorded in a cICP chunk (which browsers
    and image viewers read to show P3 colours right) and, for sRGB, also an sRGB chunk.
    """
    from PIL import Image, PngImagePlugin  # noqa: PLC0415

    if rgb.dtype != np.uint8 or rgb.ndim != 3 or rgb.shape[2] != 3:
        raise ValueError(f"write_png8 needs (H, W, 3) uint8, got {rgb.dtype} {rgb.shape}")
    if space not in _CICP:
        raise ValueError(f"write_png8: colour space {space!r} is not one of {', '.join(_CICP)}")
    chunks = PngImagePlugin.PngInfo()
    chunks.add(b"cICP", _CICP[space])
    if space == "srgb":
        chunks.add(b"sRGB", bytes([0]))  # perceptual rendering intent
    with atomic_path(path) as tmp:
        Image.fromarray(np.ascontiguousarray(rgb), mode="RGB").save(tmp, format="PNG", compress_level=3, pnginfo=chunks)
    return Path(path)


def write_tiff16(path: str | os.PathLike, rgb: np.ndarray) -> Path:
    """Write an ``(H, W, 3)`` ``uint16`` array as an RGB TIFF."""
    import tifffile  # noqa: PLC0415

    if rgb.dtype != np.uint16 or rgb.ndim != 3 or rgb.shape[2] != 3:
        raise ValueError(f"write_tiff16 needs (H, W, 3) uint16, got {rgb.dtype} {rgb.shape}")
    with atomic_path(path) as tmp:
        tifffile.imwrite(tmp, np.ascontiguousarray(rgb), photometric="rgb")
    return Path(path)


def write_npy(path: str | os.PathLike, array: np.ndarray) -> Path:
    """Write an array as ``.npy``."""
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        np.save(f, array)
    return Path(path)


def write_yaml(path: str | os.PathLike, data: Any) -> Path:
    """Write plain data (mappings, lists, numbers, strings) as YAML, in the order given."""
    from omegaconf import OmegaConf  # noqa: PLC0415 - Hydra's YAML writer; no extra dependency

    with atomic_path(path) as tmp:
        tmp.write_text(OmegaConf.to_yaml(OmegaConf.create(data)))
    return Path(path)


def write_json(path: str | os.PathLike, data: Any) -> Path:
    """Write ``data`` as indented JSON."""
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(data, indent=2, default=_json_default) + "\n")
    return Path(path)


def _json_default(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")
