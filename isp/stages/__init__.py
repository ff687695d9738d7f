"""ISP stages, one module each, registered by name in :data:`STAGES`.

A stage is ``fn(frame, params, ctx) -> frame`` with its parameters in a dataclass; see
:mod:`isp.stages.registry`. Importing this package registers every stage.
"""

from isp.stages import (  # noqa: F401 - importing a stage module registers the stage
    black_level,
    color_correction,
    color_look,
    defect_correction,
    demosaic,
    false_color,
    grain,
    lens_shading,
    local_tone,
    lut3d,
    monochrome,
    oetf,
    quantize,
    raw_denoise,
    remosaic,
    resize,
    sharpen,
    tone,
    vignette,
    white_balance,
    yuv_denoise,
)
from isp.stages.registry import STAGES, Stage, StageContext, StageSpec, get_stage_spec, register_stage

__all__ = ["STAGES", "Stage", "StageContext", "StageSpec", "get_stage_spec", "register_stage"]
