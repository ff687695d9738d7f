"""Sensor models: scene radiance to a raw mosaic, photons to electrons to DN (:func:`capture`)."""

from isp.sensor.capture import (
    FixedPatterns,
    capture,
    digitise,
    fixed_patterns,
    ideal_capture,
    mean_electrons,
    mismatch_tile,
    sensor_dn,
    window_origin,
)
from isp.sensor.model import (
    DEFAULT_LUMINANCE_CD_M2,
    ENGINES,
    NOISE_SOURCES,
    DCGConfig,
    Exposure,
    LensConfig,
    NoiseSwitches,
    SensorConfig,
    SensorMode,
    build_sensor,
)
from isp.sensor.qe import QECurve, QEConfig

__all__ = [
    "SensorConfig",
    "SensorMode",
    "LensConfig",
    "NoiseSwitches",
    "DCGConfig",
    "QEConfig",
    "QECurve",
    "Exposure",
    "FixedPatterns",
    "NOISE_SOURCES",
    "ENGINES",
    "DEFAULT_LUMINANCE_CD_M2",
    "build_sensor",
    "capture",
    "ideal_capture",
    "mean_electrons",
    "fixed_patterns",
    "window_origin",
    "mismatch_tile",
    "digitise",
    "sensor_dn",
]
