"""Colour correction: camera RGB to linear sRGB with a 3×3 matrix, the DNG way.

Input: an Image in camera RGB, linear (white balanced or not). Output: an Image in linear sRGB.

The matrix comes from the frame's calibration (DNG ColorMatrix: XYZ to camera RGB per
calibration illuminant). With two calibrations it is interpolated in inverse CCT at the
scene's white, found from the neutral by the DNG specification's fixed-point iteration; a
ForwardMatrix is used when the file has one. The camera white is adapted to D65 (Bradford) and
taken to sRGB, scaled so that the balanced camera white maps to sRGB white (1, 1, 1). A tuning
can override the matrix and adjust saturation.

References
----------
Adobe, Digital Negative (DNG) Specification 1.6, chapter 6.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from isp import colorimetry
from isp.config import param
from isp.errors import StageError
from isp.frame import CaptureInfo, ColorMatrix, Image
from isp.stages.oetf import apply_matrix
from isp.stages.registry import StageContext, register_stage

__all__ = ["ColorCorrectionParams", "color_correction", "camera_to_srgb", "interpolate_calibration", "saturation_matrix"]

#: Rec. 709 / sRGB luminance weights (the Y row of SRGB_TO_XYZ).
_LUMA = colorimetry.SRGB_TO_XYZ[1]


@dataclass(frozen=True)
class ColorCorrectionParams:
    matrix: list[list[float]] | None = param(
        None,
        shape=(3, 3),
        range=(-16.0, 16.0),
        table="cct",
        doc="white-balanced camera RGB to linear sRGB (a CCM, or a table of CCMs by scene CCT); null derives it from the frame's calibration",
    )
    saturation: float = param(
        1.0, range=(0.0, 3.0), table="iso", doc="linear saturation about Rec. 709 luminance; 1 keeps the calibrated colour"
    )


def saturation_matrix(saturation: float) -> np.ndarray:
    """A 3×3 matrix that scales chroma about luminance and keeps white (rows sum to 1)."""
    return (1.0 - saturation) * np.outer(np.ones(3), _LUMA) + saturation * np.eye(3)


def interpolate_calibration(calibrations: tuple[ColorMatrix, ...], neutral: np.ndarray) -> tuple[ColorMatrix, float | None]:
    """The calibration for the scene white given by the camera ``neutral``, and its CCT.

    One calibration is used as it is. Two with known temperatures are blended linearly in
    1/CCT (clamped to their range) at the CCT of the white that the blend itself maps the
    neutral to, iterating to a fixed point as the DNG specification describes.
    """
    if not calibrations:
        raise StageError("color_correction: the frame has no colour calibration; set color_correction.matrix")
    usable = [c for c in calibrations if c.cct_k]
    if len(calibrations) == 1 or len(usable) < 2:
        chosen = usable[-1] if usable else calibrations[0]
        return chosen, _white_cct(chosen.xyz_to_camera, neutral)
    low, high = sorted(usable[:2], key=lambda c: c.cct_k)
    if low.cct_k == high.cct_k:  # two calibrations for one temperature: nothing to interpolate
        return high, _white_cct(high.xyz_to_camera, neutral)

    def blend(weight: float, a: np.ndarray | None, b: np.ndarray | None) -> np.ndarray | None:
        return None if a is None or b is None else weight * a + (1.0 - weight) * b

    weight = 0.5
    for _ in range(30):
        cct = _white_cct(blend(weight, low.xyz_to_camera, high.xyz_to_camera), neutral)
        inv_t = np.clip(1.0 / cct, 1.0 / high.cct_k, 1.0 / low.cct_k)
        new_weight = (inv_t - 1.0 / high.cct_k) / (1.0 / low.cct_k - 1.0 / high.cct_k)
        converged = abs(new_weight - weight) < 1e-7
        weight = new_weight
        if converged:
            break
    matrix = blend(weight, low.xyz_to_camera, high.xyz_to_camera)
    cct = _white_cct(matrix, neutral)
    blended = ColorMatrix(
        matrix,
        illuminant=f"{low.illuminant}/{high.illuminant} blend",
        cct_k=cct,
        forward_matrix=blend(weight, low.forward_matrix, high.forward_matrix),
    )
    return blended, cct


def _white_xy(xyz_to_camera: np.ndarray, neutral: np.ndarray) -> np.ndarray:
    return colorimetry.XYZ_to_xy(np.linalg.solve(xyz_to_camera, neutral))


def _white_cct(xyz_to_camera: np.ndarray, neutral: np.ndarray) -> float:
    return colorimetry.xy_to_cct(_white_xy(xyz_to_camera, neutral))


def camera_to_srgb(info: CaptureInfo, neutral: np.ndarray) -> np.ndarray:
    """The 3×3 matrix from white-balanced camera RGB to linear sRGB (D65).

    ``neutral`` is the camera RGB of the scene white (max 1); the balanced data is the raw data
    divided by it. The result maps balanced white (1, 1, 1) to sRGB (1, 1, 1).
    """
    neutral = np.asarray(neutral, dtype=np.float64)
    calibration, _ = interpolate_calibration(info.color_matrices, neutral)
    if calibration.forward_matrix is not None:
        camera_to_xyz = calibration.forward_matrix  # defined on balanced data, white to D50
        white_xy = colorimetry.D50_XY
    else:
        camera_to_xyz = np.linalg.inv(calibration.xyz_to_camera) @ np.diag(neutral)
        white_xy = _white_xy(calibration.xyz_to_camera, neutral)
    matrix = colorimetry.XYZ_TO_SRGB @ colorimetry.bradford(white_xy, colorimetry.D65_XY) @ camera_to_xyz
    white = matrix @ np.ones(3)
    if not np.all(np.isfinite(matrix)) or white[1] <= 0:
        raise StageError(f"color_correction: calibration of {info.source} gives no usable matrix for neutral {neutral.tolist()}")
    return matrix / white[1]


@register_stage("color_correction", ColorCorrectionParams, consumes="image")
def color_correction(image: Image, params: ColorCorrectionParams, ctx: StageContext) -> Image:
    """Map camera RGB to linear sRGB with the frame's calibration (or a tuned matrix)."""
    image.require("color_correction", space="camera", transfer="linear")
    if image.wb_gains is not None:
        neutral = 1.0 / np.asarray(image.wb_gains, dtype=np.float64)
        neutral = neutral / neutral.max()
        to_balanced = np.eye(3)
    else:
        neutral = np.asarray(image.info.as_shot_neutral, dtype=np.float64)
        neutral = neutral / neutral.max()
        to_balanced = np.diag(1.0 / neutral)
    base = np.asarray(params.matrix, dtype=np.float64) if params.matrix is not None else camera_to_srgb(image.info, neutral)
    matrix = saturation_matrix(params.saturation) @ base @ to_balanced
    return image.replace(data=apply_matrix(image.data, matrix), space="srgb")
