"""EMVA 1288 Release 4.0 Linear: a camera's gain, noise, sensitivity and nonuniformity from its frames.

Reference: EMVA Standard 1288, *Standard for Characterization of Image Sensors and Cameras*,
Release 4.0 Linear (European Machine Vision Association, 2021), which assumes the linear camera
model ``mu_y = mu_y.dark + K eta mu_p`` with ``sigma_y^2 = K^2 (sigma_d^2 + mu_e) + sigma_q^2``.

Inputs are raw frames in DN with the black-level offset still in. All statistics are float64
over the pixels of an optional mask (for example one CFA colour); per exposure point:

- ``mu_y = (mean(A) + mean(B)) / 2`` of the two frames ``A``, ``B``, and likewise ``mu_y.dark``;
- ``sigma_y^2 = mean((A - B)^2) / 2 - (mean(A) - mean(B))^2 / 2`` (the difference method, which
  removes the fixed pattern), and likewise ``sigma_y.dark^2``.

From the sequence of exposure points, sorted by photons per pixel ``mu_p``:

- Saturation is the point of maximum temporal variance ``sigma_y^2``; ``mu_p.sat`` is its
  irradiation and ``mu_e.sat = eta mu_p.sat`` the saturation capacity.
- The fit range runs from the lowest point to the last point whose ``mu_y - mu_y.dark`` is at
  most 70 % of ``mu_y.sat - mu_y.dark``.
- System gain ``K`` (DN/e-): least squares through the origin of
  ``sigma_y^2 - sigma_y.dark^2 = K (mu_y - mu_y.dark)`` over the fit range (photon transfer).
- Responsivity ``R`` (DN/photon): least squares through the origin of
  ``mu_y - mu_y.dark = R mu_p`` over the fit range; quantum efficiency ``eta = R / K``.
- Temporal dark noise ``sigma_d = sqrt(sigma_y.dark^2 - sigma_q^2) / K`` (e-) with
  ``sigma_q^2 = 1/12 DN^2``, from the dark variance at the shortest exposure time. Below
  ``sigma_y.dark^2 = 0.24 DN^2`` (0.49 DN) quantisation dominates and the standard gives only the
  upper limit ``sigma_d < 0.40 / K``: that limit is reported and flagged.
- Absolute sensitivity threshold, the irradiation at which ``SNR = 1`` (the exact solution of the
  SNR model): ``mu_e.min = sqrt(sigma_y.dark^2 / K^2 + 1/4) + 1/2``, ``mu_p.min = mu_e.min / eta``.
- ``SNR_max = sqrt(mu_e.sat)``; dynamic range ``DR = mu_p.sat / mu_p.min``, in dB ``20 log10 DR``.
- Measured SNR ``(mu_y - mu_y.dark) / sigma_y``; model
  ``SNR(mu_p) = eta mu_p / sqrt(sigma_d^2 + sigma_q^2 / K^2 + eta mu_p)``.

Nonuniformity, from ``L`` frames at about 50 % of saturation and ``L`` dark frames: the spatial
variance of the averaged image, less the residual temporal noise of the average,
``s_y^2 = var(<y>) - sigma_y.stack^2 / L``, where ``sigma_y.stack^2`` is the mean over pixels of
each pixel's variance across the stack. ``DSNU = s_y.dark / K`` (e-) and
``PRNU = sqrt(s_y.50^2 - s_y.dark^2) / (mu_y.50 - mu_y.dark)`` (%).

Dark current, from dark frame pairs at several exposure times: a straight-line fit of
``mu_y.dark`` against exposure time gives the dark current ``slope / K`` (e-/s) and the offset at
zero exposure (DN); the fit of ``sigma_y.dark^2`` gives the same current as ``slope / K^2``.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import numpy as np

from isp.errors import InputError
from isp.io.images import atomic_path

__all__ = [
    "DarkCurrentPoint",
    "DarkCurrentResult",
    "EmvaResult",
    "ExposurePoint",
    "NonuniformityData",
    "NonuniformityResult",
    "analyze",
    "plot",
]

QUANTISATION_VARIANCE_DN2 = 1.0 / 12.0
"""``sigma_q^2``: variance of uniform rounding to integer DN."""

QUANTISATION_LIMIT_DN2 = 0.24
"""Dark variance below which EMVA 1288 reports ``sigma_d`` only as an upper limit."""

FIT_RANGE_FRACTION = 0.7
"""Upper end of the sensitivity fit range, as a fraction of the saturation signal."""


@dataclass(frozen=True)
class ExposurePoint:
    """Two frames at one irradiation and two dark frames at the same exposure time.

    ``bright`` and ``dark`` are ``(2, H, W)`` raw DN (integer or float, offset included).
    """

    photons_per_pixel: float
    exposure_time_s: float
    bright: np.ndarray
    dark: np.ndarray


@dataclass(frozen=True)
class NonuniformityData:
    """``L`` frames at about 50 % of saturation and ``L`` dark frames, each ``(L, H, W)`` raw DN."""

    photons_per_pixel: float
    bright: np.ndarray
    dark: np.ndarray


@dataclass(frozen=True)
class DarkCurrentPoint:
    """Two dark frames ``(2, H, W)`` raw DN at one exposure time."""

    exposure_time_s: float
    dark: np.ndarray


@dataclass(frozen=True)
class NonuniformityResult:
    """Spatial nonuniformity at about 50 % of saturation and in the dark."""

    photons_per_pixel: float
    frames: int
    mean_dn: float
    mean_dark_dn: float
    spatial_var_dn2: float
    spatial_var_dark_dn2: float
    temporal_var_stack_dn2: float
    temporal_var_stack_dark_dn2: float
    dsnu_dn: float
    dsnu_e: float
    prnu_percent: float


@dataclass(frozen=True)
class DarkCurrentResult:
    """Mean and temporal variance of the dark signal against exposure time, and their fits."""

    exposure_time_s: np.ndarray
    mean_dark_dn: np.ndarray
    var_dark_dn2: np.ndarray
    dark_signal_dn_per_s: float
    dark_offset_dn: float
    dark_current_e_per_s: float
    dark_current_from_variance_e_per_s: float


@dataclass(frozen=True)
class EmvaResult:
    """Everything :func:`analyze` measures; per-point arrays are sorted by photons per pixel."""

    photons_per_pixel: np.ndarray
    exposure_time_s: np.ndarray
    mean_dn: np.ndarray
    mean_dark_dn: np.ndarray
    var_dn2: np.ndarray
    var_dark_dn2: np.ndarray
    snr: np.ndarray
    fit_mask: np.ndarray
    saturation_index: int
    system_gain_dn_per_e: float
    responsivity_dn_per_photon: float
    quantum_efficiency: float
    temporal_dark_noise_dn: float
    temporal_dark_noise_e: float
    dark_noise_quantisation_limited: bool
    saturation_photons: float
    saturation_capacity_e: float
    sensitivity_threshold_photons: float
    sensitivity_threshold_e: float
    snr_max: float
    snr_max_db: float
    dynamic_range: float
    dynamic_range_db: float
    pixels: int
    nonuniformity: NonuniformityResult | None = None
    dark_current: DarkCurrentResult | None = None

    def model_snr(self, photons_per_pixel: np.ndarray | float) -> np.ndarray:
        """The linear model's SNR at ``photons_per_pixel`` (no saturation, no nonuniformity)."""
        electrons = self.quantum_efficiency * np.asarray(photons_per_pixel, dtype=np.float64)
        dark_var_e2 = self.temporal_dark_noise_e**2 + QUANTISATION_VARIANCE_DN2 / self.system_gain_dn_per_e**2
        return electrons / np.sqrt(dark_var_e2 + electrons)

    def to_dict(self) -> dict[str, Any]:
        """Plain floats, ints, bools, lists and dicts (non-finite numbers as ``None``), for JSON."""
        return _plain(self)


def _plain(value: Any) -> Any:
    if isinstance(value, EmvaResult | NonuniformityResult | DarkCurrentResult):
        return {f.name: _plain(getattr(value, f.name)) for f in fields(value)}
    if isinstance(value, np.ndarray):
        return [_plain(v) for v in value.tolist()]
    if isinstance(value, np.generic):
        return _plain(value.item())
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    return value


def analyze(
    points: Sequence[ExposurePoint],
    nonuniformity: NonuniformityData | None = None,
    dark_current: Sequence[DarkCurrentPoint] | None = None,
    mask: np.ndarray | None = None,
) -> EmvaResult:
    """The EMVA 1288 (Release 4.0 Linear) parameters of a camera from its measurement frames.

    Parameters
    ----------
    points
        At least 3 exposure points, from dark to beyond saturation, in any order.
    nonuniformity
        Frame stacks at about 50 % of saturation and dark, for DSNU and PRNU.
    dark_current
        Dark frame pairs at two or more exposure times, for the dark current.
    mask
        Boolean ``(H, W)``: the pixels to include (for example one CFA colour); default all.

    Raises
    ------
    InputError
        Too few points, frames that are not ``(2, H, W)`` or differ in size, a bad mask, or no
        exposure point below saturation to fit.
    """
    if len(points) < 3:
        raise InputError(f"EMVA 1288 analysis needs at least 3 exposure points, got {len(points)}")
    shape = _frame_shape(points[0].bright, 2, "exposure point 0 bright frames")
    mask = _check_mask(mask, shape)
    for i, point in enumerate(points):
        if not (np.isfinite(point.photons_per_pixel) and point.photons_per_pixel >= 0):
            raise InputError(f"exposure point {i}: photons_per_pixel={point.photons_per_pixel} must be finite and >= 0")
        for name in ("bright", "dark"):
            _check_frames(getattr(point, name), 2, shape, f"exposure point {i} {name} frames")

    order = sorted(range(len(points)), key=lambda i: points[i].photons_per_pixel)
    points = [points[i] for i in order]
    photons = np.array([p.photons_per_pixel for p in points], dtype=np.float64)
    times = np.array([p.exposure_time_s for p in points], dtype=np.float64)
    mean, var = np.array([_pair_stats(p.bright, mask) for p in points]).T
    mean_dark, var_dark = np.array([_pair_stats(p.dark, mask) for p in points]).T
    signal = mean - mean_dark

    saturation = int(np.argmax(var))
    fit_mask = (np.arange(len(points)) <= saturation) & (signal <= FIT_RANGE_FRACTION * signal[saturation])
    if np.count_nonzero(fit_mask) < 2:
        raise InputError(
            f"no exposure point below saturation to fit: {np.count_nonzero(fit_mask)} point(s) lie below "
            f"{FIT_RANGE_FRACTION:.0%} of the saturation signal ({signal[saturation]:.1f} DN above dark, at "
            f"{photons[saturation]:.4g} photons/pixel); the fit needs at least 2"
        )
    gain = _slope_through_origin(signal[fit_mask], (var - var_dark)[fit_mask])
    responsivity = _slope_through_origin(photons[fit_mask], signal[fit_mask])
    if not gain > 0 or not responsivity > 0:
        raise InputError(
            f"the photon transfer fit gives K = {gain:.4g} DN/e- and R = {responsivity:.4g} DN/photon; "
            "both must be positive (do the exposure points go from dark to saturation?)"
        )
    eta = responsivity / gain

    shortest = times == times.min()
    measured_dark_var = float(var_dark[shortest].mean())
    quantisation_limited = measured_dark_var < QUANTISATION_LIMIT_DN2
    dark_var = max(measured_dark_var, QUANTISATION_LIMIT_DN2)
    sigma_d = math.sqrt(dark_var - QUANTISATION_VARIANCE_DN2) / gain

    saturation_e = eta * photons[saturation]
    threshold_e = math.sqrt(dark_var / gain**2 + 0.25) + 0.5
    dynamic_range = saturation_e / threshold_e
    snr_max = math.sqrt(saturation_e)
    with np.errstate(divide="ignore", invalid="ignore"):
        snr = signal / np.sqrt(var)

    return EmvaResult(
        photons_per_pixel=photons,
        exposure_time_s=times,
        mean_dn=mean,
        mean_dark_dn=mean_dark,
        var_dn2=var,
        var_dark_dn2=var_dark,
        snr=snr,
        fit_mask=fit_mask,
        saturation_index=saturation,
        system_gain_dn_per_e=gain,
        responsivity_dn_per_photon=responsivity,
        quantum_efficiency=eta,
        temporal_dark_noise_dn=math.sqrt(dark_var),
        temporal_dark_noise_e=sigma_d,
        dark_noise_quantisation_limited=quantisation_limited,
        saturation_photons=float(photons[saturation]),
        saturation_capacity_e=saturation_e,
        sensitivity_threshold_photons=threshold_e / eta,
        sensitivity_threshold_e=threshold_e,
        snr_max=snr_max,
        snr_max_db=20.0 * math.log10(snr_max),
        dynamic_range=dynamic_range,
        dynamic_range_db=20.0 * math.log10(dynamic_range),
        pixels=int(np.count_nonzero(mask)),
        nonuniformity=None if nonuniformity is None else _nonuniformity(nonuniformity, shape, mask, gain),
        dark_current=None if dark_current is None else _dark_current(dark_current, shape, mask, gain),
    )


def _frame_shape(frames: Any, count: int | None, what: str) -> tuple[int, int]:
    frames = np.asarray(frames)
    if frames.ndim != 3 or (count is not None and frames.shape[0] != count):
        expected = f"({count}, H, W)" if count is not None else "(L, H, W)"
        raise InputError(f"{what} have shape {frames.shape}; expected {expected}")
    return frames.shape[1], frames.shape[2]


def _check_frames(frames: Any, count: int | None, shape: tuple[int, int], what: str) -> None:
    got = _frame_shape(frames, count, what)
    if got != shape:
        raise InputError(f"{what} are {got[0]}x{got[1]} pixels but exposure point 0 is {shape[0]}x{shape[1]}; all frames must be the same size")


def _check_mask(mask: np.ndarray | None, shape: tuple[int, int]) -> np.ndarray:
    if mask is None:
        return np.ones(shape, dtype=bool)
    mask = np.asarray(mask)
    if mask.dtype != bool or mask.shape != shape:
        raise InputError(f"mask must be a boolean array of the frame shape {shape}, got {mask.dtype} {mask.shape}")
    if np.count_nonzero(mask) < 2:
        raise InputError(f"mask selects {np.count_nonzero(mask)} pixel(s); the statistics need at least 2")
    return mask


def _pair_stats(frames: np.ndarray, mask: np.ndarray) -> tuple[float, float]:
    """Mean and temporal variance (difference method) of a frame pair over the masked pixels."""
    a = np.asarray(frames[0], dtype=np.float64)[mask]
    b = np.asarray(frames[1], dtype=np.float64)[mask]
    mean_a, mean_b = a.mean(), b.mean()
    var = 0.5 * np.mean(np.square(a - b)) - 0.5 * (mean_a - mean_b) ** 2
    return float(0.5 * (mean_a + mean_b)), float(var)


def _slope_through_origin(x: np.ndarray, y: np.ndarray) -> float:
    return float(np.dot(x, y) / np.dot(x, x))


def _stack_stats(stack: np.ndarray, mask: np.ndarray) -> tuple[float, float, float]:
    """Mean, spatial variance corrected for residual temporal noise, and temporal variance of a stack."""
    stack = np.asarray(stack, dtype=np.float64)[:, mask]
    frames = stack.shape[0]
    temporal = float(stack.var(axis=0, ddof=1).mean())
    average = stack.mean(axis=0)
    spatial = float(average.var(ddof=1)) - temporal / frames
    return float(average.mean()), spatial, temporal


def _nonuniformity(data: NonuniformityData, shape: tuple[int, int], mask: np.ndarray, gain: float) -> NonuniformityResult:
    for name in ("bright", "dark"):
        _check_frames(getattr(data, name), None, shape, f"nonuniformity {name} frames")
    frames = np.shape(data.bright)[0]
    if frames < 2 or np.shape(data.dark)[0] != frames:
        raise InputError(
            f"nonuniformity needs the same number (>= 2) of bright and dark frames, got {frames} bright and {np.shape(data.dark)[0]} dark"
        )
    mean, spatial, temporal = _stack_stats(data.bright, mask)
    mean_dark, spatial_dark, temporal_dark = _stack_stats(data.dark, mask)
    dsnu_dn = math.sqrt(max(spatial_dark, 0.0))
    prnu = math.sqrt(max(spatial - spatial_dark, 0.0)) / (mean - mean_dark) if mean > mean_dark else math.nan
    return NonuniformityResult(
        photons_per_pixel=float(data.photons_per_pixel),
        frames=frames,
        mean_dn=mean,
        mean_dark_dn=mean_dark,
        spatial_var_dn2=spatial,
        spatial_var_dark_dn2=spatial_dark,
        temporal_var_stack_dn2=temporal,
        temporal_var_stack_dark_dn2=temporal_dark,
        dsnu_dn=dsnu_dn,
        dsnu_e=dsnu_dn / gain,
        prnu_percent=100.0 * prnu,
    )


def _dark_current(points: Sequence[DarkCurrentPoint], shape: tuple[int, int], mask: np.ndarray, gain: float) -> DarkCurrentResult:
    for i, point in enumerate(points):
        _check_frames(point.dark, 2, shape, f"dark-current point {i} frames")
    times = np.array([p.exposure_time_s for p in points], dtype=np.float64)
    if np.unique(times).size < 2:
        raise InputError(f"dark current needs dark frames at 2 or more exposure times, got {np.unique(times).tolist()} s")
    order = np.argsort(times, kind="stable")
    times = times[order]
    mean, var = np.array([_pair_stats(points[i].dark, mask) for i in order]).T
    slope, offset = np.polyfit(times, mean, 1)
    var_slope, _ = np.polyfit(times, var, 1)
    return DarkCurrentResult(
        exposure_time_s=times,
        mean_dark_dn=mean,
        var_dark_dn2=var,
        dark_signal_dn_per_s=float(slope),
        dark_offset_dn=float(offset),
        dark_current_e_per_s=float(slope / gain),
        dark_current_from_variance_e_per_s=float(var_slope / gain**2),
    )


def plot(result: EmvaResult, directory: str | os.PathLike) -> list[Path]:
    """Write ``ptc.png``, ``snr.png``, ``responsivity.png`` and, with dark-current data,
    ``dark_current.png`` into ``directory`` (created if missing); return their paths."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    figures = {
        "ptc.png": _plot_ptc(result),
        "snr.png": _plot_snr(result),
        "responsivity.png": _plot_responsivity(result),
    }
    if result.dark_current is not None:
        figures["dark_current.png"] = _plot_dark_current(result.dark_current)
    paths = []
    for name, figure in figures.items():
        path = directory / name
        with atomic_path(path) as tmp:
            figure.savefig(tmp, format="png", dpi=120)
        paths.append(path)
    return paths


def _figure() -> tuple[Any, Any]:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(7.0, 5.0), layout="constrained")
    FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    axes.grid(True, alpha=0.3)
    return figure, axes


def _mark_range(axes: Any, result: EmvaResult, x: np.ndarray, y: np.ndarray) -> None:
    """Fit-range points filled, the others hollow, and the saturation point circled."""
    fit = result.fit_mask
    axes.plot(x[fit], y[fit], "o", color="C0", label="measured, in fit range")
    axes.plot(x[~fit], y[~fit], "o", mfc="none", color="C0", label="measured")
    sat = result.saturation_index
    axes.plot(x[sat], y[sat], "s", ms=12, mfc="none", color="C3", label="saturation")
    axes.axvspan(0.0, x[fit].max(), color="C2", alpha=0.1, label=f"fit range (0-{FIT_RANGE_FRACTION:.0%} of saturation)")


def _plot_linear_fit(result: EmvaResult, x: np.ndarray, y: np.ndarray, slope: float, label: str, labels: tuple[str, str, str]) -> Any:
    """Measured points with the fit range marked and the fitted line through the origin."""
    figure, axes = _figure()
    _mark_range(axes, result, x, y)
    line = np.array([0.0, x[result.saturation_index]])
    axes.plot(line, slope * line, "-", color="C1", label=label)
    xlabel, ylabel, title = labels
    axes.set_xlabel(xlabel)
    axes.set_ylabel(ylabel)
    axes.set_title(title)
    axes.legend(loc="upper left")
    return figure


def _plot_ptc(result: EmvaResult) -> Any:
    return _plot_linear_fit(
        result,
        result.mean_dn - result.mean_dark_dn,
        result.var_dn2 - result.var_dark_dn2,
        result.system_gain_dn_per_e,
        f"fit: K = {result.system_gain_dn_per_e:.4g} DN/e$^-$",
        (r"mean signal $\mu_y - \mu_{y.dark}$ (DN)", r"temporal variance $\sigma_y^2 - \sigma_{y.dark}^2$ (DN$^2$)", "Photon transfer (EMVA 1288)"),
    )


def _plot_responsivity(result: EmvaResult) -> Any:
    return _plot_linear_fit(
        result,
        result.photons_per_pixel,
        result.mean_dn - result.mean_dark_dn,
        result.responsivity_dn_per_photon,
        f"fit: R = {result.responsivity_dn_per_photon:.4g} DN/photon, $\\eta$ = {result.quantum_efficiency:.1%}",
        (r"irradiation $\mu_p$ (photons/pixel)", r"mean signal $\mu_y - \mu_{y.dark}$ (DN)", "Responsivity (EMVA 1288)"),
    )


def _plot_snr(result: EmvaResult) -> Any:
    figure, axes = _figure()
    photons = result.photons_per_pixel
    # past saturation the variance collapses and the SNR means nothing
    shown = (photons > 0) & (result.snr > 0) & (np.arange(photons.size) <= result.saturation_index)
    axes.loglog(photons[shown], result.snr[shown], "o", color="C0", label="measured (up to saturation)")
    low = min(0.5 * result.sensitivity_threshold_photons, photons[shown].min(initial=np.inf))
    model = np.geomspace(low, result.saturation_photons, 200)
    axes.loglog(model, result.model_snr(model), "-", color="C1", label="linear model")
    axes.loglog(model, np.sqrt(model), "--", color="0.4", label=r"ideal: $\sqrt{\mu_p}$ (shot noise, $\eta$ = 1)")
    axes.axvline(result.sensitivity_threshold_photons, color="C2", ls=":", label=f"$\\mu_{{p.min}}$ = {result.sensitivity_threshold_photons:.4g}")
    axes.axvline(result.saturation_photons, color="C3", ls=":", label=f"$\\mu_{{p.sat}}$ = {result.saturation_photons:.4g}")
    axes.set_xlabel(r"irradiation $\mu_p$ (photons/pixel)")
    axes.set_ylabel("SNR")
    axes.set_title(f"Signal-to-noise ratio (EMVA 1288): DR = {result.dynamic_range_db:.1f} dB")
    axes.legend(loc="upper left")
    return figure


def _plot_dark_current(dark: DarkCurrentResult) -> Any:
    figure, axes = _figure()
    times = dark.exposure_time_s
    axes.plot(times, dark.mean_dark_dn, "o", color="C0", label="measured")
    line = np.array([0.0, times.max()])
    axes.plot(line, dark.dark_offset_dn + dark.dark_signal_dn_per_s * line, "-", color="C1", label=f"fit: {dark.dark_current_e_per_s:.4g} e$^-$/s")
    axes.set_xlabel("exposure time (s)")
    axes.set_ylabel(r"mean dark signal $\mu_{y.dark}$ (DN)")
    axes.set_title("Dark current (EMVA 1288)")
    axes.legend(loc="upper left")
    return figure
