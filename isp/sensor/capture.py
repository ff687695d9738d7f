"""Capture: scene radiance through the lens onto the sensor, photons to electrons to DN.

The chain follows the EMVA 1288 linear camera model (and ISETCam's sensor model), per output
pixel, in electrons until the ADC:

1. optics: lateral chromatic aberration, PSF blur, relative illumination and colour shading
   (:mod:`isp.optics`);
2. mean photo-electrons: the scene's camera-RGB response at each CFA site times the electrons
   one unit of scene gives that channel (:meth:`SensorConfig.exposure`);
3. fixed gain per pixel: PRNU, sub-pixel mismatch within a Quad Bayer quad, dead photodiodes;
4. photon shot noise (Poisson, exact);
5. dark current with its shot noise (Poisson), hot photodiodes' extra dark charge;
6. full-well clipping;
7. DSNU (fixed offset per pixel), read noise (Gaussian or Tukey-lambda), row noise;
8. ADC: conversion gain and analog gain, rounding, the black-level pedestal, clipping to the
   code range; digital gain above the analog maximum; clipping to the white level.

The frame carries the lens-shading calibration a phone maker would store for the module
(:func:`lens_shading_maps`): DNG-style gain maps on a coarse grid, one per CFA tile site, that
undo the lens's relative illumination and colour shading of this frame's window.

A dual-conversion-gain merged mode reads the charge twice (high gain: small well, low read
noise; low gain: full well) and keeps the high-gain value unless it is near its saturation.

Every noise source has its own switch (``sensor.noise``) and its own random stream
(``backend.rng(seed, name)``), so switching one off leaves the draws of the others unchanged.
Steps 3-8 are this module's reference engine; ``sensor.engine=fused`` computes them in one pass
with counter-based draws instead (:mod:`isp.sensor.fused`, one CUDA kernel on the GPU), same
model and distributions, different draws (:func:`sensor_dn` dispatches).
Temporal noise comes from the frame's seed; fixed patterns (PRNU, DSNU, mismatch, defects)
from the sensor's ``instance_seed`` through a counter-based hash
(:mod:`isp.sensor.fixed_pattern`), identical in every frame, window and backend.

Binned modes are computed at the binned resolution: a scene pixel is one output pixel, whose
``binning**2`` photodiodes share its light. Sums of the photodiodes' Poisson charges are
Poisson, and sums of their Gaussian PRNU gains and DSNU offsets are Gaussian, so the binned
pixel draws its noise from those sums' exact distributions: PRNU std ``prnu / binning``, DSNU
std ``dsnu_e * binning``, dark current ``binning**2`` times, read noise once (charge binning) or
``binning`` times the std (digital binning: ``binning**2`` read-outs summed). Sub-pixel mismatch
averages out in a bin (its gains have mean 1 within a quad). Row noise is one offset per
output row.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

import numpy as np

from isp.backend import Backend
from isp.errors import ConfigError
from isp.frame import CaptureInfo, GainMap, RawFrame
from isp.optics import Geometry, OpticsConfig, apply_optics, shading_map
from isp.sensor import fused
from isp.sensor.fixed_pattern import hash_normal, hash_positions
from isp.sensor.model import DEFAULT_LUMINANCE_CD_M2, Exposure, SensorConfig

__all__ = [
    "FixedPatterns",
    "LENS_SHADING_GRID",
    "capture",
    "ideal_capture",
    "fixed_patterns",
    "mean_electrons",
    "mismatch_tile",
    "window_origin",
    "digitise",
    "lens_shading_maps",
    "sensor_dn",
]


@dataclass(frozen=True, eq=False)
class FixedPatterns:
    """A sensor instance's fixed patterns over one window, on the backend's device.

    ``gain`` multiplies the photo-signal (PRNU, mismatch, dead photodiodes), ``offset_e`` adds
    DSNU electrons, and ``hot_index`` / ``hot_count`` list the output pixels (flat indices)
    holding hot photodiodes and how many. Each is ``None`` when nothing applies.
    """

    gain: Any = None
    offset_e: Any = None
    hot_index: Any = None
    hot_count: Any = None


_FIXED_CACHE: OrderedDict[tuple, FixedPatterns] = OrderedDict()
_FIXED_CACHE_SIZE = 2  # a 50 MP window's maps take about 400 MB


def window_origin(sensor: SensorConfig, shape: tuple[int, int]) -> tuple[int, int]:
    """Top-left read-out pixel of a centred window of ``shape``, on a CFA tile boundary."""
    (rh, rw), (h, w) = sensor.readout, shape
    th, tw = sensor.cfa.tile_shape
    return ((rh - h) // 2) // th * th, ((rw - w) // 2) // tw * tw


def mismatch_tile(sensor: SensorConfig) -> np.ndarray:
    """Fixed gain of every site of the Quad Bayer tile (host float64), mean 1 within each quad."""
    th, tw = sensor.cfa.tile_shape
    z = hash_normal(np, sensor.instance_seed, "mismatch", (0, 0), (th, tw)).astype(np.float64)
    quads = z.reshape(th // 2, 2, tw // 2, 2)
    # Removing the mean of four draws leaves each a variance of 3/4: rescale so that the spread
    # of one position's gain over parts is the configured one.
    quads = (quads - quads.mean(axis=(1, 3), keepdims=True)) * np.sqrt(4.0 / 3.0)
    return 1.0 + sensor.subpixel_mismatch * quads.reshape(th, tw)


def fixed_patterns(sensor: SensorConfig, backend: Backend, shape: tuple[int, int]) -> FixedPatterns:
    """The fixed patterns of ``sensor`` over its centred window of ``shape`` (cached)."""
    origin = window_origin(sensor, shape)
    n = sensor.noise
    key = (
        backend.name,
        backend.device_id(),
        sensor.instance_seed,
        sensor.mode_info,
        sensor.readout,
        origin,
        tuple(shape),
        sensor.prnu if n.prnu else 0.0,
        sensor.dsnu_e if n.dsnu else 0.0,
        sensor.subpixel_mismatch if n.mismatch else 0.0,
        (sensor.hot_pixel_rate, sensor.dead_pixel_rate) if n.defects else (0.0, 0.0),
    )
    if key in _FIXED_CACHE:
        _FIXED_CACHE.move_to_end(key)
        return _FIXED_CACHE[key]
    patterns = _make_fixed_patterns(sensor, backend, origin, shape)
    _FIXED_CACHE[key] = patterns
    while len(_FIXED_CACHE) > _FIXED_CACHE_SIZE:
        _FIXED_CACHE.popitem(last=False)
    return patterns


def _make_fixed_patterns(sensor: SensorConfig, backend: Backend, origin: tuple[int, int], shape: tuple[int, int]) -> FixedPatterns:
    xp, n, b = backend.xp, sensor.noise, sensor.binning
    gain = offset = hot_index = hot_count = None
    if n.prnu and sensor.prnu > 0:
        gain = np.float32(1.0) + hash_normal(xp, sensor.instance_seed, "prnu", origin, shape) * np.float32(sensor.prnu / b)
    if n.mismatch and sensor.subpixel_mismatch > 0 and b == 1 and not sensor.cfa.is_bayer:
        tile = sensor.cfa.tile(mismatch_tile(sensor), shape, xp).astype(xp.float32)
        gain = tile if gain is None else gain * tile
    if n.dsnu and sensor.dsnu_e > 0:
        offset = hash_normal(xp, sensor.instance_seed, "dsnu", origin, shape) * np.float32(sensor.dsnu_e * b)
    if n.defects:
        dead = _defect_counts(sensor, "dead", sensor.dead_pixel_rate, origin, shape)
        if dead is not None:
            index, count = dead
            factor = np.ones(shape[0] * shape[1], np.float32)
            factor[index] = 1.0 - count / b**2
            factor = backend.asarray(factor.reshape(shape))
            gain = factor if gain is None else gain * factor
        hot = _defect_counts(sensor, "hot", sensor.hot_pixel_rate, origin, shape)
        if hot is not None:
            hot_index, hot_count = backend.asarray(hot[0]), backend.asarray(hot[1].astype(np.float32))
    return FixedPatterns(gain, offset, hot_index, hot_count)


def _defect_counts(
    sensor: SensorConfig, kind: str, rate: float, origin: tuple[int, int], shape: tuple[int, int]
) -> tuple[np.ndarray, np.ndarray] | None:
    """Output pixels of the window holding defective photodiodes, and how many each holds."""
    b = sensor.binning
    native = (sensor.readout[0] * b, sensor.readout[1] * b)
    count = int(round(rate * native[0] * native[1]))
    if count == 0:
        return None
    positions = hash_positions(sensor.instance_seed, kind, count, native) // b - np.asarray(origin)
    inside = np.all((positions >= 0) & (positions < np.asarray(shape)), axis=1)
    flat = positions[inside, 0] * shape[1] + positions[inside, 1]
    if flat.size == 0:
        return None
    index, counts = np.unique(flat, return_counts=True)
    return index, counts


def mean_electrons(scene_rgb: Any, sensor: SensorConfig, backend: Backend, exposure: Exposure) -> Any:
    """Mean photo-electrons of every output pixel ``(H, W)`` float32: optics, then each CFA
    site's channel response to the scene, scaled by the exposure."""
    geometry = _geometry(sensor, scene_rgb.shape[:2])
    rgb = apply_optics(backend.asarray(scene_rgb, dtype=backend.xp.float32), sensor.lens.optics, geometry, backend)
    cfa = sensor.cfa
    response = sensor.response() * float(exposure.electrons_per_unit.max())
    rows = response[cfa.pattern_array]  # (th, tw, 3): the response row of each site's colour
    signal = None
    for channel in range(3):
        term = cfa.apply_per_site(rgb[..., channel], scale=rows[..., channel])
        signal = term if signal is None else signal + term
    return backend.xp.maximum(signal, np.float32(0.0))


def _geometry(sensor: SensorConfig, window: tuple[int, int]) -> Geometry:
    """Where a centred window of ``window`` output pixels sits relative to the lens."""
    lens = sensor.lens
    return Geometry(
        pixel_pitch_um=sensor.output_pitch_um,
        focal_length_mm=lens.focal_length_mm,
        f_number=lens.f_number,
        readout=sensor.readout,
        window=tuple(window),
    )


#: Points of the lens-shading calibration grid along the frame's shorter and longer side: the
#: 13 × 17 mesh of Qualcomm's ISPs. On the IMX989's 4:3 binned frame its cells are 256 px square.
LENS_SHADING_GRID = (13, 17)


def lens_shading_maps(sensor: SensorConfig, window: tuple[int, int]) -> tuple[GainMap, ...]:
    """The lens-shading calibration of ``sensor`` for a frame of ``window`` output pixels.

    What a phone maker measures on the production line, a flat white field through the module,
    and stores with it: for each CFA tile site, a :class:`~isp.frame.GainMap` (pitch = the tile,
    ``top``/``left`` = the site) whose gain at each point of a :data:`LENS_SHADING_GRID` mesh is
    the response of that site's camera channel to the white on the optical axis over its response
    at the point. The lens model shades the scene's R, G and B (:func:`isp.optics.shading_map`),
    which each camera channel mixes through :meth:`SensorConfig.response`, so a channel's shading
    is that mix of the three; applied by the ``lens_shading`` stage, the maps flatten a white
    field's falloff and colour shading alike.

    The mesh spans the frame edge to edge (origin 0, spacing ``1 / (points - 1)``) in the DNG's
    relative coordinates, where pixel row ``r`` sits at ``(r + 0.5) / height``; a point at
    relative height ``v`` is at window row ``v · height - 0.5``. The window is placed on the
    read-out as the capture places it (:class:`~isp.optics.Geometry`), so a crop or a binned
    mode gets the calibration of its own pixels.

    Parameters
    ----------
    sensor
        The sensor model: its lens, read-out mode and CFA.
    window
        ``(height, width)`` of the captured frame.

    Returns
    -------
    tuple of GainMap
        One map per tile site in row-major order (4 for Bayer, 16 for Quad Bayer), gains on the
        host; empty when the lens has neither relative illumination nor colour shading.
    """
    geometry = _geometry(sensor, window)
    h, w = geometry.window
    short, long = LENS_SHADING_GRID
    points_v, points_h = (short, long) if h <= w else (long, short)
    v, u = np.linspace(0.0, 1.0, points_v), np.linspace(0.0, 1.0, points_h)
    cy, cx = geometry.centre
    radius_px = np.hypot((v * h - 0.5 - cy)[:, None], (u * w - 0.5 - cx)[None, :])
    shading = _shading_at_radius(geometry, sensor.lens.optics, radius_px)
    if shading is None:
        return ()
    on_axis, at_points = shading
    response = sensor.response()  # rows: camera R, G, B; columns: the scene's R, G, B
    gains = ((response @ on_axis) / (at_points @ response.T)).astype(np.float32)  # (points_v, points_h, camera channel)
    cfa = sensor.cfa
    th, tw = cfa.tile_shape
    return tuple(
        GainMap(
            top=y,
            left=x,
            bottom=h,
            right=w,
            row_pitch=th,
            col_pitch=tw,
            origin_v=0.0,
            origin_h=0.0,
            spacing_v=1.0 / (points_v - 1),
            spacing_h=1.0 / (points_h - 1),
            gains=np.ascontiguousarray(gains[:, :, colour]),
        )
        for y, row in enumerate(cfa.pattern)
        for x, colour in enumerate(row)
    )


def _shading_at_radius(geometry: Geometry, optics_cfg: OpticsConfig, radius_px: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
    """The lens's shading (R, G, B) on the optical axis and at distances ``radius_px`` from it.

    Every shading model of :mod:`isp.optics` depends on the distance from the axis alone, so
    :func:`~isp.optics.shading_map` is evaluated once along a ray rather than over the frame: on
    a one-row read-out of ``2m + 1`` pixels centred on the axis, its pitch scaled so that its
    k-th pixel from the centre has both the physical distance (``cos4``) and the normalised
    radius (the polynomials) of a point ``k · step`` output pixels from the real axis, with
    ``step`` just under one pixel. Between samples the profile is linear; points past the last
    sample (the frame's outer corner, half a pixel beyond the corner pixel centres) extend its
    last segment.

    Returns
    -------
    tuple or None
        ``(on_axis (3,), at_points (*radius_px.shape, 3))`` float64 on the host; ``None`` when the
        lens has no shading.
    """
    m = math.ceil(geometry.half_diagonal_px)
    ray_half_diagonal = 0.5 * math.hypot(1, 2 * m + 1)
    step = geometry.half_diagonal_px / ray_half_diagonal
    ray = Geometry(
        pixel_pitch_um=geometry.pixel_pitch_um * step,
        focal_length_mm=geometry.focal_length_mm,
        f_number=geometry.f_number,
        readout=(1, 2 * m + 1),
        window=(1, 2 * m + 1),
    )
    profile = shading_map(ray, optics_cfg, np)
    if profile is None:
        return None
    profile = profile[0, m:].astype(np.float64)  # (m + 1, 3): distance 0, step, 2·step, ...
    position = radius_px / step
    low = np.minimum(position.astype(np.int64), m - 1)
    fraction = (position - low)[..., None]
    return profile[0], profile[low] + fraction * (profile[low + 1] - profile[low])


def _check_window(scene_rgb: Any, sensor: SensorConfig) -> tuple[int, int]:
    h, w = scene_rgb.shape[:2]
    if scene_rgb.ndim != 3 or scene_rgb.shape[2] != 3:
        raise ConfigError(f"sensor {sensor.name}: the scene must be (H, W, 3) linear RGB, got shape {tuple(scene_rgb.shape)}")
    if h > sensor.readout[0] or w > sensor.readout[1]:
        raise ConfigError(
            f"sensor {sensor.name}: a {h}x{w} scene is larger than the {sensor.mode} read-out {sensor.readout[0]}x{sensor.readout[1]}"
        )
    sensor.cfa.check_shape((h, w), what=f"scene for sensor {sensor.name}")
    return h, w


def capture(
    scene_rgb: Any,
    sensor: SensorConfig,
    backend: Backend,
    seed: int = 0,
    *,
    luminance_cd_m2: float = DEFAULT_LUMINANCE_CD_M2,
    white_rgb: Any = (1.0, 1.0, 1.0),
    components: dict[str, Any] | None = None,
) -> RawFrame:
    """Capture scene-linear RGB ``(H, W, 3)`` into a RawFrame (``dn`` domain, uint16).

    Parameters
    ----------
    scene_rgb
        Linear sRGB (D65), 1.0 the scene's white; ``(H, W)`` a whole number of CFA tiles, no
        larger than the read-out (a smaller scene is a centred window of the sensor).
    sensor
        The sensor model; ``sensor.noise`` says which noise sources are on.
    seed
        Seed of the frame's temporal noise (the fixed patterns use ``sensor.instance_seed``).
    luminance_cd_m2
        Luminance of the scene's white (1.0).
    white_rgb
        Linear sRGB of a white surface under the scene's light (:attr:`isp.scene.Scene.white_rgb`):
        the as-shot neutral is the camera's response to it, and auto-exposure keeps it unclipped.
    components
        If a dict is given, each temporal noise source's realisation (electrons, on the
        device) is stored in it under its name, for inspection.
    """
    _check_window(scene_rgb, sensor)
    exposure = sensor.exposure(luminance_cd_m2, white_rgb=white_rgb)
    dn = sensor_dn(mean_electrons(scene_rgb, sensor, backend, exposure), sensor, backend, seed, exposure, components)
    return _frame(dn, sensor, exposure, white_rgb)


def sensor_dn(mean_e: Any, sensor: SensorConfig, backend: Backend, seed: int, exposure: Exposure, components: dict[str, Any] | None = None) -> Any:
    """Mean photo-electrons ``(H, W)`` float32 to the noisy DN mosaic (uint16), by ``sensor.engine``.

    Everything after the optics: fixed patterns, every enabled noise source, full well, the ADC.
    ``reference``: this module's array code. ``fused``: :mod:`isp.sensor.fused`, the CUDA kernel
    on a GPU backend and its array-module reference on NumPy; with ``components`` it runs the
    array-module reference on either backend (the kernel keeps nothing but DN), which matches the
    kernel's DN but for the rare float-rounding cases documented there. ``mean_e`` is the
    centred window of the read-out that :func:`window_origin` places; the reference engine may
    add hot-pixel charge into it in place (pass a copy to keep it), the fused engine never writes it.
    """
    xp = backend.xp
    if sensor.engine == "reference":
        return digitise(_noisy_electrons(mean_e, sensor, backend, seed, exposure, components), sensor, xp)
    shape = tuple(mean_e.shape)
    patterns = fixed_patterns(sensor, backend, shape)
    params = fused.fused_params(sensor, exposure, seed, shape, window_origin(sensor, shape))
    if backend.is_gpu and components is None:
        return fused.dn_cuda(mean_e, patterns, params, backend)
    if components is None:
        return fused.dn_reference(mean_e, patterns, params, lambda e: digitise(e, sensor, xp), xp)
    return digitise(fused.noisy_electrons(mean_e, patterns, params, xp, components), sensor, xp)


def ideal_capture(
    scene_rgb: Any,
    sensor: SensorConfig,
    backend: Backend,
    *,
    luminance_cd_m2: float = DEFAULT_LUMINANCE_CD_M2,
    white_rgb: Any = (1.0, 1.0, 1.0),
) -> RawFrame:
    """The noise-free capture: mean electrons, full-well clipping and the ADC, nothing random."""
    _check_window(scene_rgb, sensor)
    exposure = sensor.exposure(luminance_cd_m2, white_rgb=white_rgb)
    electrons = backend.xp.minimum(mean_electrons(scene_rgb, sensor, backend, exposure), np.float32(sensor.full_well_output_e))
    return _frame(digitise(electrons, sensor, backend.xp), sensor, exposure, white_rgb)


def _noisy_electrons(
    mean_e: Any, sensor: SensorConfig, backend: Backend, seed: int, exposure: Exposure, components: dict[str, Any] | None
) -> Any:
    xp, noise = backend.xp, sensor.noise
    f32 = xp.float32
    keep = components if components is not None else {}  # a reference only: nothing extra computed
    patterns = fixed_patterns(sensor, backend, mean_e.shape)
    e = mean_e if patterns.gain is None else mean_e * patterns.gain
    if noise.shot:
        photo = backend.rng(seed, "shot").poisson(e).astype(f32)
        if components is not None:
            components["shot"] = photo - e
        e = photo
    dark_mean = sensor.dark_current_output_e_s * exposure.time_s
    if noise.dark_current and dark_mean > 0:
        dark = backend.rng(seed, "dark").poisson(dark_mean, size=e.shape).astype(f32)
        keep["dark"] = dark
        e = e + dark
    if patterns.hot_index is not None and exposure.time_s > 0:
        hot = backend.rng(seed, "hot").poisson(patterns.hot_count * np.float32(sensor.hot_pixel_dark_e_s * exposure.time_s)).astype(f32)
        keep["hot"] = hot
        # e is this capture's own array (mean_electrons made it), so it is updated in place.
        e.reshape(-1)[patterns.hot_index] += hot
    e = xp.minimum(e, np.float32(sensor.full_well_output_e))
    # Offsets at the read-out: the same in both read-outs of a merged dual-gain frame.
    offset = patterns.offset_e
    if noise.row and sensor.row_noise_e > 0:
        row = backend.rng(seed, "row").standard_normal((e.shape[0], 1), dtype=f32) * np.float32(sensor.row_noise_e)
        keep["row"] = row
        offset = row if offset is None else offset + row
    if sensor.mode_info.dcg_merge:
        return _merge_dcg(e, offset, sensor, backend, seed, keep)
    if noise.read and sensor.read_noise_output_e > 0:
        read = _read_noise(backend, seed, "read", e.shape, sensor.read_noise_output_e, sensor.read_noise_tukey_lambda)
        keep["read"] = read
        e = e + read
    return e if offset is None else e + offset


def _merge_dcg(e: Any, offset: Any, sensor: SensorConfig, backend: Backend, seed: int, keep: dict[str, Any]) -> Any:
    """Merge the high- and low-conversion-gain read-outs of the same charge."""
    xp, dcg = backend.xp, sensor.dcg
    hcg_well = np.float32(sensor.full_well_output_e / dcg.ratio)
    high = xp.minimum(e, hcg_well)
    low = e
    if sensor.noise.read:
        scale = sensor.binning if sensor.binning > 1 and sensor.binning_model == "digital" else 1
        read_high = _read_noise(backend, seed, "read", e.shape, dcg.hcg_read_noise_e * scale, sensor.read_noise_tukey_lambda)
        read_low = _read_noise(backend, seed, "read_lcg", e.shape, sensor.read_noise_e * scale, sensor.read_noise_tukey_lambda)
        keep["read"], keep["read_lcg"] = read_high, read_low
        high, low = high + read_high, low + read_low
    merged = xp.where(high < np.float32(dcg.merge_threshold) * hcg_well, high, low)
    return merged if offset is None else merged + offset


def _read_noise(backend: Backend, seed: int, stream: str, shape: tuple[int, ...], sigma_e: float, tukey_lambda: float | None) -> Any:
    """Read noise in electrons with standard deviation ``sigma_e``: Gaussian, or Tukey-lambda
    (quantile function ``(u**l - (1-u)**l) / l``) scaled to that deviation."""
    xp, rng = backend.xp, backend.rng(seed, stream)
    if tukey_lambda is None:
        return rng.standard_normal(shape, dtype=xp.float32) * np.float32(sigma_e)
    lam = float(tukey_lambda)
    u = xp.clip(rng.random(shape, dtype=xp.float64), 1e-12, 1.0 - 1e-12)
    if abs(lam) < 1e-9:
        q, var = xp.log(u / (1.0 - u)), math.pi**2 / 3.0
    else:
        q = (u**lam - (1.0 - u) ** lam) / lam
        var = 2.0 / lam**2 * (1.0 / (1.0 + 2.0 * lam) - math.gamma(lam + 1.0) ** 2 / math.gamma(2.0 * lam + 2.0))
    return (q * (sigma_e / math.sqrt(var))).astype(xp.float32)


def digitise(electrons: Any, sensor: SensorConfig, xp: Any) -> Any:
    """Electrons of every output pixel to DN: ADC gain, pedestal, rounding, code range,
    digital gain, white level. Returns uint16."""
    bits, black, white = sensor.adc
    dn = xp.clip(xp.rint(electrons * np.float32(sensor.adc_gain_dn_e) + np.float32(black)), 0, 2**bits - 1)
    digital = sensor.gains[1]
    if digital != 1.0:
        # Digital gain scales codes after the ADC: the steps between output codes grow with it.
        dn = xp.rint((dn - np.float32(black)) * np.float32(digital)) + np.float32(black)
    return xp.clip(dn, 0, white).astype(xp.uint16)


def _frame(mosaic: Any, sensor: SensorConfig, exposure: Exposure, white_rgb: Any) -> RawFrame:
    analog, digital = sensor.gains
    _, black, white = sensor.adc
    response_white = sensor.response() @ np.asarray(white_rgb, dtype=np.float64)
    info = CaptureInfo(
        sensor=sensor.name,
        mode=sensor.mode,
        exposure_time_s=exposure.time_s,
        iso=sensor.iso,
        analog_gain=analog,
        digital_gain=digital,
        as_shot_neutral=response_white / response_white.max(),
        color_matrices=(sensor.color_matrix(),),
        source="simulation",
        noise_profile=sensor.noise_profile(),
        gain_maps=lens_shading_maps(sensor, mosaic.shape),
    )
    return RawFrame(mosaic, sensor.cfa, black, float(white), info, domain="dn")
