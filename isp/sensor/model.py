"""The sensor: its configuration and the capture of a scene into a RawFrame.

This first model is ideal (noise-free): scene linear RGB to camera RGB through the sensor's
colour response, exposure scaling, CFA sampling, black-level pedestal, white-level clipping
and ADC quantisation to the bit depth. The physical model (photons, electrons, noise) replaces
the signal step of :func:`capture`; see the comment there.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from isp import colorimetry
from isp.backend import Backend
from isp.cfa import CFALayout
from isp.config import build, param
from isp.errors import ConfigError
from isp.frame import CaptureInfo, ColorMatrix, RawFrame

__all__ = ["SensorMode", "LensConfig", "SensorConfig", "build_sensor", "capture"]


@dataclass(frozen=True, kw_only=True)
class SensorMode:
    width: int = param(doc="read-out width", unit="px", range=(2, 100_000))
    height: int = param(doc="read-out height", unit="px", range=(2, 100_000))
    cfa: str = param("RGGB", doc="CFA layout of the read-out (RGGB, ..., quad_RGGB, ...)")
    binning: int = param(1, choices=(1, 2), doc="pixels binned per side into one output pixel")


@dataclass(frozen=True, kw_only=True)
class LensConfig:
    focal_length_mm: float = param(doc="focal length", unit="mm", range=(0.5, 1000.0))
    f_number: float = param(doc="aperture f-number", range=(0.5, 64.0))
    equivalent_focal_length_mm: float | None = param(None, unit="mm", range=(1.0, 2000.0), doc="35 mm-equivalent focal length")


@dataclass(frozen=True, kw_only=True)
class SensorConfig:
    """A sensor model, from the ``sensor`` config group (every value documented in its YAML)."""

    name: str = param(doc="sensor name")
    description: str = param("", doc="what the sensor is and where it is used")
    pixel_pitch_um: float = param(doc="native pixel pitch", unit="µm", range=(0.3, 20.0))
    bit_depth: int = param(doc="ADC bit depth", range=(8, 16))
    black_level: float = param(doc="black-level pedestal", unit="DN", range=(0, 65535))
    white_level: float = param(doc="saturation level", unit="DN", range=(1, 65535))
    base_iso: float = param(100.0, range=(1.0, 1_000_000.0), doc="ISO at unity analog gain")
    iso: float = param(100.0, range=(1.0, 1_000_000.0), doc="ISO of the capture")
    max_analog_gain: float = param(16.0, range=(1.0, 1024.0), doc="highest analog gain; ISO beyond it is digital gain")
    exposure_time_s: float = param(0.01, range=(1e-6, 3600.0), unit="s", doc="exposure time of the capture")
    exposure_scale: float = param(
        1.0,
        range=(0.0, 100.0),
        doc="raw signal (white level = 1) that scene-linear 1.0 gives in the most sensitive channel; "
        "auto-exposure keeps it as ISO changes",
    )
    color_response: list[list[float]] = param(
        shape=(3, 3), range=(-10.0, 10.0), doc="linear sRGB (D65) to camera RGB; rows R, G, B"
    )
    modes: dict = param(doc="read-out modes by name: width, height, cfa, binning")
    mode: str = param(doc="the read-out mode to capture in")
    lens: LensConfig | None = param(None, doc="the module's lens")
    mode_info: SensorMode = field(init=False)

    def __post_init__(self) -> None:
        modes = {name: build(SensorMode, value, f"sensor.modes.{name}") for name, value in self.modes.items()}
        if self.mode not in modes:
            raise ConfigError(f"sensor.mode={self.mode!r} is not a mode of {self.name}; choose one of {', '.join(modes)}")
        object.__setattr__(self, "mode_info", modes[self.mode])
        CFALayout.from_name(self.mode_info.cfa)
        if self.white_level <= self.black_level:
            raise ConfigError(f"sensor.white_level={self.white_level} must be above sensor.black_level={self.black_level}")
        if self.white_level > 2**self.bit_depth - 1:
            raise ConfigError(f"sensor.white_level={self.white_level} exceeds the {self.bit_depth}-bit ADC range (max {2**self.bit_depth - 1})")
        if self.iso < self.base_iso:
            raise ConfigError(f"sensor.iso={self.iso} is below the base ISO {self.base_iso}")
        response = np.asarray(self.color_response, dtype=np.float64)
        if abs(np.linalg.det(response)) < 1e-6:
            raise ConfigError("sensor.color_response is singular: camera RGB must determine the scene colour")

    @property
    def cfa(self) -> CFALayout:
        return CFALayout.from_name(self.mode_info.cfa)

    @property
    def readout(self) -> tuple[int, int]:
        """``(height, width)`` of the mosaic in the current mode."""
        return self.mode_info.height, self.mode_info.width

    @property
    def gains(self) -> tuple[float, float]:
        """``(analog, digital)`` gain for the configured ISO."""
        total = self.iso / self.base_iso
        analog = min(total, self.max_analog_gain)
        return analog, total / analog

    def color_matrix(self) -> ColorMatrix:
        """The sensor's calibration as a DNG-style ColorMatrix (XYZ to camera RGB, D65)."""
        xyz_to_camera = np.asarray(self.color_response, dtype=np.float64) @ colorimetry.XYZ_TO_SRGB
        return ColorMatrix(xyz_to_camera, "D65", 6504.0)


def build_sensor(cfg: object) -> SensorConfig:
    """Validate the ``sensor`` config node."""
    return build(SensorConfig, cfg, "sensor")


def capture(scene_rgb: object, sensor: SensorConfig, backend: Backend, seed: int = 0) -> RawFrame:
    """Capture scene-linear RGB ``(H, W, 3)`` on ``backend`` into a RawFrame (``dn`` domain, uint16).

    ``(H, W)`` must be a whole number of CFA tiles and no larger than the read-out; a smaller
    frame is a window of the sensor. ``seed`` is unused by the ideal model; the noise model draws
    its streams from it.
    """
    xp = backend.xp
    cfa = sensor.cfa
    h, w = scene_rgb.shape[:2]
    if h > sensor.readout[0] or w > sensor.readout[1]:
        raise ConfigError(f"sensor {sensor.name}: a {h}x{w} scene is larger than the {sensor.mode} read-out {sensor.readout[0]}x{sensor.readout[1]}")
    cfa.check_shape((h, w), what=f"scene for sensor {sensor.name}")

    # Camera response of only the channel each pixel's filter passes: one row of the response
    # matrix per CFA site, applied as three per-site multiply-adds over the scene planes.
    response = np.asarray(sensor.color_response, dtype=np.float64) * sensor.exposure_scale
    rows = response[cfa.pattern_array]  # (th, tw, 3)
    signal = None
    for channel in range(3):
        term = cfa.apply_per_site(scene_rgb[..., channel], scale=rows[..., channel])
        signal = term if signal is None else signal + term
    # The physical model acts here: photons, electrons and their noise sources turn this signal
    # into a noisy one before the ADC. The ideal sensor passes it through unchanged.
    signal = xp.clip(signal, 0.0, 1.0)

    full_scale = sensor.white_level - sensor.black_level
    dn = xp.rint(signal * np.float32(full_scale) + np.float32(sensor.black_level))
    top = min(sensor.white_level, 2**sensor.bit_depth - 1)
    mosaic = xp.clip(dn, 0, top).astype(xp.uint16)

    analog, digital = sensor.gains
    response_white = np.asarray(sensor.color_response, dtype=np.float64) @ np.ones(3)
    info = CaptureInfo(
        sensor=sensor.name,
        mode=sensor.mode,
        exposure_time_s=sensor.exposure_time_s,
        iso=sensor.iso,
        analog_gain=analog,
        digital_gain=digital,
        as_shot_neutral=response_white / response_white.max(),
        color_matrices=(sensor.color_matrix(),),
        source="simulation",
    )
    return RawFrame(mosaic, cfa, sensor.black_level, float(sensor.white_level), info, domain="dn")
