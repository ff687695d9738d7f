"""ISP stages, one module each, registered by name in :data:`STAGES`.

A stage is ``fn(frame, params, ctx) -> frame`` with its parameters in a dataclass; see
:mod:`isp.stages.registry`. Importing this package registers every stage.
"""

from isp.stages import black_level, color_correction, demosaic, oetf, quantize, resize, tone, vignette, white_balance  # noqa: F401
from isp.stages.registry import STAGES, Stage, StageContext, StageSpec, get_stage_spec, register_stage

__all__ = ["STAGES", "Stage", "StageContext", "StageSpec", "get_stage_spec", "register_stage"]
