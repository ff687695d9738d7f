"""The ISP pipeline: an ordered list of stages built from config, with taps and timing.

The stage order comes from the ``pipeline`` config group (``pipeline.stages``); each stage's
parameters are its dataclass defaults, overridden by ``pipeline.params.<stage>`` and then by
the tuning's ``tuning.params.<stage>``; ``enabled: false`` there switches a listed stage off.
Everything is validated when the pipeline is built. ``pipeline.fuse: true`` lets a GPU run the
whole span in one kernel where :mod:`isp.fusion` can (the fast pipeline); otherwise, and always
on the CPU, the stages run one by one.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from isp.config import tabled_fields, to_container
from isp.errors import ConfigError, StageError
from isp.frame import Image, RawFrame
from isp.fusion import plan_fusion, plan_key
from isp.stages import STAGES, Stage, StageContext, get_stage_spec

__all__ = ["Pipeline", "PipelineResult"]

#: Fused plans kept per pipeline: frames of one burst or sweep share one.
_PLANS_KEPT = 8


@dataclass
class PipelineResult:
    """What a run of the pipeline gives back.

    Parameters
    ----------
    output
        The frame returned by the last stage that ran.
    taps
        Outputs of the stages named in ``taps``, by stage name.
    times_ms
        Wall time of each stage that ran, in milliseconds, in order (device synchronised).
    tuned
        For each stage with tuning tables, the values its tables gave for this frame's ISO
        and CCT, by parameter name.
    """

    output: Any
    taps: dict[str, Any] = field(default_factory=dict)
    times_ms: dict[str, float] = field(default_factory=dict)
    tuned: dict[str, dict[str, Any]] = field(default_factory=dict)


class Pipeline:
    """An ordered list of bound stages.

    Parameters
    ----------
    stages
        The stages in the order they run; names must be unique.
    fuse
        Run the span in one fused GPU kernel where :func:`isp.fusion.plan_fusion` can.
    """

    def __init__(self, stages: Sequence[Stage], fuse: bool = False):
        names = [s.name for s in stages]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise ConfigError(f"pipeline.stages: stage {duplicates[0]!r} is listed more than once")
        self.stages = list(stages)
        self.fuse = fuse
        self._plans: dict = {}  # fused plans by frame metadata (isp.fusion.plan_key), oldest first

    @classmethod
    def from_config(cls, pipeline_cfg: Any, tuning_cfg: Any = None) -> Pipeline:
        """Build and validate the pipeline from the ``pipeline`` and ``tuning`` config nodes."""
        pipeline = _mapping(pipeline_cfg, "pipeline")
        tuning = _mapping(tuning_cfg, "tuning") if tuning_cfg is not None else {}
        names = pipeline.get("stages")
        if not isinstance(names, list) or not names or not all(isinstance(n, str) for n in names):
            raise ConfigError(f"pipeline.stages: expected a non-empty list of stage names, got {names!r}")
        for i, name in enumerate(names):
            get_stage_spec(name, where=f"pipeline.stages[{i}]")
        pipeline_params = _params(pipeline, "pipeline")
        tuning_params = _params(tuning, "tuning")
        stages = [
            Stage.from_config(
                name,
                [
                    (f"pipeline.params.{name}", pipeline_params.get(name)),
                    (f"tuning.params.{name}", tuning_params.get(name)),
                ],
            )
            for name in names
        ]
        # A tuning may tune stages that this pipeline leaves out; its values must still be valid.
        for name, values in tuning_params.items():
            if name not in names:
                Stage.from_config(name, [(f"tuning.params.{name}", values)])
        fuse = pipeline.get("fuse", False)
        if not isinstance(fuse, bool):
            raise ConfigError(f"pipeline.fuse={fuse!r}: expected true or false")
        return cls(stages, fuse=fuse)

    @property
    def names(self) -> list[str]:
        return [s.name for s in self.stages]

    def stage(self, name: str) -> Stage:
        """The stage called ``name``."""
        return self.stages[self._index(name, "stage")]

    def run(
        self,
        frame: RawFrame | Image,
        ctx: StageContext,
        *,
        taps: Iterable[str] = (),
        start: str | None = None,
        stop: str | None = None,
        time_stages: bool = True,
    ) -> PipelineResult:
        """Run the stages from ``start`` to ``stop`` (both inclusive) on ``frame``.

        Parameters
        ----------
        frame
            Input of the first stage that runs (a RawFrame, or an Image when starting after
            the demosaic).
        ctx
            Backend and seed.
        taps
            Names of stages whose outputs to return in :attr:`PipelineResult.taps`.
        start, stop
            First and last stage to run; default the whole pipeline.
        time_stages
            Record each stage's wall time; on a GPU this synchronises the device after each stage.
            A fused run records one entry, ``"fused(first..last)"``, planning included.
        """
        wanted = set(taps)
        first, last = self.span(wanted, start, stop)
        result = PipelineResult(output=frame)
        if self.fuse:
            t0 = _clock(ctx, time_stages)
            span = self.stages[first : last + 1]
            key = plan_key(span, frame, ctx, wanted)
            plan = self._plans.get(key) if key is not None else None
            if plan is None:
                plan = plan_fusion(span, frame, ctx, taps=wanted)
                if plan is not None and key is not None:
                    if len(self._plans) >= _PLANS_KEPT:
                        self._plans.pop(next(iter(self._plans)))
                    self._plans[key] = plan
            if plan is not None:
                result.output = plan.run(frame, ctx)
                result.tuned.update(plan.tuned)
                if time_stages:
                    result.times_ms[plan.label] = _elapsed_ms(ctx, t0)
                if plan.last_stage in wanted:
                    result.taps[plan.last_stage] = result.output
                return result
        for stage in self.stages[first : last + 1]:
            if not stage.enabled:
                continue
            expected = RawFrame if stage.spec.consumes == "raw" else Image
            if not isinstance(result.output, expected):
                raise StageError(
                    f"stage '{stage.name}' takes {_kind(expected)}, got {_kind(type(result.output))}: "
                    "check pipeline.stages and pipeline.start"
                )
            t0 = _clock(ctx, time_stages)
            params = stage.params_for(result.output)
            tabled = tabled_fields(stage.params)
            if tabled:
                result.tuned[stage.name] = {name: getattr(params, name) for name in tabled}
            result.output = stage.spec.fn(result.output, params, ctx)
            if time_stages:
                result.times_ms[stage.name] = _elapsed_ms(ctx, t0)
            if stage.name in wanted:
                result.taps[stage.name] = result.output
        return result

    def span(self, taps: Iterable[str] = (), start: str | None = None, stop: str | None = None) -> tuple[int, int]:
        """Indices of the first and last stage to run; checks that every name is a stage here."""
        for name in taps:
            self._index(name, "taps")
        first = self._index(start, "start") if start else 0
        last = self._index(stop, "stop") if stop else len(self.stages) - 1
        if first > last:
            raise ConfigError(f"pipeline: start stage {start!r} comes after stop stage {stop!r}")
        return first, last

    def _index(self, name: str, what: str) -> int:
        try:
            return self.names.index(name)
        except ValueError:
            raise ConfigError(f"pipeline.{what}: {name!r} is not a stage of this pipeline ({', '.join(self.names)})") from None


def _clock(ctx: StageContext, on: bool) -> float:
    """Start a timing: the device drained first, so earlier work is not counted (0.0 when off)."""
    if not on:
        return 0.0
    ctx.backend.synchronize()
    return time.perf_counter()


def _elapsed_ms(ctx: StageContext, t0: float) -> float:
    """Milliseconds since :func:`_clock`, the device's queued work included."""
    ctx.backend.synchronize()
    return (time.perf_counter() - t0) * 1e3


def _kind(cls: type) -> str:
    return {"RawFrame": "a raw frame", "Image": "an image"}.get(cls.__name__, f"a {cls.__name__}")


def _mapping(cfg: Any, where: str) -> dict[str, Any]:
    value = to_container(cfg)
    if not isinstance(value, Mapping):
        raise ConfigError(f"{where}: expected a mapping, got {value!r}")
    return dict(value)


def _params(cfg: Mapping[str, Any], where: str) -> dict[str, Any]:
    params = cfg.get("params") or {}
    if not isinstance(params, Mapping):
        raise ConfigError(f"{where}.params: expected a mapping of stage name to parameters, got {params!r}")
    for name in params:
        if name not in STAGES:
            raise ConfigError(f"{where}.params.{name}: unknown stage {name!r}; known stages: {', '.join(STAGES)}")
    return dict(params)
