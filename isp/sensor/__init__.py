"""Sensor models: scene radiance to a raw mosaic (:func:`capture`)."""

from isp.sensor.model import LensConfig, SensorConfig, SensorMode, build_sensor, capture

__all__ = ["SensorConfig", "SensorMode", "LensConfig", "build_sensor", "capture"]
