"""The sensor's configuration and the quantities derived from it.

A :class:`SensorConfig` is one sensor model (a ``sensor`` config group entry): geometry,
read-out modes, ADC, quantum efficiency, full well, conversion gain, the noise sources and
their switches, and the module's lens. Its methods derive what a capture needs: gains for the
ISO, the system gain in DN/e-, the saturation signal, the electrons a scene of a given
luminance produces in each channel, and the auto-exposure time. The capture itself lives in
:mod:`isp.sensor.capture`.

Units follow EMVA 1288: electrons (e-) in the pixel, DN at the ADC, ``K`` the system gain in
DN/e-. In a binned mode one output pixel sums the charge of ``binning**2`` photodiodes and the
output is scaled to their average, so the binned system gain is the native one over
``binning**2`` and the white level keeps its meaning.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from isp import colorimetry
from isp.cfa import CFALayout
from isp.config import build, param
from isp.errors import ConfigError
from isp.frame import ColorMatrix
from isp.optics import OpticsConfig, focal_plane_illuminance_lux
from isp.sensor.qe import QEConfig, electrons_per_lux_second, photons_per_lux_second

__all__ = [
    "SensorMode",
    "LensConfig",
    "NoiseSwitches",
    "DCGConfig",
    "SensorConfig",
    "Exposure",
    "NOISE_SOURCES",
    "ENGINES",
    "DEFAULT_LUMINANCE_CD_M2",
    "build_sensor",
]

#: Luminance of the scene's white (1.0) when a scene does not say (bright overcast daylight).
DEFAULT_LUMINANCE_CD_M2 = 1000.0


@dataclass(frozen=True, kw_only=True)
class SensorMode:
    width: int = param(doc="read-out width", unit="px", range=(2, 100_000))
    height: int = param(doc="read-out height", unit="px", range=(2, 100_000))
    cfa: str = param("RGGB", doc="CFA layout of the read-out (RGGB, ..., quad_RGGB, ...)")
    binning: int = param(1, choices=(1, 2), doc="photodiodes binned per side into one output pixel")
    bit_depth: int | None = param(None, range=(8, 16), doc="ADC bit depth of this mode; null: the sensor's")
    black_level: float | None = param(None, range=(0, 65535), unit="DN", doc="pedestal of this mode; null: the sensor's")
    white_level: float | None = param(None, range=(1, 65535), unit="DN", doc="saturation level of this mode; null: the sensor's")
    dcg_merge: bool = param(
        False, doc="read both conversion gains and merge them into one frame (the high-gain read-out scaled, the low-gain where it saturates)"
    )


@dataclass(frozen=True, kw_only=True)
class LensConfig:
    focal_length_mm: float = param(doc="focal length", unit="mm", range=(0.5, 1000.0))
    f_number: float = param(doc="aperture f-number", range=(0.5, 64.0))
    equivalent_focal_length_mm: float | None = param(None, unit="mm", range=(1.0, 2000.0), doc="35 mm-equivalent focal length")
    optics: OpticsConfig = param(OpticsConfig(), doc="transmission, relative illumination, colour shading, PSF, lateral CA")


#: Sensor simulation engines (``sensor.engine``). ``reference``: :mod:`isp.sensor.capture`'s
#: stage-by-stage array code, each noise source drawn from its own NumPy/CuPy generator stream.
#: ``fused``: :mod:`isp.sensor.fused`, the same model and distributions in one pass (one CUDA
#: kernel on the GPU, its array-module reference elsewhere) with counter-based Philox draws, so
#: the same seed gives the same frame on both backends (but for rare 1 DN float-rounding
#: differences) and a window draws what the same pixels draw in the whole frame; its draws
#: differ from the reference engine's. The default stays ``reference`` until the kernel has
#: been measured on a GPU.
ENGINES = ("reference", "fused")

#: The noise sources, each switched on and off on its own (``sensor.noise.<name>``).
NOISE_SOURCES = ("shot", "dark_current", "prnu", "dsnu", "read", "row", "defects", "mismatch")


@dataclass(frozen=True, kw_only=True)
class NoiseSwitches:
    shot: bool = param(True, doc="photon shot noise (Poisson)")
    dark_current: bool = param(True, doc="dark current and its shot noise")
    prnu: bool = param(True, doc="photo-response non-uniformity (fixed per-pixel gain)")
    dsnu: bool = param(True, doc="dark-signal non-uniformity (fixed per-pixel offset)")
    read: bool = param(True, doc="read noise")
    row: bool = param(True, doc="row noise (one offset per row per frame)")
    defects: bool = param(True, doc="hot and dead pixels")
    mismatch: bool = param(True, doc="sub-pixel sensitivity mismatch within a Quad Bayer quad")

    def on(self) -> tuple[str, ...]:
        return tuple(name for name in NOISE_SOURCES if getattr(self, name))


@dataclass(frozen=True, kw_only=True)
class DCGConfig:
    ratio: float = param(4.0, range=(1.0, 64.0), doc="high over low conversion gain")
    hcg_read_noise_e: float = param(doc="read noise of the high-gain read-out", unit="e-", range=(0.0, 1000.0))
    hcg_from_gain: float = param(
        4.0, range=(1.0, 1024.0), doc="analog gain from which the read-out switches to high conversion gain"
    )
    merge_threshold: float = param(
        0.9, range=(0.1, 1.0), doc="fraction of the high-gain range above which a merged frame takes the low-gain read-out"
    )


@dataclass(frozen=True)
class Exposure:
    """What the optics deliver to one pixel during one exposure.

    ``electrons_per_unit`` is, per channel (R, G, B), the mean photo-electrons a scene value of
    1.0 (the white of the scene's luminance) produces in one output pixel; ``photons_per_unit``
    the photons (380-780 nm) that reach that pixel for it.
    """

    time_s: float
    luminance_cd_m2: float
    illuminance_lux: float
    electrons_per_unit: np.ndarray
    photons_per_unit: float


@dataclass(frozen=True, kw_only=True)
class SensorConfig:
    """A sensor model, from the ``sensor`` config group (every value documented in its YAML)."""

    name: str = param(doc="sensor name")
    description: str = param("", doc="what the sensor is and where it is used")
    provenance: dict = param({}, doc="for each parameter: 'published: source' or 'estimated: reason'")
    pixel_pitch_um: float = param(doc="native pixel pitch", unit="µm", range=(0.3, 20.0))
    bit_depth: int = param(doc="ADC bit depth", range=(8, 16))
    black_level: float = param(doc="black-level pedestal", unit="DN", range=(0, 65535))
    white_level: float = param(doc="saturation level", unit="DN", range=(1, 65535))
    base_iso: float = param(100.0, range=(1.0, 1_000_000.0), doc="ISO at unity analog gain")
    iso: float = param(100.0, range=(1.0, 1_000_000.0), doc="ISO of the capture")
    max_analog_gain: float = param(16.0, range=(1.0, 1024.0), doc="highest analog gain; ISO beyond it is digital gain")
    exposure_time_s: float | None = param(
        None, range=(0.0, 3600.0), unit="s", doc="exposure time; null: auto-exposure (see exposure_scale)"
    )
    exposure_scale: float = param(
        1.0,
        range=(0.0, 100.0),
        doc="auto-exposure: the fraction of the saturation signal that the scene's white gives in the most sensitive channel",
    )
    color_response: list[list[float]] = param(
        shape=(3, 3), range=(-10.0, 10.0), doc="linear sRGB (D65) to camera RGB, rows R, G, B; each row's scale is set by the QE"
    )
    qe: QEConfig = param(doc="quantum efficiency per CFA colour")
    full_well_e: float = param(doc="full-well capacity of one photodiode at low conversion gain", unit="e-", range=(10.0, 1e7))
    conversion_gain_dn_e: float = param(
        doc="ADC codes per electron of one photodiode at analog gain 1 (low conversion gain)", unit="DN/e-", range=(1e-5, 100.0)
    )
    read_noise_e: float = param(doc="read noise at low conversion gain", unit="e-", range=(0.0, 1000.0))
    read_noise_tukey_lambda: float | None = param(
        None, range=(-0.3, 1.0), doc="Tukey-lambda shape of the read noise (negative: heavier tails); null: Gaussian"
    )
    dark_current_e_s: float = param(doc="dark current of one photodiode at dark_reference_c", unit="e-/s", range=(0.0, 1e6))
    dark_reference_c: float = param(45.0, unit="°C", range=(-60.0, 150.0), doc="temperature at which dark_current_e_s holds")
    dark_doubling_c: float = param(6.0, unit="°C", range=(1.0, 50.0), doc="temperature rise that doubles the dark current")
    temperature_c: float = param(45.0, unit="°C", range=(-60.0, 150.0), doc="die temperature of the capture")
    prnu: float = param(doc="photo-response non-uniformity of one photodiode (std of its gain)", unit="fraction", range=(0.0, 0.5))
    dsnu_e: float = param(doc="dark-signal non-uniformity of one photodiode (std of its offset)", unit="e-", range=(0.0, 1e4))
    row_noise_e: float = param(0.0, unit="e-", range=(0.0, 1e4), doc="std of the offset shared by one row in one frame")
    hot_pixel_rate: float = param(0.0, range=(0.0, 0.1), doc="fraction of photodiodes that are hot")
    hot_pixel_dark_e_s: float = param(5000.0, unit="e-/s", range=(0.0, 1e9), doc="dark current of a hot photodiode")
    dead_pixel_rate: float = param(0.0, range=(0.0, 0.1), doc="fraction of photodiodes with no response")
    subpixel_mismatch: float = param(
        0.0, unit="fraction", range=(0.0, 0.5), doc="std of the fixed gain of each position within a Quad Bayer quad"
    )
    binning_model: str = param(
        "charge", choices=("charge", "digital"), doc="charge: binned charge read once; digital: four read-outs summed"
    )
    dcg: DCGConfig | None = param(None, doc="dual conversion gain; null when the sensor has one conversion gain")
    noise: NoiseSwitches = param(NoiseSwitches(), doc="which noise sources are on")
    engine: str = param(
        "reference",
        choices=ENGINES,
        doc="how the noise is simulated: reference (one array pass per noise source, NumPy/CuPy generators) "
        "or fused (one GPU kernel, Philox counter-based draws; same distributions, different draws)",
    )
    instance_seed: int = param(0, range=(0, 2**32 - 1), doc="which physical part: seeds its fixed patterns (PRNU, DSNU, defects)")
    modes: dict = param(doc="read-out modes by name: width, height, cfa, binning")
    mode: str = param(doc="the read-out mode to capture in")
    lens: LensConfig = param(doc="the module's lens")
    mode_info: SensorMode = field(init=False)

    def __post_init__(self) -> None:
        modes = {name: build(SensorMode, value, f"sensor.modes.{name}") for name, value in self.modes.items()}
        if self.mode not in modes:
            raise ConfigError(f"sensor.mode={self.mode!r} is not a mode of {self.name}; choose one of {', '.join(modes)}")
        object.__setattr__(self, "mode_info", modes[self.mode])
        CFALayout.from_name(self.mode_info.cfa)
        bits, black, white = self.adc
        if white <= black:
            raise ConfigError(f"sensor.white_level={white} must be above sensor.black_level={black} (mode {self.mode})")
        if white > 2**bits - 1:
            raise ConfigError(f"sensor.white_level={white} exceeds the {bits}-bit ADC range (max {2**bits - 1}, mode {self.mode})")
        if self.iso < self.base_iso:
            raise ConfigError(f"sensor.iso={self.iso} is below the base ISO {self.base_iso}")
        if self.mode_info.dcg_merge and self.dcg is None:
            raise ConfigError(f"sensor.modes.{self.mode}.dcg_merge needs sensor.dcg (the sensor has one conversion gain)")
        response = np.asarray(self.color_response, dtype=np.float64)
        if abs(np.linalg.det(response)) < 1e-6:
            raise ConfigError("sensor.color_response is singular: camera RGB must determine the scene colour")
        if np.any(response.sum(axis=1) <= 0):
            raise ConfigError("sensor.color_response: every row must give a positive response to white")

    # -- geometry and read-out -------------------------------------------------------------------

    @property
    def cfa(self) -> CFALayout:
        return CFALayout.from_name(self.mode_info.cfa)

    @property
    def readout(self) -> tuple[int, int]:
        """``(height, width)`` of the mosaic in the current mode."""
        return self.mode_info.height, self.mode_info.width

    @property
    def binning(self) -> int:
        return self.mode_info.binning

    @property
    def output_pitch_um(self) -> float:
        """Pitch of one output pixel (native pitch times binning)."""
        return self.pixel_pitch_um * self.binning

    @property
    def adc(self) -> tuple[int, float, float]:
        """``(bit depth, black level, white level)`` of the current mode."""
        m = self.mode_info
        return (
            m.bit_depth if m.bit_depth is not None else self.bit_depth,
            m.black_level if m.black_level is not None else self.black_level,
            m.white_level if m.white_level is not None else self.white_level,
        )

    # -- gains -----------------------------------------------------------------------------------

    @property
    def gains(self) -> tuple[float, float]:
        """``(analog, digital)`` gain for the configured ISO."""
        total = self.iso / self.base_iso
        analog = min(total, self.max_analog_gain)
        return analog, total / analog

    @property
    def high_conversion_gain(self) -> bool:
        """Whether the read-out uses the high conversion gain (a merged DCG frame uses both)."""
        return self.dcg is not None and (self.mode_info.dcg_merge or self.gains[0] >= self.dcg.hcg_from_gain)

    @property
    def adc_gain_dn_e(self) -> float:
        """DN per output-pixel electron at the ADC (before digital gain)."""
        analog = self.gains[0]
        k = self.conversion_gain_dn_e * analog / self.binning**2
        if self.mode_info.dcg_merge:
            # The merged frame keeps the high-gain read-out's scale and gains bits for the
            # low-gain range above it.
            k *= self.dcg.ratio
        return k

    @property
    def system_gain_dn_e(self) -> float:
        """EMVA 1288's overall system gain ``K`` in DN/e- (analog and digital gain included)."""
        return self.adc_gain_dn_e * self.gains[1]

    @property
    def full_well_output_e(self) -> float:
        """Charge one output pixel holds before it clips: the binned photodiodes' full wells,
        reduced by the conversion-gain ratio at high conversion gain (a smaller floating diffusion)."""
        well = self.full_well_e * self.binning**2
        if self.high_conversion_gain and not self.mode_info.dcg_merge:
            well /= self.dcg.ratio
        return well

    @property
    def saturation_e(self) -> float:
        """Output-pixel charge at which the frame saturates: full well or ADC range, whichever first."""
        _, black, white = self.adc
        return min(self.full_well_output_e, (white - black) / self.system_gain_dn_e)

    @property
    def read_noise_output_e(self) -> float:
        """Read noise of one output pixel in electrons (binning and conversion gain included)."""
        sigma = self.dcg.hcg_read_noise_e if self.high_conversion_gain else self.read_noise_e
        if self.binning > 1 and self.binning_model == "digital":
            sigma *= self.binning  # binning**2 independent read-outs summed
        return sigma

    @property
    def dark_current_output_e_s(self) -> float:
        """Mean dark current of one output pixel at the capture temperature."""
        doubling = 2.0 ** ((self.temperature_c - self.dark_reference_c) / self.dark_doubling_c)
        return self.dark_current_e_s * doubling * self.binning**2

    # -- light -----------------------------------------------------------------------------------

    def exposure(
        self,
        luminance_cd_m2: float = DEFAULT_LUMINANCE_CD_M2,
        exposure_time_s: float | None = None,
        white_rgb: Any = (1.0, 1.0, 1.0),
    ) -> Exposure:
        """Electrons per output pixel for a scene white of ``luminance_cd_m2`` (on the optical axis).

        The exposure time is ``exposure_time_s`` if given, else ``sensor.exposure_time_s``, else
        the auto-exposure time that brings the scene's white (linear sRGB ``white_rgb``) in its
        strongest camera channel to ``exposure_scale`` times the saturation signal.
        """
        if luminance_cd_m2 <= 0:
            raise ConfigError(f"scene luminance {luminance_cd_m2} cd/m² must be positive")
        lens = self.lens
        lux = focal_plane_illuminance_lux(luminance_cd_m2, lens.f_number, lens.optics.transmission)
        area_m2 = (self.output_pitch_um * 1e-6) ** 2
        per_lux_s = electrons_per_lux_second(self.qe) * area_m2
        t = exposure_time_s if exposure_time_s is not None else self.exposure_time_s
        if t is None:
            strongest = float(np.max(self.response() @ np.asarray(white_rgb, dtype=np.float64)))
            t = self.exposure_scale * self.saturation_e / (lux * per_lux_s.max() * strongest)
        return Exposure(
            time_s=float(t),
            luminance_cd_m2=float(luminance_cd_m2),
            illuminance_lux=float(lux),
            electrons_per_unit=per_lux_s * lux * t,
            photons_per_unit=float(photons_per_lux_second() * area_m2 * lux * t),
        )

    def response(self) -> np.ndarray:
        """Linear sRGB to camera RGB with each channel's sensitivity: white gives the relative
        electrons of each channel, the most sensitive one 1."""
        rows = np.asarray(self.color_response, dtype=np.float64)
        rows = rows / rows.sum(axis=1, keepdims=True)
        sensitivity = electrons_per_lux_second(self.qe)
        return rows * (sensitivity / sensitivity.max())[:, None]

    def color_matrix(self) -> ColorMatrix:
        """The sensor's calibration as a DNG-style ColorMatrix (XYZ to camera RGB, D65)."""
        return ColorMatrix(self.response() @ colorimetry.XYZ_TO_SRGB, "D65", 6504.0)

    def noise_profile(self) -> tuple[tuple[float, float], ...]:
        """DNG NoiseProfile ``(S, O)`` for every CFA colour: variance = S·x + O, with x the signal
        normalised so that white is 1 (shot, read, row and quantisation noise)."""
        _, black, white = self.adc
        scale = self.system_gain_dn_e / (white - black)
        temporal_e2 = self.read_noise_output_e**2 + self.row_noise_e**2
        offset = temporal_e2 * scale**2 + 1.0 / (12.0 * (white - black) ** 2)
        return ((scale, offset),) * 3


def build_sensor(cfg: Any) -> SensorConfig:
    """Validate the ``sensor`` config node."""
    return build(SensorConfig, cfg, "sensor")
