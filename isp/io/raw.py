"""Reading camera raw files into a :class:`~isp.frame.RawFrame`.

rawpy (LibRaw) decodes the mosaic of any format it supports (DNG, NEF, CR2, ARW, RAF Bayer,
...) and gives the CFA layout, black and white levels and, for most cameras, the colour
matrix. For DNG (and other TIFF-based files) the colour calibration is read from the tags
themselves: rawpy returns zeros for some of them. DNG: ColorMatrix1/2, CameraCalibration1/2,
AnalogBalance, CalibrationIlluminant1/2, ForwardMatrix1/2, AsShotNeutral, BaselineExposure,
NoiseProfile, Orientation.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import rawpy

from isp import colorimetry
from isp.cfa import CFALayout
from isp.errors import InputError
from isp.frame import CaptureInfo, ColorMatrix, RawFrame

__all__ = ["read_raw", "DNG_TAGS"]

#: TIFF/DNG tag numbers read here.
DNG_TAGS = {
    "Make": 271,
    "Model": 272,
    "Orientation": 274,
    "ExposureTime": 33434,
    "ISOSpeedRatings": 34855,
    "UniqueCameraModel": 50708,
    "ColorMatrix1": 50721,
    "ColorMatrix2": 50722,
    "CameraCalibration1": 50723,
    "CameraCalibration2": 50724,
    "AnalogBalance": 50727,
    "AsShotNeutral": 50728,
    "BaselineExposure": 50730,
    "CalibrationIlluminant1": 50778,
    "CalibrationIlluminant2": 50779,
    "ForwardMatrix1": 50964,
    "ForwardMatrix2": 50965,
    "NoiseProfile": 51041,
}
_EXIF_IFD = 34665

# LibRaw's flip code to the EXIF orientation it stands for (dcraw's "50132467" table inverted).
_FLIP_TO_ORIENTATION = {0: 1, 1: 2, 2: 4, 3: 3, 4: 5, 5: 8, 6: 6, 7: 7}


def read_raw(path: str | os.PathLike) -> RawFrame:
    """Read a raw file as a RawFrame in the ``dn`` domain (host NumPy arrays).

    Raises
    ------
    InputError
        The file is missing, is not a raw file rawpy can decode, has no Bayer CFA, or lacks
        what is needed to interpret it (levels, colour calibration).
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: no such file")
    try:
        with rawpy.imread(str(path)) as raw:
            return _frame_from_rawpy(raw, path, _read_tags(path))
    except InputError:
        raise
    except (rawpy.LibRawError, OSError, ValueError) as exc:
        raise InputError(f"{path}: not a raw file rawpy can read ({type(exc).__name__}: {exc})") from None


def _frame_from_rawpy(raw: Any, path: Path, tags: dict[str, Any]) -> RawFrame:
    if raw.raw_type != rawpy.RawType.Flat:
        raise InputError(f"{path}: is not a single-plane CFA raw (LibRaw raw type {raw.raw_type}); not supported")
    desc = raw.color_desc.decode()
    sites = np.asarray(raw.raw_colors_visible[:2, :2])
    try:
        letters = "".join(desc[i] for i in sites.ravel())
    except IndexError:
        raise InputError(f"{path}: CFA colours {sites.tolist()} do not index {desc!r}") from None
    if sorted(letters) != ["B", "G", "G", "R"] or raw.raw_pattern.shape != (2, 2):
        raise InputError(f"{path}: CFA {letters!r} (pattern {raw.raw_pattern.shape}) is not Bayer RGGB in any phase; not supported")
    cfa = CFALayout.from_name(letters)

    mosaic = np.array(raw.raw_image_visible, dtype=np.uint16, copy=True)
    h, w = mosaic.shape
    mosaic = mosaic[: h - h % 2, : w - w % 2]
    per_colour = np.asarray(raw.black_level_per_channel, dtype=np.float64)
    black = per_colour[sites]
    white = float(raw.white_level)
    if not white > black.max():
        raise InputError(f"{path}: white level {white} is not above the black level {black.max()}")

    calibrations = _dng_calibrations(tags) or _libraw_calibration(raw)
    if not calibrations:
        raise InputError(f"{path}: has no colour matrix (neither DNG ColorMatrix tags nor one LibRaw knows)")
    neutral = _as_shot_neutral(raw, tags, path)
    orientation = int(tags["Orientation"]) if "Orientation" in tags else _FLIP_TO_ORIENTATION.get(int(raw.sizes.flip), 1)

    info = CaptureInfo(
        sensor=_camera_name(tags, path),
        mode="file",
        exposure_time_s=_rational(tags, "ExposureTime"),
        iso=float(np.asarray(tags["ISOSpeedRatings"]).ravel()[0]) if "ISOSpeedRatings" in tags else None,
        as_shot_neutral=neutral,
        color_matrices=calibrations,
        orientation=orientation if 1 <= orientation <= 8 else 1,
        baseline_exposure_ev=_rational(tags, "BaselineExposure") or 0.0,
        source=str(path),
        noise_profile=_noise_profile(tags.get("NoiseProfile")),
    )
    return RawFrame(mosaic, cfa, black, white, info, domain="dn")


def _read_tags(path: Path) -> dict[str, Any]:
    """The DNG/TIFF tags of IFD0 (and the EXIF IFD) by name; empty for non-TIFF files."""
    import tifffile  # noqa: PLC0415

    try:
        with tifffile.TiffFile(path) as tif:
            page = tif.pages[0]
            found = {tag.code: tag.value for tag in page.tags.values()}
    except Exception:  # noqa: BLE001 - not a TIFF container (CR3, RAF, ...): LibRaw's data only
        return {}
    exif = found.get(_EXIF_IFD)
    if isinstance(exif, dict):
        for name in ("ExposureTime", "ISOSpeedRatings"):
            if name in exif:
                found.setdefault(DNG_TAGS[name], exif[name])
    return {name: found[code] for name, code in DNG_TAGS.items() if code in found}


def _rationals(value: Any) -> np.ndarray:
    """A TIFF (S)RATIONAL tag as floats: tifffile gives numerator, denominator pairs, flattened."""
    arr = np.asarray(value, dtype=np.float64).ravel()
    if arr.size % 2:
        raise ValueError(f"rational tag with an odd number of values: {value!r}")
    num, den = arr[0::2], arr[1::2]
    return np.divide(num, den, out=np.zeros_like(num), where=den != 0)


def _rational(tags: dict[str, Any], name: str) -> float | None:
    return float(_rationals(tags[name])[0]) if name in tags else None


def _matrix(tags: dict[str, Any], name: str) -> np.ndarray | None:
    if name not in tags:
        return None
    values = _rationals(tags[name])
    if values.size != 9:
        return None
    return values.reshape(3, 3)


def _dng_calibrations(tags: dict[str, Any]) -> tuple[ColorMatrix, ...]:
    analog = _rationals(tags["AnalogBalance"]) if "AnalogBalance" in tags else np.ones(3)
    out = []
    for i in (1, 2):
        color = _matrix(tags, f"ColorMatrix{i}")
        if color is None or not np.any(color):
            continue
        calibration = _matrix(tags, f"CameraCalibration{i}")
        xyz_to_camera = np.diag(analog) @ (calibration if calibration is not None else np.eye(3)) @ color
        code = int(np.asarray(tags.get(f"CalibrationIlluminant{i}", 0)).ravel()[0])
        name, cct = colorimetry.light_source(code)
        out.append(ColorMatrix(xyz_to_camera, name, cct, _matrix(tags, f"ForwardMatrix{i}")))
    return tuple(out)


def _libraw_calibration(raw: Any) -> tuple[ColorMatrix, ...]:
    cam_xyz = np.asarray(raw.rgb_xyz_matrix, dtype=np.float64)[:3]
    if not np.any(cam_xyz):
        return ()
    return (ColorMatrix(cam_xyz, "D65", 6504.0),)  # LibRaw's tables are Adobe's D65 matrices


def _as_shot_neutral(raw: Any, tags: dict[str, Any], path: Path) -> np.ndarray:
    if "AsShotNeutral" in tags:
        neutral = _rationals(tags["AsShotNeutral"])
    else:
        multipliers = np.asarray(raw.camera_whitebalance, dtype=np.float64)[:3]
        if not np.all(multipliers > 0):
            multipliers = np.asarray(raw.daylight_whitebalance, dtype=np.float64)[:3]
        if not np.all(multipliers > 0):
            raise InputError(f"{path}: has neither an as-shot white balance nor daylight multipliers")
        neutral = 1.0 / multipliers
    if neutral.shape != (3,) or not np.all(neutral > 0):
        raise InputError(f"{path}: as-shot neutral {neutral.tolist()} is not three positive numbers")
    return neutral / neutral.max()


def _camera_name(tags: dict[str, Any], path: Path) -> str:
    if "UniqueCameraModel" in tags:
        return str(tags["UniqueCameraModel"]).strip()
    make, model = str(tags.get("Make", "")).strip(), str(tags.get("Model", "")).strip()
    name = model if model.startswith(make) else f"{make} {model}".strip()
    return name or path.name


def _noise_profile(value: Any) -> tuple[tuple[float, float], ...] | None:
    if value is None:
        return None
    arr = np.asarray(value, dtype=np.float64).ravel()
    if arr.size < 2 or arr.size % 2:
        return None
    return tuple((float(s), float(o)) for s, o in arr.reshape(-1, 2))
