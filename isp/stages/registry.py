"""The registry of ISP stages by name, and the bound :class:`Stage` the pipeline runs."""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from isp.backend import Backend
from isp.config import build, check_fields, resolve_tables, tabled_fields, to_container
from isp.errors import ConfigError

__all__ = ["StageContext", "StageSpec", "Stage", "STAGES", "register_stage", "get_stage_spec", "frame_conditions"]


@dataclass(frozen=True)
class StageContext:
    """What a stage may use besides its input frame and parameters.

    Parameters
    ----------
    backend
        The array backend the frame lives on.
    seed
        The run's seed; a stage that draws random numbers derives its own stream from it.
    """

    backend: Backend
    seed: int = 0


@dataclass(frozen=True)
class StageSpec:
    """A registered stage: its function, parameter dataclass and the kind of frame it takes.

    ``fn(frame, params, ctx)`` returns a new frame and never modifies its input, so taps
    taken before a stage stay valid after it.
    """

    name: str
    fn: Callable[[Any, Any, StageContext], Any]
    params: type
    consumes: str
    summary: str


STAGES: dict[str, StageSpec] = {}

#: The ISO at which tuning tables are read for a frame that records none.
ISO_WHEN_UNKNOWN = 100.0
_WARNED_NO_ISO: set[str] = set()
log = logging.getLogger(__name__)


def register_stage(name: str, params: type, consumes: str) -> Callable:
    """Decorator registering ``fn(frame, params, ctx)`` as the stage ``name``.

    ``consumes`` is ``"raw"`` (a RawFrame) or ``"image"`` (an Image).
    """
    if consumes not in ("raw", "image"):
        raise ValueError(f"stage {name}: consumes must be 'raw' or 'image', not {consumes!r}")

    def decorate(fn: Callable) -> Callable:
        if name in STAGES:
            raise ValueError(f"stage {name!r} registered twice")
        summary = (fn.__doc__ or "").strip().splitlines()[0] if fn.__doc__ else ""
        STAGES[name] = StageSpec(name, fn, params, consumes, summary)
        return fn

    return decorate


def get_stage_spec(name: str, where: str = "pipeline.stages") -> StageSpec:
    """The stage registered as ``name``; a :class:`ConfigError` naming ``where`` if none is."""
    try:
        return STAGES[name]
    except KeyError:
        raise ConfigError(f"{where}: unknown stage {name!r}; known stages: {', '.join(STAGES)}") from None


@dataclass(frozen=True)
class Stage:
    """A stage bound to validated parameters: ``stage(frame, ctx) -> frame``.

    ``enabled`` is false for a stage that the config lists but switches off (``enabled: false``
    among its parameters): the pipeline keeps its place and passes frames through it untouched,
    so a tuning can switch a stage on or off without rewriting the pipeline's order.
    """

    spec: StageSpec
    params: Any
    enabled: bool = True

    @classmethod
    def from_config(cls, name: str, layers: list[tuple[str, Mapping | None]]) -> Stage:
        """Bind stage ``name`` to parameters merged from config layers, later layers winning.

        ``layers`` holds ``(config path, mapping)`` pairs; every key of every layer is checked,
        and an error names the layer the bad value came from. The key ``enabled`` (true or false)
        is understood by every stage.
        """
        spec = get_stage_spec(name)
        merged: dict[str, Any] = {}
        enabled = True
        for where, values in layers:
            plain = dict(to_container(values) or {})
            if "enabled" in plain:
                enabled = plain.pop("enabled")
                if not isinstance(enabled, bool):
                    raise ConfigError(f"{where}.enabled={enabled!r}: expected true or false")
            check_fields(spec.params, plain, where, partial=True)  # reject unknown or bad keys where they were written
            merged.update(plain)
        return cls(spec, build(spec.params, merged, layers[-1][0] if layers else name), enabled)

    @property
    def name(self) -> str:
        return self.spec.name

    def params_for(self, frame: Any) -> Any:
        """The parameters for ``frame``: tuning tables interpolated at its ISO and CCT."""
        if not tabled_fields(self.params):
            return self.params
        return resolve_tables(self.params, frame_conditions(frame), f"stage '{self.name}'")

    def __call__(self, frame: Any, ctx: StageContext) -> Any:
        return self.spec.fn(frame, self.params_for(frame), ctx)


def frame_conditions(frame: Any) -> dict[str, float | None]:
    """The capture conditions tuning tables are indexed by: ``{"iso": ..., "cct": ...}``.

    The CCT is the one the white balance chose; before white balance it is estimated from the
    as-shot neutral and the frame's colour calibration (``None`` when there is none). A frame
    that records no ISO (some raw files) is developed as ISO :data:`ISO_WHEN_UNKNOWN`, with a
    warning, rather than failing on every table.
    """
    iso = frame.info.iso
    if iso is None:
        iso = ISO_WHEN_UNKNOWN
        if frame.info.source not in _WARNED_NO_ISO:
            _WARNED_NO_ISO.add(frame.info.source)
            log.warning("%s records no ISO: tuning tables by ISO use ISO %g", frame.info.source, ISO_WHEN_UNKNOWN)
    cct = frame.cct_k
    if cct is None and frame.info.color_matrices:
        from isp.stages.color_correction import interpolate_calibration  # noqa: PLC0415 - avoids an import cycle

        neutral = np.asarray(frame.info.as_shot_neutral, dtype=np.float64)
        _, cct = interpolate_calibration(frame.info.color_matrices, neutral / neutral.max())
    return {"iso": iso, "cct": cct}
