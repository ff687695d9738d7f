"""Writing a :class:`~isp.frame.RawFrame` as a CFA DNG that other raw developers open.

The mosaic is written uncompressed as one strip of 16-bit samples (PhotometricInterpretation
32803, CFA) by tifffile, with the DNG tags that say how to interpret it: the CFA layout, the
black level per CFA site and the white level, the colour calibration (ColorMatrix,
ForwardMatrix and CalibrationIlluminant for up to two illuminants), the as-shot neutral, the
noise profile, the exposure (ExposureTime, ISO, BaselineExposure), the orientation and the
lens-shading gain maps (OpcodeList2 GainMap opcodes). rawpy/LibRaw reads such a file back with
the same mosaic, CFA, black and white levels, and :func:`isp.io.raw.read_raw` with the same
calibration.

Only Bayer mosaics are written. LibRaw keeps a CFA pattern as eight rows of two columns, so it
reads a 4×4 Quad Bayer CFAPattern as a different 2-column pattern (checked with LibRaw 0.22);
a Quad Bayer frame is refused with a message naming the ways to a Bayer frame.

References
----------
Adobe, Digital Negative (DNG) Specification 1.6 (chapters 4 and 7).
"""

from __future__ import annotations

import math
import os
import struct
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np

from isp import __version__, colorimetry
from isp.backend import to_host
from isp.errors import InputError
from isp.frame import ColorMatrix, GainMap, RawFrame
from isp.io.images import atomic_path

__all__ = ["write_dng", "gain_map_opcodes", "DNG_VERSION"]

#: DNGVersion written; DNGBackwardVersion is 1.3, the first version with NoiseProfile and opcodes.
DNG_VERSION = (1, 4, 0, 0)
_DNG_BACKWARD_VERSION = (1, 3, 0, 0)
_PHOTOMETRIC_CFA = 32803
_UNDEFINED = 7  # TIFF type of OpcodeList2's bytes
_INT32_MAX = 2**31 - 1
_UINT32_MAX = 2**32 - 1
_SHORT_MAX = 2**16 - 1

_GAIN_MAP_ID = 9
_OPCODE_HEADER = struct.Struct(">I4BII")  # id, DNG version that defined it, flags, parameter bytes
# Top, Left, Bottom, Right, Plane, Planes, RowPitch, ColPitch, MapPointsV, MapPointsH (LONG);
# MapSpacingV, MapSpacingH, MapOriginV, MapOriginH (DOUBLE); MapPlanes (LONG); then the gains.
_GAIN_MAP_HEADER = struct.Struct(">10I4dI")
_GAIN_MAP_VERSION = (1, 3, 0, 0)

#: EXIF LightSource code of each illuminant name (the inverse of :data:`colorimetry.EXIF_LIGHT_SOURCES`).
_LIGHT_SOURCE_CODES = {name: code for code, (name, _) in colorimetry.EXIF_LIGHT_SOURCES.items()}


def write_dng(path: str | os.PathLike, frame: RawFrame) -> Path:
    """Write a raw frame's mosaic and metadata as an uncompressed CFA DNG.

    Parameters
    ----------
    path
        The file to write; it appears complete or not at all (written beside it, then renamed).
    frame
        A Bayer frame in the ``dn`` domain: an integer mosaic (host or device) with values in
        0..65535, black level per CFA site, white level, and its :class:`~isp.frame.CaptureInfo`
        (one or two colour matrices). Written as it is: the sensor mode, a cropped window and
        per-site black levels included.

    Returns
    -------
    Path
        ``path``.

    Raises
    ------
    InputError
        The frame is not a ``dn`` Bayer mosaic of 16-bit integers, has no colour matrix or more
        than two, a level or calibration value a DNG tag cannot hold, or ``path`` is the raw
        file the frame was read from.

    Notes
    -----
    An illuminant name that is not an EXIF LightSource (:data:`isp.colorimetry.EXIF_LIGHT_SOURCES`)
    is written as 0 (unknown), so its CCT does not travel. Non-integer black levels are written
    as RATIONAL, as the DNG specification allows; LibRaw truncates them to integers.

    Examples
    --------
    >>> import isp
    >>> result = isp.run(["scene.size=[240,320]"])              # doctest: +SKIP
    >>> write_dng("capture.dng", result.raw)                      # doctest: +SKIP
    """
    import tifffile  # noqa: PLC0415 - the reader's dependency too; only needed when writing

    path = Path(path)
    _check_not_source(path, frame)
    mosaic = _host_mosaic(frame)
    tags = [
        (50706, "B", 4, DNG_VERSION, True),
        (50707, "B", 4, _DNG_BACKWARD_VERSION, True),
        (271, "s", 0, "isp-sim", True),
        (272, "s", 0, frame.info.sensor, True),
        (50708, "s", 0, frame.info.sensor, True),
        (274, "H", 1, (_orientation(frame),), True),
        *_cfa_tags(frame),
        *_level_tags(frame),
        *_calibration_tags(frame),
        *_capture_tags(frame),
    ]
    if frame.info.gain_maps:
        opcodes = gain_map_opcodes(frame.info.gain_maps)
        tags.append((51009, _UNDEFINED, len(opcodes), opcodes, True))
    with atomic_path(path) as tmp:
        tifffile.imwrite(
            tmp,
            mosaic,
            photometric=_PHOTOMETRIC_CFA,
            subfiletype=0,
            software=f"isp-sim {__version__}",
            metadata=None,  # no tifffile JSON description: a DNG's ImageDescription is the user's
            extratags=tags,
        )
    return path


def gain_map_opcodes(gain_maps: tuple[GainMap, ...]) -> bytes:
    """An OpcodeList2 holding one GainMap opcode per map, big-endian as the DNG spec requires.

    The inverse of :func:`isp.io.raw.parse_gain_maps`: each map applies to plane 0 (a CFA
    image's only plane) with one map plane. The opcodes are not marked optional: a reader that
    skips them shows the image without its lens-shading correction.
    """
    out = [struct.pack(">I", len(gain_maps))]
    for gain_map in gain_maps:
        gains = np.asarray(gain_map.gains, dtype=">f4")
        if gains.ndim != 2:
            raise InputError(f"GainMap gains must be (points_v, points_h), got shape {gains.shape}")
        points_v, points_h = gains.shape
        header = _GAIN_MAP_HEADER.pack(
            gain_map.top, gain_map.left, gain_map.bottom, gain_map.right,
            0, 1, gain_map.row_pitch, gain_map.col_pitch, points_v, points_h,
            gain_map.spacing_v, gain_map.spacing_h, gain_map.origin_v, gain_map.origin_h, 1,
        )  # fmt: skip
        parameters = header + gains.tobytes()
        out.append(_OPCODE_HEADER.pack(_GAIN_MAP_ID, *_GAIN_MAP_VERSION, 0, len(parameters)) + parameters)
    return b"".join(out)


def _check_not_source(path: Path, frame: RawFrame) -> None:
    source = Path(frame.info.source)
    if frame.info.source != "simulation" and source.exists() and path.exists() and os.path.samefile(source, path):
        raise InputError(f"{path}: is the raw file this frame was read from; write the DNG to another path")


def _host_mosaic(frame: RawFrame) -> np.ndarray:
    if frame.domain != "dn":
        raise InputError(
            f"write_dng: the frame is in the {frame.domain!r} domain; a DNG holds raw digital numbers "
            "(the 'dn' domain, before the black_level stage)"
        )
    if not frame.cfa.is_bayer:
        raise InputError(
            f"write_dng: CFA {frame.cfa.name!r} has a {frame.cfa.tile_shape[0]}x{frame.cfa.tile_shape[1]} tile; "
            "only Bayer frames are written, as LibRaw misreads a Quad Bayer CFAPattern. Capture with "
            "sensor.mode=binned, or write the output of the remosaic stage"
        )
    mosaic = to_host(frame.mosaic)
    if mosaic.dtype.kind not in "ui":
        raise InputError(f"write_dng: the mosaic is {mosaic.dtype}; a DNG holds integer samples (uint16)")
    if mosaic.size and (int(mosaic.min()) < 0 or int(mosaic.max()) > _SHORT_MAX):
        raise InputError(f"write_dng: mosaic values span {int(mosaic.min())}..{int(mosaic.max())}, outside 0..{_SHORT_MAX}")
    return np.ascontiguousarray(mosaic, dtype=np.uint16)


def _orientation(frame: RawFrame) -> int:
    orientation = int(frame.info.orientation)
    return orientation if 1 <= orientation <= 8 else 1


def _cfa_tags(frame: RawFrame) -> list[tuple]:
    pattern = frame.cfa.pattern_array.ravel()
    return [
        (33421, "H", 2, frame.cfa.tile_shape, True),  # CFARepeatPatternDim
        (33422, "B", pattern.size, tuple(int(c) for c in pattern), True),  # CFAPattern, 0 = R, 1 = G, 2 = B
        (50710, "B", 3, (0, 1, 2), True),  # CFAPlaneColor
        (50711, "H", 1, (1,), True),  # CFALayout: rectangular
    ]


def _level_tags(frame: RawFrame) -> list[tuple]:
    black = np.asarray(frame.black_level, dtype=np.float64)
    white = float(frame.white_level)
    if white != round(white) or not 0 < white <= _UINT32_MAX:
        raise InputError(f"write_dng: white level {white} is not a whole number in 1..{_UINT32_MAX} (DNG WhiteLevel is an integer)")
    if np.any(black < 0):
        raise InputError(f"write_dng: black level {black.tolist()} is negative")
    tags = []
    if np.all(black == black.flat[0]):
        values = black.flat[:1]
    else:
        tags.append((50713, "H", 2, black.shape, True))  # BlackLevelRepeatDim: one value per CFA site
        values = black.ravel()
    if np.all(values == np.round(values)):
        tags.append((50714, "I", values.size, tuple(int(v) for v in values), True))
    else:
        tags.append((50714, "2I", values.size, _rationals(values, "black level", signed=False), True))
    tags.append((50717, "I", 1, (int(white),), True))
    return tags


def _calibration_tags(frame: RawFrame) -> list[tuple]:
    matrices = frame.info.color_matrices
    if not matrices:
        raise InputError("write_dng: the frame has no colour matrix (CaptureInfo.color_matrices); a colour DNG needs ColorMatrix1")
    if len(matrices) > 2:
        raise InputError(f"write_dng: the frame has {len(matrices)} colour matrices; a DNG holds at most two (ColorMatrix1, ColorMatrix2)")
    tags = []
    for i, matrix in enumerate(matrices):
        tags += _matrix_tags(matrix, i)
    neutral = np.asarray(frame.info.as_shot_neutral, dtype=np.float64).ravel()
    if neutral.shape != (3,) or not np.all(neutral > 0):
        raise InputError(f"write_dng: as-shot neutral {neutral.tolist()} is not three positive numbers")
    tags.append((50728, "2I", 3, _rationals(neutral, "as-shot neutral", signed=False), True))
    return tags


def _matrix_tags(matrix: ColorMatrix, index: int) -> list[tuple]:
    xyz_to_camera = np.asarray(matrix.xyz_to_camera, dtype=np.float64)
    if xyz_to_camera.shape != (3, 3):
        raise InputError(f"write_dng: colour matrix {index + 1} has shape {xyz_to_camera.shape}, expected (3, 3)")
    tags = [
        (50721 + index, "2i", 9, _rationals(xyz_to_camera.ravel(), f"ColorMatrix{index + 1}", signed=True), True),
        (50778 + index, "H", 1, (_LIGHT_SOURCE_CODES.get(matrix.illuminant, 0),), True),
    ]
    if matrix.forward_matrix is not None:
        forward = np.asarray(matrix.forward_matrix, dtype=np.float64).ravel()
        if forward.size != 9:
            raise InputError(f"write_dng: forward matrix {index + 1} has {forward.size} values, expected 9")
        tags.append((50964 + index, "2i", 9, _rationals(forward, f"ForwardMatrix{index + 1}", signed=True), True))
    return tags


def _capture_tags(frame: RawFrame) -> list[tuple]:
    info = frame.info
    tags = []
    if info.exposure_time_s is not None and info.exposure_time_s > 0:
        tags.append((33434, "2I", 1, _rationals([info.exposure_time_s], "exposure time", signed=False), True))
    if info.iso is not None and info.iso > 0:
        # EXIF ISOSpeedRatings is a SHORT; like cameras, an ISO above its range is written as 65535.
        tags.append((34855, "H", 1, (min(round(info.iso), _SHORT_MAX),), True))
    if info.baseline_exposure_ev:
        tags.append((50730, "2i", 1, _rationals([info.baseline_exposure_ev], "baseline exposure", signed=True), True))
    if info.noise_profile:
        values = np.asarray(info.noise_profile, dtype=np.float64).ravel()
        if not np.all(np.isfinite(values)) or np.any(values < 0):
            raise InputError(f"write_dng: noise profile {info.noise_profile} holds negative or non-finite values")
        tags.append((51041, "d", values.size, tuple(float(v) for v in values), True))
    return tags


def _rationals(values: Any, what: str, *, signed: bool) -> tuple[int, ...]:
    """Numerator, denominator pairs (flattened) as close to ``values`` as 32-bit integers allow."""
    limit = _INT32_MAX if signed else _UINT32_MAX
    out: list[int] = []
    for value in np.asarray(values, dtype=np.float64).ravel():
        value = float(value)
        if not math.isfinite(value) or abs(value) > limit or (value < 0 and not signed):
            raise InputError(f"write_dng: {what} value {value} does not fit a TIFF {'SRATIONAL' if signed else 'RATIONAL'}")
        # The largest denominator that keeps the numerator within range.
        fraction = Fraction(value).limit_denominator(max(1, int(limit / (abs(value) + 1))))
        out += [fraction.numerator, fraction.denominator]
    return tuple(out)
