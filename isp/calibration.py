"""Colour-correction matrix (CCM) calibration from a ColorChecker capture.

:func:`fit_ccm` fits the 3×3 matrix from white-balanced camera RGB to linear sRGB (D65) that
makes the patches of a chart come out closest to their reference colours: a linear least-squares
fit in linear sRGB as the start, then a nonlinear least-squares fit on the chosen colour
difference (CIEDE2000 by default) with :func:`scipy.optimize.least_squares`. With
``preserve_white`` each row sums to 1, so that balanced white (1, 1, 1) stays white and the
matrix has 6 free parameters instead of 9: the white balance, not the CCM, decides the white.

:func:`ccm_from_chart` measures the patch means of a capture (a RawFrame on the mosaic or a
camera-RGB Image), balances and exposes them on the chart's neutral patches, and fits.
:func:`fit_ccm_from_run` does it for one run of the simulator (or a raw file) and returns a
YAML-ready result for ``tuning.params.color_correction.matrix``.

Domains
-------
Camera RGB: linear, white balanced and exposed so that the perfect white diffuser would read
(1, 1, 1). Reference: CIE XYZ under the scene illuminant, Y = 1 for the perfect white. Output:
linear sRGB, D65 white; the reference is adapted to D65 with Bradford, and colour differences
are taken in CIELAB relative to D65, as :mod:`isp.metrics.colorchecker` measures them.

References
----------
- G. Hong, M. R. Luo, P. A. Rhodes, "A study of digital camera colorimetric characterisation
  based on polynomial modelling", Color Res. Appl. 26(1), 2001.
- V. Cheung, S. Westland, D. Connah, C. Ripamonti, "A comparative study of the
  characterisation of colour cameras by means of neural networks and polynomial transforms",
  Coloration Technology 120(1), 2004.
- G. Sharma, W. Wu, E. N. Dalal, "The CIEDE2000 color-difference formula", Color Res. Appl.
  30(1), 2005.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy.optimize import least_squares

from omegaconf import DictConfig, open_dict

from isp import colorimetry
from isp.backend import to_host
from isp.config import compose, param
from isp.errors import ConfigError, StageError
from isp.frame import Image, RawFrame
from isp.metrics.colorchecker import patch_means
from isp.metrics.noise import neutral_patches
from isp.scene.base import Patch
from isp.scene.colorchecker import COLUMNS, ROWS
from isp.stages.white_balance import region_means

__all__ = [
    "CCM_OBJECTIVES",
    "CHART_BALANCES",
    "fit_ccm",
    "ccm_delta_e",
    "colorchecker_patches",
    "chart_camera_rgb",
    "ChartFit",
    "CcmFitSettings",
    "ccm_from_chart",
    "fit_ccm_from_run",
]

CCM_OBJECTIVES = ("de2000", "lab", "rgb")
#: How :func:`ccm_from_chart` white-balances the patch means before the fit.
CHART_BALANCES = ("fit", "frame")


def _target_srgb(reference: np.ndarray, illuminant_xy: np.ndarray) -> np.ndarray:
    adapt = colorimetry.bradford(illuminant_xy, colorimetry.D65_XY)
    return reference @ (colorimetry.XYZ_TO_SRGB @ adapt).T


def _lab(srgb: np.ndarray) -> np.ndarray:
    return colorimetry.XYZ_to_Lab(srgb @ colorimetry.SRGB_TO_XYZ.T)


def _residuals(objective: str, target: np.ndarray) -> Callable[[np.ndarray], np.ndarray]:
    """``fn(predicted linear sRGB (n, 3)) -> residuals`` for one objective."""
    if objective == "rgb":
        return lambda srgb: (srgb - target).ravel()
    target_lab = _lab(target)
    if objective == "lab":
        return lambda srgb: (_lab(srgb) - target_lab).ravel()
    return lambda srgb: colorimetry.delta_e_2000(_lab(srgb), target_lab)


def _matrix(free: np.ndarray, preserve_white: bool) -> np.ndarray:
    if not preserve_white:
        return free.reshape(3, 3)
    pairs = free.reshape(3, 2)
    return np.column_stack([pairs, 1.0 - pairs.sum(axis=1)])


def _linear_fit(camera: np.ndarray, target: np.ndarray, preserve_white: bool) -> np.ndarray:
    """Least squares in linear sRGB; with ``preserve_white`` each row's blue coefficient is
    ``1 - r - g``, which makes every row a 2-parameter fit of ``target - b`` on ``(r - b, g - b)``."""
    if not preserve_white:
        return np.linalg.lstsq(camera, target, rcond=None)[0].T
    design = camera[:, :2] - camera[:, 2:3]
    pairs = np.linalg.lstsq(design, target - camera[:, 2:3], rcond=None)[0].T
    return _matrix(pairs.ravel(), True)


def _check_patches(camera_rgb: Any, reference: Any, where: str, minimum: int) -> tuple[np.ndarray, np.ndarray]:
    camera = np.asarray(camera_rgb, dtype=np.float64)
    ref = np.asarray(reference, dtype=np.float64)
    if camera.ndim != 2 or camera.shape[1] != 3 or camera.shape != ref.shape:
        raise ConfigError(f"{where}: camera_rgb {camera.shape} and reference {ref.shape} must both be (n, 3)")
    if camera.shape[0] < minimum or not (np.all(np.isfinite(camera)) and np.all(np.isfinite(ref))):
        raise ConfigError(f"{where}: need at least {minimum} patches of finite values, got {camera.shape[0]}")
    return camera, ref


def fit_ccm(
    camera_rgb: Any,
    reference: Any,
    *,
    illuminant_xy: Any = colorimetry.D65_XY,
    objective: str = "de2000",
    preserve_white: bool = True,
) -> np.ndarray:
    """The 3×3 matrix from white-balanced camera RGB to linear sRGB that best fits a chart.

    Parameters
    ----------
    camera_rgb
        ``(n, 3)`` white-balanced linear camera RGB of the patches, scaled so that the perfect
        white would read (1, 1, 1).
    reference
        ``(n, 3)`` CIE XYZ of the same patches under the illuminant, Y = 1 for the perfect white.
    illuminant_xy
        Chromaticity of the illuminant the reference is given under; it is adapted to D65.
    objective
        What the sum of squares is taken of: ``"de2000"`` (CIEDE2000 per patch, so the RMS
        CIEDE2000 is minimised), ``"lab"`` (CIELAB differences, i.e. ΔE*ab) or ``"rgb"``
        (linear sRGB differences: the plain linear least-squares fit).
    preserve_white
        Constrain each row to sum to 1, so that (1, 1, 1) maps to (1, 1, 1).

    Returns
    -------
    ``(3, 3)`` float64 matrix ``M``: ``srgb = M @ camera``.

    Examples
    --------
    >>> truth = np.array([[1.6, -0.4, -0.2], [-0.2, 1.5, -0.3], [0.0, -0.5, 1.5]])
    >>> srgb = np.random.default_rng(0).uniform(0.05, 0.9, (24, 3))
    >>> xyz = srgb @ colorimetry.SRGB_TO_XYZ.T
    >>> camera = srgb @ np.linalg.inv(truth).T
    >>> bool(np.allclose(fit_ccm(camera, xyz, objective="rgb"), truth))
    True
    """
    if objective not in CCM_OBJECTIVES:
        raise ConfigError(f"fit_ccm: objective={objective!r} is not known; choose one of {', '.join(CCM_OBJECTIVES)}")
    camera, ref = _check_patches(camera_rgb, reference, "fit_ccm", 3)
    target = _target_srgb(ref, np.asarray(illuminant_xy, dtype=np.float64))
    start = _linear_fit(camera, target, preserve_white)
    if objective == "rgb":
        return start
    residuals = _residuals(objective, target)
    free = start[:, :2].ravel() if preserve_white else start.ravel()
    result = least_squares(lambda x: residuals(camera @ _matrix(x, preserve_white).T), free)
    return _matrix(result.x, preserve_white)


def ccm_delta_e(matrix: Any, camera_rgb: Any, reference: Any, illuminant_xy: Any = colorimetry.D65_XY) -> np.ndarray:
    """CIEDE2000 ``(n,)`` of each patch after ``matrix``, against its reference adapted to D65."""
    camera, ref = _check_patches(camera_rgb, reference, "ccm_delta_e", 1)
    target = _target_srgb(ref, np.asarray(illuminant_xy, dtype=np.float64))
    predicted = camera @ np.asarray(matrix, dtype=np.float64).T
    return colorimetry.delta_e_2000(_lab(predicted), _lab(target))


def colorchecker_patches(
    corners: Any, patch_px: int, reference: str = "ColorChecker24 - After November 2014"
) -> tuple[Patch, ...]:
    """The 24 patch boxes of a ColorChecker in a photograph, from its four corner patches.

    Parameters
    ----------
    corners
        ``[[row, col], ...]`` pixel centres of the dark skin (top left), bluish green (top
        right), white (bottom left) and black (bottom right) patches, as the chart is seen.
        The other centres are interpolated bilinearly, which allows for rotation and a mild
        perspective.
    patch_px
        Side of the square box measured around each centre (smaller than a patch, so that
        no edge or gap falls into it).
    reference
        The colour-science name of the chart's published reference.
    """
    corners = np.asarray(corners, dtype=np.float64)
    if corners.shape != (4, 2):
        raise ConfigError(f"colorchecker_patches: corners must be 4 [row, col] pairs, got shape {corners.shape}")
    if patch_px < 2:
        raise ConfigError(f"colorchecker_patches: patch_px={patch_px} must be at least 2")
    names, xyz = colorimetry.colorchecker_reference(reference)
    top_left, top_right, bottom_left, bottom_right = corners
    half = patch_px / 2.0
    patches = []
    for i, (name, colour) in enumerate(zip(names, xyz, strict=True)):
        row, col = divmod(i, COLUMNS)
        v, u = row / (ROWS - 1), col / (COLUMNS - 1)
        top = (1 - u) * top_left + u * top_right
        bottom = (1 - u) * bottom_left + u * bottom_right
        y, x = (1 - v) * top + v * bottom
        box = (int(round(y - half)), int(round(x - half)), int(round(y + half)), int(round(x + half)))
        patches.append(Patch(name, box, colour))
    return tuple(patches)


def _centre_box(patch: Patch, fraction: float) -> tuple[int, int, int, int]:
    rows, cols = patch.centre(fraction)
    return rows.start, cols.start, rows.stop, cols.stop


def chart_camera_rgb(capture: RawFrame | Image, patches: Sequence[Patch], fraction: float = 0.5) -> np.ndarray:
    """Mean camera RGB ``(n, 3)`` of the central ``fraction`` of each patch, white balance undone.

    A RawFrame (``linear`` domain) is measured on the mosaic, each colour on its own sites, so no
    demosaicing enters the calibration; an Image must be linear camera RGB.
    """
    if isinstance(capture, RawFrame):
        capture.require("ccm_from_chart", domain="linear")
        means = np.asarray([region_means(capture, _centre_box(p, fraction), f"patch {p.name!r} box") for p in patches])
    else:
        capture.require("ccm_from_chart", space="camera", transfer="linear")
        means = patch_means(to_host(capture.data).astype(np.float64), patches, fraction)
    if capture.wb_gains is not None:
        means = means / np.asarray(capture.wb_gains, dtype=np.float64)
    return means


def _fit_white(raw: np.ndarray, target: np.ndarray) -> np.ndarray:
    """Camera RGB that the unconstrained least-squares fit of all patches maps to sRGB white."""
    return np.linalg.solve(_linear_fit(raw, target, False), np.ones(3))


def _frame_white(capture: RawFrame | Image, patches: Sequence[Patch], raw: np.ndarray, target: np.ndarray) -> np.ndarray:
    """The frame's own neutral, scaled by one exposure fitted on the neutral patches' luminance."""
    neutral = 1.0 / np.asarray(capture.wb_gains, dtype=np.float64) if capture.wb_gains is not None else capture.info.as_shot_neutral
    neutral_ids = {id(p) for p in neutral_patches(patches)}
    greys = [i for i, p in enumerate(patches) if id(p) in neutral_ids]
    if not greys:
        raise ConfigError("ccm_from_chart: balance=frame needs neutral patches to set the exposure, and there are none")
    luma = colorimetry.SRGB_TO_XYZ[1]
    measured, wanted = raw[greys] / neutral @ luma, target[greys] @ luma
    return np.asarray(neutral, dtype=np.float64) * (measured @ measured) / (measured @ wanted)


@dataclass(frozen=True)
class ChartFit:
    """A CCM fitted to a chart capture.

    Parameters
    ----------
    matrix
        ``(3, 3)`` white-balanced camera RGB to linear sRGB.
    neutral
        Camera RGB of the scene white found on the chart's neutral patches (max 1): the
        white balance the matrix belongs with.
    camera_rgb
        ``(n, 3)`` the patch means balanced and exposed as the fit saw them (white = 1).
    reference_xyz
        ``(n, 3)`` the patches' reference XYZ under D65.
    delta_e
        ``(n,)`` CIEDE2000 of each patch after the matrix.
    names
        The patch names.
    """

    matrix: np.ndarray
    neutral: np.ndarray
    camera_rgb: np.ndarray
    reference_xyz: np.ndarray
    delta_e: np.ndarray
    names: tuple[str, ...]


def ccm_from_chart(
    capture: RawFrame | Image,
    patches: Sequence[Patch],
    *,
    fraction: float = 0.5,
    balance: str = "fit",
    objective: str = "de2000",
    preserve_white: bool = True,
) -> ChartFit:
    """Measure a ColorChecker capture and fit its CCM.

    The patch means are first balanced and exposed so that the perfect white would read
    (1, 1, 1), then fitted with :func:`fit_ccm`.

    Parameters
    ----------
    capture
        A linear RawFrame (after ``black_level``; balanced or not) or a linear camera-RGB Image.
    patches
        The chart's patches with their reference XYZ under D65: a simulated scene's
        ``scene.patches``, or :func:`colorchecker_patches` for a photograph.
    fraction
        Central part of each patch box measured, per dimension.
    balance
        ``"fit"``: the camera RGB of the perfect white is the one that the least-squares 3×3 fit
        of all patches (no constraint; exposure included) maps to sRGB white, so that the
        frame's own white balance, which may be wrong, does not enter; for a linear camera it
        is exact. ``"frame"``: the frame's white balance (its ``wb_gains``, else its as-shot
        neutral) with one exposure gain fitted on the neutral patches' luminance (reference
        chroma C*ab below 3); use it to fit the matrix that belongs with a known white balance.
    objective, preserve_white
        As for :func:`fit_ccm`.
    """
    if balance not in CHART_BALANCES:
        raise ConfigError(f"ccm_from_chart: balance={balance!r} is not known; choose one of {', '.join(CHART_BALANCES)}")
    if len(patches) < 3:
        raise ConfigError(f"ccm_from_chart: need at least 3 patches, got {len(patches)}")
    raw = chart_camera_rgb(capture, patches, fraction)
    reference = np.asarray([p.xyz_d65 for p in patches], dtype=np.float64)
    target = _target_srgb(reference, colorimetry.D65_XY)
    white = _fit_white(raw, target) if balance == "fit" else _frame_white(capture, patches, raw, target)
    if not np.all(np.isfinite(white)) or np.any(white <= 0):
        raise StageError(
            f"ccm_from_chart: the chart gives no usable white (camera RGB {np.round(white, 5).tolist()}); "
            "check the patch boxes and that every colour has signal"
        )
    gains = 1.0 / white
    balanced = raw * gains
    matrix = fit_ccm(balanced, reference, objective=objective, preserve_white=preserve_white)
    return ChartFit(
        matrix=matrix,
        neutral=white / white.max(),
        camera_rgb=balanced,
        reference_xyz=reference,
        delta_e=ccm_delta_e(matrix, balanced, reference),
        names=tuple(p.name for p in patches),
    )


@dataclass(frozen=True)
class CcmFitSettings:
    """The ``experiment=ccm_fit`` config: how to fit a CCM to the run's ColorChecker."""

    kind: str = param("ccm_fit", choices=("ccm_fit",))
    objective: str = param("de2000", choices=CCM_OBJECTIVES, doc="colour difference minimised: CIEDE2000, CIELAB distance, or linear RGB")
    balance: str = param("fit", choices=CHART_BALANCES, doc="fit: take the white from the chart; frame: the frame's as-shot neutral")
    preserve_white: bool = param(True, doc="rows sum to 1, so white stays white and the white balance alone sets it")
    chart_corners: list[list[float]] | None = param(
        None, shape=(4, 2), range=(0, None), unit="px", doc="for a raw file: [row, col] centres of the dark-skin, bluish-green, white and black patches"
    )
    patch_px: int | None = param(None, range=(2, None), unit="px", doc="for a raw file: side of the box measured on each patch")
    fraction: float | None = param(None, range=(0.05, 1.0), doc="central part of each patch measured; null: the run's patch_fraction, or 1 for patch_px boxes")


def fit_ccm_from_run(
    cfg: Any = None,
    *,
    chart_corners: Any = None,
    patch_px: int | None = None,
    balance: str = "fit",
    objective: str = "de2000",
    preserve_white: bool = True,
    fraction: float | None = None,
) -> dict[str, Any]:
    """Fit a CCM to the ColorChecker of one run; the result is ready to write as YAML.

    The run is stopped after ``black_level``, or after ``lens_shading`` (at full strength) when
    the pipeline has it; the chart is measured on the linear mosaic.

    Parameters
    ----------
    cfg
        A composed config, or Hydra overrides, e.g. ``["sensor=imx766", "sensor.iso=400"]`` for
        a simulated chart, or ``["scene=raw_file", "scene.path=chart.dng"]`` for a photograph of one.
    chart_corners, patch_px
        For a raw file: the chart's corner patch centres and box side (:func:`colorchecker_patches`).
        A simulated ColorChecker scene knows its patches.
    balance
        As for :func:`ccm_from_chart`.
    objective, preserve_white
        As for :func:`fit_ccm`.
    fraction
        Central part of each patch box measured; default the config's ``patch_fraction`` for a
        simulated chart, 1.0 for ``patch_px`` boxes.

    Returns
    -------
    ``{"matrix": [[...], [...], [...]], "mean_de2000": ..., "max_de2000": ..., "neutral": [...],
    "balance": ..., "objective": ..., "source": ...}``: plain floats and strings. ``matrix`` goes to
    ``tuning.params.color_correction.matrix``; ``neutral`` is the camera RGB of the chart's white
    (max 1), the white balance the matrix was fitted with.
    """
    from isp.api import Simulation  # noqa: PLC0415 - the API imports the stages; keep this module light

    if objective not in CCM_OBJECTIVES or balance not in CHART_BALANCES:
        raise ConfigError(
            f"fit_ccm_from_run: objective={objective!r}, balance={balance!r}; choose objective from "
            f"{', '.join(CCM_OBJECTIVES)} and balance from {', '.join(CHART_BALANCES)}"
        )
    if chart_corners is not None and patch_px is None:
        raise ConfigError("fit_ccm_from_run: chart_corners needs patch_px, the side of the box measured on each patch")
    if not isinstance(cfg, DictConfig):
        cfg = compose(list(cfg or ()))
    cfg = copy.deepcopy(cfg)
    with open_dict(cfg):
        # measure after the lens-shading correction at full strength when the pipeline has one,
        # so that the chart's colours are not tinted by colour shading
        shading = "lens_shading" in (cfg.pipeline.get("stages") or [])
        cfg.pipeline.start, cfg.pipeline.stop, cfg.pipeline.taps = None, "lens_shading" if shading else "black_level", []
        if shading:
            cfg.tuning.params = cfg.tuning.get("params") or {}
            cfg.tuning.params.lens_shading = {"enabled": True, "strength": 1.0}
    simulation = Simulation(cfg)
    if chart_corners is None and simulation.scene_params.kind != "colorchecker":
        raise ConfigError(
            f"fit_ccm_from_run: the run's scene is {simulation.scene_params.kind!r}, not a ColorChecker; "
            "give chart_corners and patch_px for a photographed chart"
        )
    result = simulation.run()
    if chart_corners is not None:
        patches = colorchecker_patches(chart_corners, patch_px)
        default_fraction = 1.0
    else:
        patches = result.scene.patches
        default_fraction = simulation.settings.patch_fraction
    fit = ccm_from_chart(
        result.image,
        patches,
        fraction=default_fraction if fraction is None else fraction,
        balance=balance,
        objective=objective,
        preserve_white=preserve_white,
    )
    return {
        "matrix": [[round(float(v), 6) for v in row] for row in fit.matrix],
        "mean_de2000": round(float(fit.delta_e.mean()), 4),
        "max_de2000": round(float(fit.delta_e.max()), 4),
        "neutral": [round(float(v), 6) for v in fit.neutral],
        "balance": balance,
        "objective": objective,
        "source": result.raw.info.source if simulation.from_file else f"simulation: {result.raw.info.sensor}",
    }
