"""Image-quality metrics, computed on the host."""

from isp.metrics.colorchecker import colorchecker_delta_e, linear_srgb, patch_means

__all__ = ["colorchecker_delta_e", "linear_srgb", "patch_means"]
