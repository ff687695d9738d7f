"""Sensor characterisation the EMVA 1288 way, on a simulated sensor.

:func:`simulate_emva` runs the measurement a lab would run on a real camera, with the sensor
model standing in for it: pairs of flat fields over a sweep of irradiance from dark to beyond
saturation at a fixed exposure time, with a pair of dark frames at each point; stacks of
frames at about half saturation and in the dark for PRNU and DSNU; pairs of dark frames over a
sweep of exposure times for the dark current. The light is uniform (the lens's relative
illumination, colour shading, PSF and lateral CA are switched off, as EMVA 1288 irradiates the
bare sensor) and defect pixels are off unless asked for (EMVA treats them apart, by
histogram). :mod:`isp.metrics.emva` analyses each CFA colour separately.

:func:`expected_emva` states what the measurement should find from the sensor's configuration
alone, so the two can be compared (``isp-sim experiment=emva`` writes both).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

import numpy as np

from isp.backend import Backend, to_host
from isp.cfa import B, G, R
from isp.config import param
from isp.errors import ConfigError
from isp.metrics.emva import DarkCurrentPoint, EmvaResult, ExposurePoint, NonuniformityData, analyze
from isp.optics import OpticsConfig
from isp.sensor import SensorConfig, capture, mismatch_tile, window_origin

__all__ = ["EmvaSettings", "EmvaMeasurement", "simulate_emva", "expected_emva", "full_well_e", "CHANNELS"]

#: The CFA colours analysed, by name.
CHANNELS = {"R": R, "G": G, "B": B}


@dataclass(frozen=True, kw_only=True)
class EmvaSettings:
    """The ``experiment=emva`` config: what the simulated measurement captures."""

    kind: str = param("emva", choices=("emva",))
    size: list[int] = param([256, 256], shape=(2,), range=(8, 100_000), doc="[height, width] of the measured window")
    points: int = param(80, range=(8, 1000), doc="irradiance steps from dark to beyond saturation")
    top: float = param(
        1.15, range=(1.01, 4.0), doc="highest irradiance as a multiple of the irradiance that saturates the least sensitive channel"
    )
    dense_from: float = param(
        0.85,
        range=(0.1, 0.99),
        doc="fraction of the most sensitive channel's saturation above which half the steps are spent (finds the variance peaks)",
    )
    exposure_time_s: float = param(0.01, range=(1e-6, 100.0), unit="s", doc="exposure time of the irradiance sweep")
    nonuniformity_frames: int = param(32, range=(2, 10_000), doc="frames averaged for PRNU and DSNU")
    nonuniformity_level: float = param(0.5, range=(0.05, 0.95), doc="PRNU frames' signal as a fraction of saturation")
    dark_times_s: list[float] = param([0.0, 0.25, 0.5, 1.0, 2.0], range=(0.0, 3600.0), unit="s", doc="exposure times of the dark-current sweep")
    defects: bool = param(False, doc="keep hot and dead pixels in the measurement")


@dataclass
class EmvaMeasurement:
    """The analysis of every CFA colour, what the configuration predicts, and the settings."""

    sensor: SensorConfig
    settings: EmvaSettings
    channels: dict[str, EmvaResult]
    expected: dict[str, Any]

    def to_dict(self) -> dict[str, Any]:
        return {
            "sensor": self.sensor.name,
            "mode": self.sensor.mode,
            "iso": self.sensor.iso,
            "settings": dataclasses.asdict(self.settings),
            "expected": self.expected,
            "channels": {name: result.to_dict() for name, result in self.channels.items()},
            "summary": self.summary(),
        }

    def summary(self) -> dict[str, dict[str, float | None]]:
        """Measured against expected for the headline figures, per channel."""
        rows: dict[str, dict[str, float | None]] = {}
        for name, r in self.channels.items():
            nu, dc = r.nonuniformity, r.dark_current
            rows[name] = {
                "system_gain_dn_per_e": r.system_gain_dn_per_e,
                "temporal_dark_noise_e": r.temporal_dark_noise_e,
                "full_well_e": full_well_e(r),
                "saturation_capacity_e": r.saturation_capacity_e,
                "prnu_percent": nu.prnu_percent if nu else None,
                "dsnu_e": nu.dsnu_e if nu else None,
                "dark_current_e_per_s": dc.dark_current_e_per_s if dc else None,
                "quantum_efficiency": r.quantum_efficiency,
                "dynamic_range_db": r.dynamic_range_db,
                "snr_max_db": r.snr_max_db,
            }
        return rows


def full_well_e(result: EmvaResult) -> float:
    """The charge at which the response stops rising: the plateau of the mean signal over K.

    EMVA 1288's saturation capacity is taken where the temporal variance peaks, which is a
    few shot-noise standard deviations below the level at which pixels clip; the plateau of
    the mean is that level itself (every pixel clipped: the full well, or the ADC range).
    """
    signal = np.asarray(result.mean_dn) - np.asarray(result.mean_dark_dn)
    return float(signal.max() / result.system_gain_dn_per_e)


def measurement_sensor(sensor: SensorConfig, settings: EmvaSettings) -> SensorConfig:
    """The sensor as the measurement sees it: uniform light, defects as the settings say."""
    lens = dataclasses.replace(sensor.lens, optics=OpticsConfig(transmission=sensor.lens.optics.transmission))
    noise = dataclasses.replace(sensor.noise, defects=sensor.noise.defects and settings.defects)
    return dataclasses.replace(sensor, lens=lens, noise=noise, exposure_time_s=settings.exposure_time_s)


def _levels(settings: EmvaSettings, least_sensitive: float) -> np.ndarray:
    """Irradiance steps as fractions of the irradiance that saturates the most sensitive
    channel: even up to ``dense_from``, then as many again up to ``top`` times the irradiance
    that saturates the least sensitive one (``least_sensitive`` is its relative sensitivity),
    where the variance peaks and the response plateaus have to be found."""
    coarse = settings.points // 2
    low = np.linspace(0.0, settings.dense_from, coarse, endpoint=False)
    high = np.linspace(settings.dense_from, settings.top / least_sensitive, settings.points - coarse)
    return np.concatenate([low, high])


def simulate_emva(sensor: SensorConfig, backend: Backend, settings: EmvaSettings | None = None, seed: int = 0) -> EmvaMeasurement:
    """Simulate the EMVA 1288 measurement of ``sensor`` at its configured mode and ISO and analyse it.

    Every frame has its own seed derived from ``seed``; the fixed patterns are those of
    ``sensor.instance_seed``, the same in every frame, as on a real part.
    """
    settings = settings or EmvaSettings()
    s = measurement_sensor(sensor, settings)
    h, w = settings.size
    th, tw = s.cfa.tile_shape
    shape = (h - h % th, w - w % tw)
    if shape[0] > s.readout[0] or shape[1] > s.readout[1] or 0 in shape:
        raise ConfigError(f"experiment.size={settings.size}: the window must fit the {s.mode} read-out {s.readout[0]}x{s.readout[1]}")
    xp = backend.xp
    white = xp.ones((*shape, 3), dtype=xp.float32)
    black = xp.zeros((*shape, 3), dtype=xp.float32)
    frame_seed = iter(np.random.SeedSequence(seed).generate_state(100_000, dtype=np.uint32))

    def frames(sensor_: SensorConfig, scene: Any, luminance: float, count: int) -> np.ndarray:
        return np.stack([to_host(capture(scene, sensor_, backend, int(next(frame_seed)), luminance_cd_m2=luminance).mosaic) for _ in range(count)])

    # Electrons per unit of scene at 1 cd/m²; luminance is linear in them (the camera equation).
    unit = s.exposure(1.0)
    per_cd = float(unit.electrons_per_unit.max())
    saturation = s.saturation_e
    points = []
    dark_pair = None
    sensitivity = unit.electrons_per_unit / per_cd
    for level in _levels(settings, float(sensitivity.min())):
        luminance = max(level * saturation / per_cd, 1e-12)
        photons = unit.photons_per_unit * luminance
        bright = frames(s, white if level > 0 else black, luminance, 2)
        dark_pair = frames(s, black, 1.0, 2)
        points.append(ExposurePoint(photons_per_pixel=photons, exposure_time_s=s.exposure_time_s, bright=bright, dark=dark_pair))

    luminance = settings.nonuniformity_level * saturation / per_cd
    nu = NonuniformityData(
        photons_per_pixel=unit.photons_per_unit * luminance,
        bright=frames(s, white, luminance, settings.nonuniformity_frames),
        dark=frames(s, black, 1.0, settings.nonuniformity_frames),
    )
    dark_points = [
        DarkCurrentPoint(exposure_time_s=t, dark=frames(dataclasses.replace(s, exposure_time_s=t), black, 1.0, 2)) for t in settings.dark_times_s
    ]
    masks = s.cfa.masks(shape)
    channels = {name: analyze(points, nu, dark_points, mask=masks[index]) for name, index in CHANNELS.items()}
    return EmvaMeasurement(sensor, settings, channels, expected_emva(s, settings, shape))


def expected_emva(sensor: SensorConfig, settings: EmvaSettings, shape: tuple[int, int] | None = None) -> dict[str, Any]:
    """What the EMVA 1288 measurement of ``sensor`` should find, from its configuration.

    - system gain: the configured conversion gain times analog and digital gain, over the
      binned photodiodes (:attr:`SensorConfig.system_gain_dn_e`);
    - temporal dark noise: read noise of the active conversion gain (twice it for digital 2×2
      binning), row noise, and the dark current's shot noise at the sweep's exposure time, in
      quadrature;
    - saturation capacity: the binned full well, or the ADC range if it clips first;
    - PRNU: the photodiodes' PRNU over ``binning`` (a mean of ``binning**2`` gains), with the
      realised sub-pixel mismatch of each colour in quadrature at full resolution;
    - DSNU: the photodiodes' DSNU times ``binning`` (a sum of ``binning**2`` offsets);
    - dark current: the photodiodes' dark current at the die temperature times ``binning**2``.
    """
    noise = sensor.noise
    dark_e = sensor.dark_current_output_e_s if noise.dark_current else 0.0
    read = sensor.read_noise_output_e if noise.read else 0.0
    row = sensor.row_noise_e if noise.row else 0.0
    prnu = (sensor.prnu / sensor.binning if noise.prnu else 0.0) * 100.0
    prnu_by_channel = dict.fromkeys(CHANNELS, prnu)
    if noise.mismatch and sensor.subpixel_mismatch > 0 and sensor.binning == 1 and not sensor.cfa.is_bayer:
        tile = mismatch_tile(sensor)
        for name, colour in CHANNELS.items():
            spread = np.sqrt(np.mean((tile[sensor.cfa.pattern_array == colour] - 1.0) ** 2)) * 100.0
            prnu_by_channel[name] = float(np.hypot(prnu, spread))
    return {
        "system_gain_dn_per_e": sensor.system_gain_dn_e,
        "read_noise_e": read,
        "temporal_dark_noise_e": float(np.sqrt(read**2 + row**2 + dark_e * settings.exposure_time_s)),
        "saturation_capacity_e": sensor.saturation_e,
        "full_well_e": sensor.full_well_output_e,
        "prnu_percent": prnu_by_channel,
        "dsnu_e": sensor.dsnu_e * sensor.binning if noise.dsnu else 0.0,
        "dark_current_e_per_s": dark_e,
        "window_origin": list(window_origin(sensor, shape)) if shape else None,
    }
