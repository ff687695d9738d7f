"""The two kinds of data that flow through the simulator: :class:`RawFrame` and :class:`Image`.

A RawFrame is what a sensor hands an ISP: one mosaic plane and everything needed to interpret
it. A simulated capture and a raw file read with rawpy produce the same type, so one pipeline
serves both. An Image is ``(H, W, 3)`` with a tag naming its colour space and transfer function;
stages check the tag they need.

Domains
-------
``RawFrame.domain == "dn"``: raw digital numbers including the black-level pedestal.
``RawFrame.domain == "linear"``: float32, black level subtracted, normalised so that the white
level is 1.0 (what every stage after ``black_level`` expects).

Crops
-----
``frame.crop(top, left, height, width)`` cuts every per-pixel array of a frame and records where
the crop lies in the full frame (``frame.origin``, ``frame.full_shape``, kept in the capture
metadata so that every stage carries them over). Stages whose result depends on a pixel's
position compute in full-frame coordinates, so a tile of a frame (:mod:`isp.tiling`) gets the
values of the same pixels in the whole frame.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from isp.backend import array_module
from isp.cfa import CFALayout
from isp.errors import StageError

__all__ = ["ColorMatrix", "GainMap", "CaptureInfo", "RawFrame", "Image", "RAW_DOMAINS", "SPACES", "TRANSFERS", "orient"]

RAW_DOMAINS = ("dn", "linear")
#: Colour spaces an Image can be in: camera RGB (sensor primaries), sRGB primaries, or
#: Display P3 primaries (both with a D65 white).
SPACES = ("camera", "srgb", "display_p3")
#: Transfer functions: linear light, or the sRGB OETF (IEC 61966-2-1).
TRANSFERS = ("linear", "srgb")


@dataclass(frozen=True)
class ColorMatrix:
    """A DNG-style ColorMatrix: CIE XYZ to camera RGB for one calibration illuminant.

    Parameters
    ----------
    xyz_to_camera
        ``(3, 3)`` matrix mapping XYZ (Y = 1 for the illuminant's white) to camera RGB.
    illuminant
        Name of the calibration illuminant (``"D65"``, ``"Standard light A"``, ``"unknown"``).
    cct_k
        Its correlated colour temperature in kelvin, ``None`` when unknown.
    forward_matrix
        Optional DNG ForwardMatrix: white-balanced camera RGB to XYZ (D50).
    """

    xyz_to_camera: np.ndarray
    illuminant: str = "unknown"
    cct_k: float | None = None
    forward_matrix: np.ndarray | None = None


@dataclass(frozen=True)
class GainMap:
    """A lens-shading gain map for some pixels of the mosaic, as a DNG GainMap opcode holds it.

    The gains sit on a coarse grid in relative image coordinates (0 at the top or left edge of
    the mosaic, 1 at the bottom or right; pixel ``(row, col)`` sits at ``((row + 0.5) / H,
    (col + 0.5) / W)`` as in the DNG SDK) and are bilinearly interpolated to every pixel of the
    area ``[top, bottom) × [left, right)`` visited with ``row_pitch`` and ``col_pitch``; outside
    the grid the edge values hold. A Bayer frame has one map per tile site (pitch 2, ``top`` and
    ``left`` selecting the site), a Quad Bayer frame one per site of its 4×4 tile.

    Parameters
    ----------
    top, left, bottom, right
        The area of the mosaic the map applies to, in pixels.
    row_pitch, col_pitch
        Step between the pixels the map applies to.
    origin_v, origin_h
        Relative position of the first grid point.
    spacing_v, spacing_h
        Relative spacing of the grid points.
    gains
        ``(points_v, points_h)`` float32 gains (1 = no change), on the host.

    References
    ----------
    Adobe, Digital Negative (DNG) Specification 1.6, chapter 7 (opcode 9, GainMap).
    """

    top: int
    left: int
    bottom: int
    right: int
    row_pitch: int
    col_pitch: int
    origin_v: float
    origin_h: float
    spacing_v: float
    spacing_h: float
    gains: np.ndarray


@dataclass(frozen=True)
class CaptureInfo:
    """How a frame was captured; travels with the data from the sensor to the output.

    Parameters
    ----------
    sensor
        Sensor (or camera make and model for a raw file).
    mode
        Sensor read-out mode (``"binned"``, ``"full"``, or ``"file"``).
    exposure_time_s, iso, analog_gain, digital_gain
        Exposure settings.
    as_shot_neutral
        Camera RGB of a neutral (grey) surface under the scene illuminant, ``(3,)``, max 1.
    color_matrices
        Calibrations from XYZ to camera RGB, one per calibration illuminant.
    orientation
        EXIF orientation (1 to 8) to apply when the image is shown.
    baseline_exposure_ev
        Exposure the camera maker wants added when rendering (DNG BaselineExposure).
    source
        Where the frame comes from: ``"simulation"`` or the raw file's path.
    noise_profile
        DNG NoiseProfile pairs ``(S, O)`` per plane: variance = S·x + O, x normalised.
    gain_maps
        Lens-shading correction maps (:class:`GainMap`): from the DNG's OpcodeList2 for a raw
        file, from the lens model's calibration for a simulated capture; empty when unknown.
    crop_origin
        ``(row, col)`` of the frame's top-left pixel in the full frame it was cropped from
        (a tile of :mod:`isp.tiling`); ``(0, 0)`` for a whole frame.
    full_shape
        ``(height, width)`` of that full frame; ``None`` for a whole frame. Stages that depend
        on a pixel's position (lens shading, vignette, grain) compute in full-frame coordinates,
        so a crop gets exactly the values of the same pixels in the whole frame. These two
        travel in the capture metadata, which every stage carries over, also into a new Image.
    """

    sensor: str
    mode: str = "full"
    exposure_time_s: float | None = None
    iso: float | None = None
    analog_gain: float = 1.0
    digital_gain: float = 1.0
    as_shot_neutral: np.ndarray = field(default_factory=lambda: np.ones(3))
    color_matrices: tuple[ColorMatrix, ...] = ()
    orientation: int = 1
    baseline_exposure_ev: float = 0.0
    source: str = "simulation"
    noise_profile: tuple[tuple[float, float], ...] | None = None
    gain_maps: tuple[GainMap, ...] = ()
    crop_origin: tuple[int, int] = (0, 0)
    full_shape: tuple[int, int] | None = None


def _cropped_info(info: CaptureInfo, shape: tuple[int, ...], top: int, left: int, height: int, width: int) -> CaptureInfo:
    """``info`` of the crop ``[top, top + height) × [left, left + width)`` of a frame of ``shape``."""
    h, w = shape[:2]
    if not (0 <= top and 0 <= left and height > 0 and width > 0 and top + height <= h and left + width <= w):
        raise StageError(f"crop of {height}x{width} pixels at ({top}, {left}) does not lie inside the {h}x{w} frame")
    row, col = info.crop_origin
    full = info.full_shape if info.full_shape is not None else (h, w)
    return dataclasses.replace(info, crop_origin=(row + top, col + left), full_shape=tuple(full))


@dataclass(frozen=True, eq=False)
class RawFrame:
    """One mosaic plane and its interpretation.

    Parameters
    ----------
    mosaic
        ``(H, W)`` array on the backend's device: ``uint16`` DN, or float32 in the linear domain.
    cfa
        The colour filter layout; its tile is anchored at the mosaic's top-left pixel.
    black_level
        Black level per CFA tile site, shape ``cfa.tile_shape``, in the units of ``mosaic``.
    white_level
        Saturation level in the units of ``mosaic``.
    info
        Capture metadata.
    domain
        ``"dn"`` or ``"linear"`` (see the module docstring).
    wb_gains
        White-balance gains ``(3,)`` already applied to ``mosaic``; ``None`` when not balanced.
    cct_k
        Correlated colour temperature of the scene white the white balance chose (kelvin);
        ``None`` before white balance.
    shading_gain
        The per-pixel lens-shading gain already applied to ``mosaic`` (an ``(H, W)`` float32
        array on the device), ``None`` when no shading correction ran. Stages that need the
        noise of a pixel (denoise, defect correction) scale the noise profile by it.
    """

    mosaic: Any
    cfa: CFALayout
    black_level: np.ndarray
    white_level: float
    info: CaptureInfo
    domain: str = "dn"
    wb_gains: np.ndarray | None = None
    cct_k: float | None = None
    shading_gain: Any = None

    def __post_init__(self) -> None:
        black = np.broadcast_to(np.asarray(self.black_level, dtype=np.float64), self.cfa.tile_shape)
        object.__setattr__(self, "black_level", black.copy())
        if self.domain not in RAW_DOMAINS:
            raise StageError(f"RawFrame.domain {self.domain!r} is not one of {RAW_DOMAINS}")
        self.cfa.check_shape(self.mosaic.shape)
        if not self.white_level > float(black.max()):
            raise StageError(
                f"RawFrame from {self.info.source}: white level {self.white_level} is not above "
                f"the black level {float(black.max())}"
            )

    #: The fields holding one value per pixel: what a crop cuts and a tiled run stitches.
    PIXEL_FIELDS = ("mosaic", "shading_gain")

    @property
    def shape(self) -> tuple[int, int]:
        return tuple(self.mosaic.shape)

    @property
    def origin(self) -> tuple[int, int]:
        """``(row, col)`` of the top-left pixel in the full frame (``(0, 0)`` unless a crop)."""
        return self.info.crop_origin

    @property
    def full_shape(self) -> tuple[int, int]:
        """``(height, width)`` of the full frame this one is a crop of (its own shape if whole)."""
        return self.info.full_shape if self.info.full_shape is not None else self.shape

    def replace(self, **changes: Any) -> RawFrame:
        """A copy with some fields changed."""
        return dataclasses.replace(self, **changes)

    def crop(self, top: int, left: int, height: int, width: int) -> RawFrame:
        """The pixels ``[top, top + height) × [left, left + width)`` as a frame of their own.

        Every per-pixel array (:attr:`PIXEL_FIELDS`) is cut (as a view: stages never modify
        their input) and the crop's origin in the full frame is recorded. The crop must start
        and end on CFA tile boundaries, so that the tile stays anchored at its top-left pixel.

        Examples
        --------
        >>> from isp.cfa import CFALayout
        >>> frame = RawFrame(np.zeros((8, 12), np.uint16), CFALayout.from_name("RGGB"), 0, 1023, CaptureInfo("test"))
        >>> tile = frame.crop(2, 4, 4, 6)
        >>> tile.shape, tile.origin, tile.full_shape, tile.crop(0, 2, 2, 2).origin
        ((4, 6), (2, 4), (8, 12), (2, 6))
        """
        th, tw = self.cfa.tile_shape
        if top % th or left % tw or height % th or width % tw:
            raise StageError(
                f"crop of {height}x{width} pixels at ({top}, {left}) does not fall on the {th}x{tw} tiles of CFA {self.cfa.name}"
            )
        info = _cropped_info(self.info, self.shape, top, left, height, width)
        window = (slice(top, top + height), slice(left, left + width))
        cut = {name: getattr(self, name)[window] for name in self.PIXEL_FIELDS if getattr(self, name) is not None}
        return self.replace(info=info, **cut)

    def require(self, stage: str, *, domain: str | None = None, bayer: bool = False) -> None:
        """Raise a :class:`StageError` naming ``stage`` unless the frame is what it needs."""
        if domain is not None and self.domain != domain:
            hint = " (run the black_level stage first)" if domain == "linear" else ""
            raise StageError(f"stage '{stage}' needs a raw frame in the {domain!r} domain, got {self.domain!r}{hint}")
        if bayer and not self.cfa.is_bayer:
            raise StageError(
                f"stage '{stage}' needs a Bayer mosaic, got CFA {self.cfa.name!r}; "
                "a Quad Bayer frame must be remosaiced or binned first"
            )


@dataclass(frozen=True, eq=False)
class Image:
    """An ``(H, W, 3)`` image tagged with its colour space and transfer function.

    Parameters
    ----------
    data
        ``(H, W, 3)`` array on the backend's device: float32 (nominal range [0, 1]) or, after
        quantisation, ``uint8`` / ``uint16``.
    space
        One of :data:`SPACES`.
    transfer
        One of :data:`TRANSFERS`.
    info
        Capture metadata carried from the RawFrame.
    wb_gains
        White-balance gains applied upstream, ``None`` when the data is not balanced.
    cct_k
        Correlated colour temperature of the scene white chosen by the white balance (kelvin).
    """

    data: Any
    space: str
    transfer: str
    info: CaptureInfo
    wb_gains: np.ndarray | None = None
    cct_k: float | None = None

    def __post_init__(self) -> None:
        if self.data.ndim != 3 or self.data.shape[2] != 3:
            raise StageError(f"Image data must be (H, W, 3), got shape {tuple(self.data.shape)}")
        if self.space not in SPACES:
            raise StageError(f"Image.space {self.space!r} is not one of {SPACES}")
        if self.transfer not in TRANSFERS:
            raise StageError(f"Image.transfer {self.transfer!r} is not one of {TRANSFERS}")

    #: The fields holding one value per pixel: what a crop cuts and a tiled run stitches.
    PIXEL_FIELDS = ("data",)

    @property
    def shape(self) -> tuple[int, int, int]:
        return tuple(self.data.shape)

    @property
    def origin(self) -> tuple[int, int]:
        """``(row, col)`` of the top-left pixel in the full image (``(0, 0)`` unless a crop)."""
        return self.info.crop_origin

    @property
    def full_shape(self) -> tuple[int, int]:
        """``(height, width)`` of the full image this one is a crop of (its own if whole)."""
        return self.info.full_shape if self.info.full_shape is not None else self.shape[:2]

    def crop(self, top: int, left: int, height: int, width: int) -> Image:
        """The pixels ``[top, top + height) × [left, left + width)`` as an image of their own
        (a view of the data), with the crop's origin in the full image recorded."""
        info = _cropped_info(self.info, self.shape, top, left, height, width)
        return self.replace(data=self.data[top : top + height, left : left + width], info=info)

    @property
    def is_float(self) -> bool:
        return np.dtype(self.data.dtype).kind == "f"

    def replace(self, **changes: Any) -> Image:
        """A copy with some fields changed."""
        return dataclasses.replace(self, **changes)

    def require(self, stage: str, *, space: str | None = None, transfer: str | None = None) -> None:
        """Raise a :class:`StageError` naming ``stage`` unless the image has the tags it needs."""
        if space is not None and self.space != space:
            raise StageError(f"stage '{stage}' needs an image in colour space {space!r}, got {self.space!r}")
        if transfer is not None and self.transfer != transfer:
            raise StageError(f"stage '{stage}' needs {transfer!r} transfer, got {self.transfer!r}")
        if not self.is_float:
            raise StageError(f"stage '{stage}' needs a float image, got {self.data.dtype} (already quantised)")

    def oriented(self) -> Any:
        """The data turned to its EXIF orientation, as it should be shown."""
        return orient(self.data, self.info.orientation)


def orient(a: Any, orientation: int) -> Any:
    """Apply an EXIF orientation (1 to 8) to an array whose first two axes are rows and columns."""
    xp = array_module(a)
    if orientation in (0, 1):
        return a
    if orientation == 2:
        return a[:, ::-1]
    if orientation == 3:
        return a[::-1, ::-1]
    if orientation == 4:
        return a[::-1]
    if orientation == 5:
        return xp.swapaxes(a, 0, 1)
    if orientation == 6:
        return xp.rot90(a, -1)
    if orientation == 7:
        return xp.rot90(a[:, ::-1], -1)
    if orientation == 8:
        return xp.rot90(a, 1)
    raise StageError(f"EXIF orientation {orientation} is not in 1..8")
