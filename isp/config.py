"""Configuration: typed parameter dataclasses, their validation, and Hydra composition.

Every parameter set (a stage's, the sensor's, a scene's) is a dataclass whose fields carry
their unit, range and choices in ``metadata`` (see :func:`param`). :func:`build` turns a
(Hydra) mapping into such a dataclass and rejects unknown keys, wrong types and out-of-range
values with a message that names the full config path, so a mistake is caught when the
config is built rather than halfway through a run.
"""

from __future__ import annotations

import copy
import dataclasses
import types
import typing
from collections.abc import Mapping, Sequence
from typing import Any, TypeVar

from omegaconf import DictConfig, ListConfig, OmegaConf
from omegaconf.errors import MissingMandatoryValue, OmegaConfBaseException

from isp.errors import ConfigError
from isp.paths import config_dir

__all__ = ["param", "build", "check_fields", "describe", "to_container", "compose", "Table", "TABLE_AXES", "resolve_tables", "tabled_fields", "HYDRA_VERSION_BASE"]

HYDRA_VERSION_BASE = "1.3"

T = TypeVar("T")


def param(
    default: Any = dataclasses.MISSING,
    *,
    doc: str = "",
    unit: str | None = None,
    range: tuple[float | None, float | None] | None = None,  # noqa: A002 - the natural name here
    choices: Sequence[Any] | None = None,
    shape: tuple[int, ...] | None = None,
    table: str | None = None,
) -> Any:
    """A dataclass field with documentation and validation metadata.

    Parameters
    ----------
    default
        Default value; lists and other mutable values are copied for each instance.
    doc
        One line saying what the parameter does.
    unit
        Unit of the value (``"EV"``, ``"s"``, ``"DN"``, ...).
    range
        Inclusive ``(low, high)`` bounds; ``None`` for an open end. Applies to every number
        in a list-valued parameter.
    choices
        The allowed values.
    shape
        Required shape of a list-valued parameter, e.g. ``(3,)`` or ``(3, 3)``.
    table
        ``"iso"`` or ``"cct"``: besides a plain value the parameter may be a tuning table
        indexed by that condition, ``{iso: [100, 800, 3200], value: [0.2, 0.5, 1.0]}``,
        interpolated for each frame (see :class:`Table`). Only for float-valued parameters.
    """
    if table is not None and table not in TABLE_AXES:
        raise ValueError(f"param(table={table!r}): choose one of {', '.join(TABLE_AXES)}")
    metadata = {
        "doc": doc,
        "unit": unit,
        "range": range,
        "choices": tuple(choices) if choices else None,
        "shape": shape,
        "table": table,
    }
    if isinstance(default, (list, dict)):
        return dataclasses.field(default_factory=lambda: copy.deepcopy(default), metadata=metadata)
    return dataclasses.field(default=default, metadata=metadata)


def to_container(cfg: Any) -> Any:
    """Plain Python containers from an OmegaConf node (interpolations resolved)."""
    if isinstance(cfg, (DictConfig, ListConfig)):
        try:
            return OmegaConf.to_container(cfg, resolve=True, throw_on_missing=True)
        except MissingMandatoryValue as exc:
            raise ConfigError(f"{exc.full_key}: a value is required (set it on the command line)") from exc
        except OmegaConfBaseException as exc:
            raise ConfigError(f"{getattr(exc, 'full_key', '') or 'config'}: {exc.msg if hasattr(exc, 'msg') else exc}") from exc
    return cfg


def build(cls: type[T], cfg: Any, where: str) -> T:
    """Validate ``cfg`` against the dataclass ``cls`` and return an instance.

    Parameters
    ----------
    cls
        A dataclass whose fields were declared with :func:`param`.
    cfg
        A mapping (``dict`` or ``DictConfig``) of field values; ``None`` means all defaults.
    where
        Config path of ``cfg`` (``"sensor"``, ``"tuning.params.tone"``), used in messages.

    Raises
    ------
    ConfigError
        An unknown key, a missing required value, a wrong type or a value out of range.
    """
    return cls(**check_fields(cls, cfg, where))


def check_fields(cls: type, cfg: Any, where: str, *, partial: bool = False) -> dict[str, Any]:
    """The checked values of ``cfg`` for the dataclass ``cls`` by field name, without building it.

    With ``partial``, required fields may be missing: one config layer of several (a pipeline's
    stage parameters, then a tuning's) is checked on its own this way, and checks that tie
    fields together run once the layers are merged.
    """
    values = to_container(cfg) if cfg is not None else {}
    if not isinstance(values, Mapping):
        raise ConfigError(f"{where}: expected a mapping of parameters, got {type(values).__name__} {values!r}")
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    unknown = sorted(set(values) - set(fields))
    if unknown:
        raise ConfigError(f"{where}.{unknown[0]}: unknown parameter; known: {', '.join(fields)}")
    hints = typing.get_type_hints(cls)
    kwargs = {}
    for name, f in fields.items():
        path = f"{where}.{name}"
        if name not in values:
            if not partial and f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
                raise ConfigError(f"{path}: a value is required")
            continue
        kwargs[name] = _check(values[name], hints[name], f.metadata, path)
    return kwargs


def describe(cls: type) -> list[dict[str, Any]]:
    """The parameters of ``cls`` as rows: name, type, default, unit, range, choices, doc."""
    rows = []
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        if not f.init:
            continue
        default = f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default
        rows.append(
            {
                "name": f.name,
                "type": getattr(hints[f.name], "__name__", str(hints[f.name])),
                "default": None if default is dataclasses.MISSING else default,
                **{k: f.metadata.get(k) for k in ("unit", "range", "choices", "table", "doc")},
            }
        )
    return rows


def _check(value: Any, hint: Any, meta: Mapping[str, Any], path: str) -> Any:
    axis = meta.get("table")
    if axis is not None and isinstance(value, Mapping):
        return _table(value, axis, hint, meta, path)
    value = _coerce(value, hint, path)
    choices = meta.get("choices")
    if choices is not None and value is not None and value not in choices:
        raise ConfigError(f"{path}={value!r} is not allowed; choose one of {', '.join(map(str, choices))}")
    bounds = meta.get("range")
    if bounds is not None and value is not None:
        for number in _numbers(value):
            low, high = bounds
            if (low is not None and number < low) or (high is not None and number > high):
                raise ConfigError(f"{path}={_short(value)} is out of range {_interval(low, high)}{_unit(meta)}")
    shape = meta.get("shape")
    if shape is not None and value is not None:
        got = _shape(value)
        if got != tuple(shape):
            raise ConfigError(f"{path}: expected shape {tuple(shape)}, got {got} ({_short(value)})")
    return value


def _coerce(value: Any, hint: Any, path: str) -> Any:
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        options = typing.get_args(hint)
        if value is None and type(None) in options:
            return None
        errors = []
        for option in options:
            if option is type(None):
                continue
            try:
                return _coerce(value, option, path)
            except ConfigError as exc:
                errors.append(str(exc))
        raise ConfigError(errors[0] if len(errors) == 1 else f"{path}={_short(value)}: expected {_type_name(hint)}")
    if value is None:
        raise ConfigError(f"{path}: a value is required (expected {_type_name(hint)}, got null)")
    if origin in (list, tuple):
        if isinstance(value, (str, bytes)) or not isinstance(value, Sequence):
            raise ConfigError(f"{path}={_short(value)}: expected a list ({_type_name(hint)})")
        (item,) = typing.get_args(hint)[:1] or (Any,)
        items = [_coerce(v, item, f"{path}[{i}]") for i, v in enumerate(value)]
        return items if origin is list else tuple(items)
    if origin is dict:
        if not isinstance(value, Mapping):
            raise ConfigError(f"{path}={_short(value)}: expected a mapping")
        return dict(value)
    if dataclasses.is_dataclass(hint):
        return build(hint, value, path)
    if hint is Any:
        return value
    if hint is bool:
        if isinstance(value, bool):
            return value
        raise ConfigError(f"{path}={_short(value)}: expected true or false")
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            if isinstance(value, float) and value.is_integer():
                return int(value)
            raise ConfigError(f"{path}={_short(value)}: expected an integer")
        return value
    if hint is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{path}={_short(value)}: expected a number")
        return float(value)
    if hint is str:
        if not isinstance(value, str):
            raise ConfigError(f"{path}={_short(value)}: expected a string")
        return value
    if isinstance(hint, type) and not isinstance(value, hint):
        raise ConfigError(f"{path}={_short(value)}: expected {_type_name(hint)}")
    return value


#: Conditions a tuning table may be indexed by, and how it is interpolated between its points:
#: ISO linearly in stops (log2 ISO), colour temperature linearly in mireds (1/CCT), as real
#: ISPs and the DNG specification do.
TABLE_AXES = {"iso": "log2", "cct": "inverse"}


@dataclasses.dataclass(frozen=True)
class Table:
    """A parameter that varies with a capture condition, interpolated at run time.

    Written in a config as ``{iso: [100, 800, 3200], value: [0.2, 0.5, 1.0]}`` (or ``cct:``).
    Between points the value is interpolated linearly in log2 ISO or in 1/CCT; outside the
    points it is held at the end values. Values may be numbers or lists (a 3×3 matrix per
    colour temperature); lists are interpolated element by element.

    Examples
    --------
    >>> Table("iso", (100.0, 400.0), (0.0, 1.0)).at(200.0)
    0.5
    >>> Table("cct", (2850.0, 6500.0), ([1.0, 0.0], [0.0, 1.0])).at(6500.0)
    [0.0, 1.0]
    """

    axis: str
    points: tuple[float, ...]
    values: tuple[Any, ...]

    def at(self, condition: float) -> Any:
        """The value at ``condition`` (an ISO or a CCT in kelvin)."""
        import numpy as np  # noqa: PLC0415 - config stays importable without the array stack

        def warp(v: Any) -> Any:
            v = np.asarray(v, dtype=np.float64)
            return np.log2(v) if TABLE_AXES[self.axis] == "log2" else -1.0 / v  # increasing in both

        x, xs = warp(condition), warp(self.points)
        ys = np.asarray(self.values, dtype=np.float64)
        flat = ys.reshape(len(self.points), -1)
        out = np.array([np.interp(x, xs, flat[:, k]) for k in range(flat.shape[1])]).reshape(ys.shape[1:])
        return float(out) if out.ndim == 0 else out.tolist()


def _table(value: Mapping[str, Any], axis: str, hint: Any, meta: Mapping[str, Any], path: str) -> Table:
    keys = set(value)
    if keys != {axis, "value"}:
        raise ConfigError(
            f"{path}: a tuning table is written {{{axis}: [...], value: [...]}}, got keys {sorted(keys)}"
        )
    points = value[axis]
    if isinstance(points, (str, bytes)) or not isinstance(points, Sequence) or not points:
        raise ConfigError(f"{path}.{axis}: expected a non-empty list of {axis} values, got {_short(points)}")
    points = [_coerce(p, float, f"{path}.{axis}[{i}]") for i, p in enumerate(points)]
    if any(p <= 0 for p in points) or any(b <= a for a, b in zip(points[:-1], points[1:], strict=True)):
        raise ConfigError(f"{path}.{axis}={_short(points)}: expected positive values in increasing order")
    values = value["value"]
    if isinstance(values, (str, bytes)) or not isinstance(values, Sequence) or len(values) != len(points):
        raise ConfigError(f"{path}.value: expected a list of {len(points)} values, one per {axis} point, got {_short(values)}")
    inner = {k: v for k, v in meta.items() if k != "table"}
    checked = tuple(_check(v, hint, inner, f"{path}.value[{i}]") for i, v in enumerate(values))
    if any(not _numbers(v) or len(_numbers(v)) != len(_numbers(checked[0])) for v in checked):
        raise ConfigError(f"{path}.value: table values must be numbers or lists of numbers of one shape")
    return Table(axis, tuple(points), checked)


def resolve_tables(params: T, conditions: Mapping[str, float | None], where: str) -> T:
    """``params`` with every :class:`Table` replaced by its value at ``conditions``.

    Parameters
    ----------
    params
        A parameter dataclass built by :func:`build`.
    conditions
        The frame's capture conditions by axis name: ``{"iso": 3200.0, "cct": 5100.0}``.
    where
        Config path of ``params`` for messages (``"stage 'sharpen'"``).

    Raises
    ------
    ConfigError
        A table needs a condition the frame does not carry.
    """
    changes = {}
    for f in dataclasses.fields(params):
        value = getattr(params, f.name)
        if isinstance(value, Table):
            condition = conditions.get(value.axis)
            if condition is None:
                raise ConfigError(
                    f"{where}: parameter {f.name} is a table by {value.axis}, but the frame has no {value.axis}; "
                    f"give {f.name} a single value"
                )
            changes[f.name] = value.at(condition)
    return dataclasses.replace(params, **changes) if changes else params


def tabled_fields(params: Any) -> list[str]:
    """Names of the fields of a parameter dataclass that hold a :class:`Table`."""
    return [f.name for f in dataclasses.fields(params) if isinstance(getattr(params, f.name), Table)]


def _numbers(value: Any) -> list[float]:
    if isinstance(value, bool):
        return []
    if isinstance(value, (int, float)):
        return [value]
    if isinstance(value, (list, tuple)):
        return [n for v in value for n in _numbers(v)]
    return []


def _shape(value: Any) -> tuple[int, ...]:
    if isinstance(value, (list, tuple)):
        inner = {_shape(v) for v in value}
        return (len(value), *inner.pop()) if len(inner) == 1 else (len(value), -1)
    return ()


def _type_name(hint: Any) -> str:
    return getattr(hint, "__name__", None) or str(hint).replace("typing.", "")


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _interval(low: float | None, high: float | None) -> str:
    return f"[{'-inf' if low is None else f'{low:g}'}, {'inf' if high is None else f'{high:g}'}]"


def _unit(meta: Mapping[str, Any]) -> str:
    unit = meta.get("unit")
    return f" {unit}" if unit else ""


def compose(overrides: Sequence[str] = (), config_name: str = "config") -> DictConfig:
    """Compose the isp-sim config with Hydra's compose API, as the command line would.

    Parameters
    ----------
    overrides
        Hydra overrides, e.g. ``["sensor=generic_bayer", "tuning=neutral", "scene.size=[64,96]"]``.

    Raises
    ------
    ConfigError
        An override names an unknown group option or key.
    """
    from hydra import compose as hydra_compose  # noqa: PLC0415 - keep import of the package light
    from hydra import initialize_config_dir  # noqa: PLC0415
    from hydra.errors import HydraException  # noqa: PLC0415

    try:
        with initialize_config_dir(version_base=HYDRA_VERSION_BASE, config_dir=str(config_dir()), job_name="isp"):
            return hydra_compose(config_name=config_name, overrides=list(overrides))
    except (HydraException, OmegaConfBaseException) as exc:
        raise ConfigError(_first_line(str(exc))) from exc


def _first_line(message: str) -> str:
    lines = [line.strip() for line in message.strip().splitlines() if line.strip()]
    return " ".join(lines[:3]) if lines else message

