"""Image-quality metrics, computed on the host."""

from isp.metrics.colorchecker import colorchecker_delta_e, linear_srgb, patch_means
from isp.metrics.noise import detrended_snr, grey_patch_snr, neutral_patches

__all__ = ["colorchecker_delta_e", "linear_srgb", "patch_means", "grey_patch_snr", "detrended_snr", "neutral_patches"]
