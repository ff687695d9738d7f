"""Reading camera raw files into a :class:`~isp.frame.RawFrame`.

rawpy (LibRaw) decodes the mosaic of any format it supports (DNG, NEF, CR2, ARW, RAF Bayer,
...) and gives the CFA layout, black and white levels and, for most cameras, the colour
matrix. For DNG (and other TIFF-based files) the colour calibration is read from the tags
themselves: rawpy returns zeros for some of them. DNG: ColorMatrix1/2, CameraCalibration1/2,
AnalogBalance, CalibrationIlluminant1/2, ForwardMatrix1/2, AsShotNeutral, BaselineExposure,
NoiseProfile, Orientation, and the lens-shading GainMaps of OpcodeList2.

OpcodeList2 (DNG 1.6, chapter 7) is big-endian whatever the file's byte order: an opcode count,
then per opcode its id, the DNG version that defined it, flags (bit 0: optional) and the byte
count of its parameters. GainMap (id 9) is read into :class:`~isp.frame.GainMap`; other opcodes
are skipped, with a warning for one not marked optional, since the image then differs from the
one the camera maker meant. The list applies to the image after the ActiveArea crop (the DNG
SDK's stage-2 image, whose bounds are the reference of the maps' relative coordinates). LibRaw's
``raw_image_visible`` is that same ActiveArea crop for DNGs (checked on the shared Canon DNG: its
ActiveArea 26, 152, 1182, 1886 is LibRaw's margins 26, 152 and size 1156 × 1734); wherever the
mosaic read here differs from it (other margins, or the odd last row or column dropped to keep
whole CFA tiles) the maps are moved onto the mosaic so that every pixel keeps its gain.
"""

from __future__ import annotations

import logging
import math
import dataclasses
import os
import struct
from pathlib import Path
from typing import Any

import numpy as np
import rawpy

from isp import colorimetry
from isp.cfa import CFALayout
from isp.errors import InputError
from isp.frame import CaptureInfo, ColorMatrix, GainMap, RawFrame

__all__ = ["read_raw", "parse_gain_maps", "DNG_TAGS"]

log = logging.getLogger(__name__)

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
    "ActiveArea": 50829,
    "OpcodeList2": 51009,
}
_EXIF_IFD = 34665
#: Tags of the raw image's own IFD: IFD0 in simple DNGs, a SubIFD of it in most camera DNGs.
_RAW_IFD_TAGS = ("ActiveArea", "OpcodeList2")

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
        gain_maps=_mosaic_gain_maps(tags, raw, mosaic.shape, path),
    )
    return RawFrame(mosaic, cfa, black, white, info, domain="dn")


def _read_tags(path: Path) -> dict[str, Any]:
    """The DNG/TIFF tags of IFD0 (and the EXIF IFD) by name; empty for non-TIFF files."""
    import tifffile  # noqa: PLC0415

    try:
        with tifffile.TiffFile(path) as tif:
            page = tif.pages[0]
            found = {tag.code: tag.value for tag in page.tags.values()}
            raw_ifd = _raw_ifd(page)
            for name in _RAW_IFD_TAGS:
                code = DNG_TAGS[name]
                found.pop(code, None)
                if code in raw_ifd.tags:
                    found[code] = raw_ifd.tags[code].value
    except Exception:  # noqa: BLE001 - not a TIFF container (CR3, RAF, ...): LibRaw's data only
        return {}
    exif = found.get(_EXIF_IFD)
    if isinstance(exif, dict):
        for name in ("ExposureTime", "ISOSpeedRatings"):
            if name in exif:
                found.setdefault(DNG_TAGS[name], exif[name])
    return {name: found[code] for name, code in DNG_TAGS.items() if code in found}


def _raw_ifd(page: Any) -> Any:
    """The IFD holding the full-resolution raw image (NewSubFileType 0): IFD0 or one of its SubIFDs."""
    if page.subfiletype == 0:
        return page
    return next((sub for sub in page.pages or () if sub.subfiletype == 0), page)


#: Opcode names by id (DNG 1.6, chapter 7), for messages.
_OPCODE_NAMES = {
    1: "WarpRectilinear",
    2: "WarpFisheye",
    3: "FixVignetteRadial",
    4: "FixBadPixelsConstant",
    5: "FixBadPixelsList",
    6: "TrimBounds",
    7: "MapTable",
    8: "MapPolynomial",
    9: "GainMap",
    10: "DeltaPerRow",
    11: "DeltaPerColumn",
    12: "ScalePerRow",
    13: "ScalePerColumn",
    14: "WarpRectilinear2",
}
_GAIN_MAP_ID = 9
_OPTIONAL_FLAG = 1
_OPCODE_HEADER = struct.Struct(">I4sII")  # id, DNG version, flags, parameter bytes
# Top, Left, Bottom, Right, Plane, Planes, RowPitch, ColPitch, MapPointsV, MapPointsH (LONG);
# MapSpacingV, MapSpacingH, MapOriginV, MapOriginH (DOUBLE); MapPlanes (LONG); then the gains.
_GAIN_MAP_HEADER = struct.Struct(">10I4dI")


def parse_gain_maps(data: bytes, source: str) -> tuple[GainMap, ...]:
    """The GainMap opcodes of a DNG opcode list, in the coordinates of the image it applies to.

    Parameters
    ----------
    data
        The OpcodeList2 tag's bytes (big-endian, DNG 1.6 chapter 7).
    source
        The file, named in messages.

    Returns
    -------
    tuple of GainMap
        One per GainMap opcode that applies to plane 0 (a CFA image's only plane), in list order,
        gains ``(MapPointsV, MapPointsH)`` float32 of the first map plane. A map with one point
        along an axis gets origin 0 and spacing 1 there, as the DNG SDK reads it.

    Raises
    ------
    InputError
        The list is truncated, has bytes after its last opcode, or holds a GainMap whose
        parameters are inconsistent (sizes, an empty area, a zero pitch, non-finite values).
    """
    def malformed(why: str) -> InputError:
        return _malformed(source, why)

    if len(data) < 4:
        raise malformed(f"{len(data)} bytes, fewer than its 4-byte opcode count")
    (count,) = struct.unpack_from(">I", data, 0)
    offset, maps = 4, []
    for number in range(1, count + 1):
        if offset + _OPCODE_HEADER.size > len(data):
            raise malformed(f"opcode {number} of {count} starts at byte {offset}, past the end of the {len(data)}-byte list")
        opcode, _version, flags, size = _OPCODE_HEADER.unpack_from(data, offset)
        offset += _OPCODE_HEADER.size
        name = _OPCODE_NAMES.get(opcode, f"unknown opcode {opcode}")
        if offset + size > len(data):
            raise malformed(f"opcode {number} of {count} ({name}) has {size} parameter bytes, {len(data) - offset} are left")
        parameters = data[offset : offset + size]
        offset += size
        if opcode == _GAIN_MAP_ID:
            gain_map = _gain_map(parameters, f"GainMap (opcode {number} of {count})", source)
            if gain_map is not None:
                maps.append(gain_map)
        elif not flags & _OPTIONAL_FLAG:
            log.warning(
                "%s: OpcodeList2 opcode %d of %d (%s) is not optional, but isp-sim does not apply it: "
                "the image will differ from the one the camera maker meant",
                source, number, count, name,
            )
    if offset != len(data):
        raise malformed(f"{len(data) - offset} bytes after the last of its {count} opcodes")
    return tuple(maps)


def _malformed(source: str, why: str) -> InputError:
    return InputError(f"{source}: OpcodeList2 is malformed: {why}")


def _gain_map(parameters: bytes, what: str, source: str) -> GainMap | None:
    def malformed(why: str) -> InputError:
        return _malformed(source, why)

    if len(parameters) < _GAIN_MAP_HEADER.size:
        raise malformed(f"{what} has {len(parameters)} parameter bytes, fewer than the {_GAIN_MAP_HEADER.size} of its header")
    header = _GAIN_MAP_HEADER.unpack_from(parameters)
    top, left, bottom, right, plane, planes, row_pitch, col_pitch, points_v, points_h = header[:10]
    spacing_v, spacing_h, origin_v, origin_h, map_planes = header[10:]
    if min(points_v, points_h, map_planes) < 1:
        raise malformed(f"{what} has {points_v} x {points_h} points in {map_planes} planes")
    expected = _GAIN_MAP_HEADER.size + 4 * points_v * points_h * map_planes
    if len(parameters) != expected:
        raise malformed(
            f"{what}: {points_v} x {points_h} x {map_planes} gains need {expected} parameter bytes, it has {len(parameters)}"
        )
    if top >= bottom or left >= right or row_pitch < 1 or col_pitch < 1 or planes < 1:
        raise malformed(
            f"{what} covers rows {top}-{bottom}, columns {left}-{right}, planes {plane}+{planes} "
            f"with pitch {row_pitch} x {col_pitch}: an empty area or a zero pitch"
        )
    if points_v == 1:
        spacing_v, origin_v = 1.0, 0.0
    if points_h == 1:
        spacing_h, origin_h = 1.0, 0.0
    if not (spacing_v > 0 and spacing_h > 0 and all(map(math.isfinite, (spacing_v, spacing_h, origin_v, origin_h)))):
        raise malformed(f"{what} has spacing {spacing_v} x {spacing_h} and origin {origin_v}, {origin_h}: spacing must be positive and finite")
    gains = np.frombuffer(parameters, dtype=">f4", offset=_GAIN_MAP_HEADER.size).reshape(points_v, points_h, map_planes)
    if not np.all(np.isfinite(gains)):
        raise malformed(f"{what} holds non-finite gains")
    if plane != 0:
        log.warning("%s: OpcodeList2 %s applies to plane %d; a CFA image has only plane 0, so it changes nothing", source, what, plane)
        return None
    return GainMap(
        top=top,
        left=left,
        bottom=bottom,
        right=right,
        row_pitch=row_pitch,
        col_pitch=col_pitch,
        origin_v=origin_v,
        origin_h=origin_h,
        spacing_v=spacing_v,
        spacing_h=spacing_h,
        gains=gains[:, :, 0].astype(np.float32),
    )


def _mosaic_gain_maps(tags: dict[str, Any], raw: Any, mosaic_shape: tuple[int, int], path: Path) -> tuple[GainMap, ...]:
    """The OpcodeList2 GainMaps moved from the ActiveArea image onto the mosaic read here."""
    if "OpcodeList2" not in tags:
        return ()
    value = tags["OpcodeList2"]
    data = value if isinstance(value, bytes) else np.asarray(value, dtype=np.uint8).tobytes()
    maps = parse_gain_maps(data, str(path))
    sizes = raw.sizes
    active = tags.get("ActiveArea")
    top, left, bottom, right = (int(v) for v in active) if active is not None else (0, 0, sizes.raw_height, sizes.raw_width)
    # The mosaic's first pixel is this far into the ActiveArea image.
    offset = (int(sizes.top_margin) - top, int(sizes.left_margin) - left)
    moved = (_shift_gain_map(m, offset, (bottom - top, right - left), mosaic_shape) for m in maps)
    return tuple(m for m in moved if m is not None)


def _shift_gain_map(
    gain_map: GainMap, offset: tuple[int, int], image_shape: tuple[int, int], mosaic_shape: tuple[int, int]
) -> GainMap | None:
    """``gain_map`` of an image of ``image_shape`` on a mosaic cut from it at ``offset``.

    A mosaic pixel ``m`` is image pixel ``m + o``, at relative position ``(m + o + 0.5) / N`` of the
    image but ``(m + 0.5) / n`` of the mosaic, so the grid's origin becomes ``(origin·N − o) / n``
    and its spacing ``spacing·N / n``: each pixel keeps its gain exactly.
    """
    (oy, ox), (image_h, image_w), (h, w) = offset, image_shape, mosaic_shape

    def first(start: int, pitch: int) -> int:
        return start if start >= 0 else start + -(start // pitch) * pitch  # next pixel on the pitch

    top, left = first(gain_map.top - oy, gain_map.row_pitch), first(gain_map.left - ox, gain_map.col_pitch)
    bottom, right = min(gain_map.bottom - oy, h), min(gain_map.right - ox, w)
    if top >= bottom or left >= right:
        return None
    return dataclasses.replace(
        gain_map,
        top=top,
        left=left,
        bottom=bottom,
        right=right,
        origin_v=(gain_map.origin_v * image_h - oy) / h,
        origin_h=(gain_map.origin_h * image_w - ox) / w,
        spacing_v=gain_map.spacing_v * image_h / h,
        spacing_h=gain_map.spacing_h * image_w / w,
    )


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
