"""The fused sensor engine: mean photo-electrons to DN in one pass, counter-based noise.

``sensor.engine=fused`` computes what :mod:`isp.sensor.capture`'s reference engine computes,
step for step and with the same distributions (fixed gain, photon shot noise, dark current and
hot photodiodes, full-well clipping, DSNU, row and read noise, both conversion gains of a merged
DCG frame, the ADC), but draws every random number from Philox4x32-10 (:mod:`isp.rng`) so that
one GPU thread can compute one output pixel with nothing shared (``kernels/sensor.cu``). The
functions here are the array-module reference of exactly that algorithm; the kernel is its
schedule, and the two give the same DN on the same seed.

Random numbers
    Key ``(seed low, seed high)``; counter ``(pixel index low, pixel index high, draw number,
    stream)``, the pixel index counted row-major in the full read-out of the mode, so a window
    (a crop) draws what the same pixels draw in the whole frame. ``stream`` is
    :func:`isp.rng.stream_id` of the noise source (``shot``, ``dark``, ``hot``, ``read``,
    ``read_lcg``, ``row``): switching one source off leaves the others' draws unchanged. Row
    noise uses the counter ``(read-out row, 0, 0, stream)``, the same for every pixel of the row.
    Uniforms are ``(top 23 bits + 0.5) / 2**23``: exact in float32, strictly inside (0, 1), and
    ``1 - u`` exact too.

Poisson sampling (exact algorithms; float32 arithmetic, 23-bit uniforms)
    Below a mean of 10: inversion by sequential search on one uniform (draw 0, word 0), summing
    the probabilities ``p(k) = p(k-1) · λ / k`` from ``e^-λ`` until the sum passes the uniform;
    the search also stops when ``p(k)`` no longer changes the float32 sum (the tail beyond its
    resolution, about 1e-7). Expected work ``λ + 1`` steps, no rejection, no table.
    From 10: Hormann's PTRS transformed rejection (1993), the algorithm NumPy uses, with its
    constants; proposal ``j`` takes words ``2(j mod 2), 2(j mod 2) + 1`` of draw ``j // 2``, so one
    Philox call serves two proposals and about 99 % of pixels need one call. The acceptance
    test's ``log P(k; λ)`` is evaluated in Loader's saddle-point form
    ``-bd0(k, λ) - log(2πk)/2 - δ(k)`` (``bd0 = k·log1p((k-λ)/λ) - (k-λ)``, ``δ`` Stirling's
    correction; Loader 2000) rather than NumPy's ``-λ + k log λ - lgamma(k+1)``, whose terms
    reach ``10⁷`` at a mean of ``10⁶``, where float32's step is 1; ``log k!`` directly below
    ``k = 10``.

Arithmetic
    float32 throughout, products and sums rounded separately; the kernel uses ``__fmul_rn`` and
    ``__fadd_rn`` so the compiler does not fuse them. The CUDA math library's ``logf``,
    ``expf``, ``log1pf`` and ``cosf`` (within 2 ulp) and NumPy's may round differently, so a
    pixel whose value sits within a few ulp of a rounding boundary of the ADC can come out 1 DN
    apart (estimated rate of order 1e-6 per pixel), and a Poisson acceptance or search decision
    that falls within an ulp of its threshold can flip (of order 1e-7). The CPU emulation of the
    kernel (glibc's maths) matches NumPy bit for bit on the test frames.

Hot photodiodes are a sparse list in the fixed patterns: the kernel computes every pixel
without them and a second launch, one thread per hot pixel, recomputes those pixels with their
extra dark charge (the same draws otherwise) and overwrites them.

Bytes moved per output pixel by the kernel: 4 (mean electrons) + 4 (gain map) + 4 (offset map)
read, 2 (uint16 DN) written: 14 B, 0.7 GB for a 50 MP frame, about 0.25 ms at an H100's
~3 TB/s. The work is arithmetic: four to five Philox4x32-10 calls per pixel (shot, dark, read,
row; two read calls for DCG), 20 widening integer multiplies each, plus a handful of logarithms.

On the CPU this reference is slower than the reference engine (Philox in NumPy costs more than
NumPy's own generators): the fused engine is for the GPU, its NumPy path for checking it.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from isp.errors import ConfigError
from isp.rng import philox4x32, pixel_counters, stream_id, uniform01
from isp.sensor.model import Exposure, SensorConfig

if TYPE_CHECKING:
    from isp.backend import Backend
    from isp.sensor.capture import FixedPatterns

__all__ = [
    "FusedParams",
    "fused_params",
    "noisy_electrons",
    "dn_reference",
    "STRIP_ROWS",
    "poisson",
    "dn_cuda",
    "kernel_launches",
    "POISSON_INVERSION_BELOW",
    "PTRS_MAX_DRAWS",
    "STREAMS",
]

#: Means below this are sampled by inversion, from it by PTRS (NumPy's switch point).
POISSON_INVERSION_BELOW = 10.0
#: PTRS accepts about nine proposals in ten; 16 draws hold 32 proposals. The cap only bounds the
#: loop for a NaN mean (the last proposal is returned).
PTRS_MAX_DRAWS = 16

#: The counter's fourth word for each noise source (``kernels/sensor.cu`` holds the same numbers).
STREAMS = {name: stream_id(name) for name in ("shot", "dark", "hot", "read", "read_lcg", "row")}

# kernels/sensor.cu FLAG_*: which parts of the model are on.
_SHOT, _DARK, _READ, _TUKEY, _ROW, _DCG, _GAIN, _OFFSET, _DIGITAL = (1 << i for i in range(9))

_F32 = np.float32
_BLOCK = (64, 4)  # x along rows: a warp reads 128 contiguous bytes of each float32 map
_HOT_BLOCK = 128
_MASK32 = 0xFFFFFFFF


@dataclass(frozen=True)
class FusedParams:
    """Everything the fused engine needs besides the arrays, derived once per capture.

    Floats that enter float32 arithmetic are ``np.float32``. ``read`` is ``None`` (off),
    ``"gaussian"`` or ``"tukey"``; ``read_scale`` multiplies the unit variate (a standard
    normal, or the Tukey-lambda quantile without its ``1/lambda``), ``read_lcg_scale`` that of
    the low-gain read-out of a merged DCG frame.
    """

    shape: tuple[int, int]
    origin: tuple[int, int]
    readout_width: int
    seed: int
    shot: bool
    dark_e: np.float32 | None
    hot_e_per_count: np.float32 | None
    full_well_e: np.float32
    row_sigma_e: np.float32 | None
    read: str | None
    tukey_lambda: np.float32
    read_scale: np.float32
    read_lcg_scale: np.float32
    dcg: bool
    hcg_well_e: np.float32
    merge_below_e: np.float32
    adc_gain_dn_e: np.float32
    black_dn: np.float32
    code_max_dn: np.float32
    digital_gain: np.float32
    white_dn: np.float32

    @property
    def key(self) -> tuple[int, int]:
        """Philox key: the seed's low and high 32 bits."""
        return self.seed & _MASK32, (self.seed >> 32) & _MASK32


def fused_params(sensor: SensorConfig, exposure: Exposure, seed: int, shape: tuple[int, int], origin: tuple[int, int]) -> FusedParams:
    """The fused engine's scalars for one capture of a ``shape`` window at ``origin`` of the read-out.

    The same quantities the reference engine uses (:class:`~isp.sensor.model.SensorConfig`'s
    derived properties), so binning, conversion gain and ISO enter both alike.
    """
    seed = int(seed)
    if not 0 <= seed < 2**64:
        raise ConfigError(f"sensor.engine=fused: the frame seed must be in [0, 2**64), got {seed}")
    noise = sensor.noise
    bits, black, white = sensor.adc
    t = exposure.time_s
    dark_mean = sensor.dark_current_output_e_s * t
    tukey = sensor.read_noise_tukey_lambda
    if tukey is not None and abs(tukey) < 1e-9:
        tukey = 0.0  # the logistic limit, as the reference engine takes it
    dcg = sensor.mode_info.dcg_merge
    if dcg:
        digital_scale = sensor.binning if sensor.binning > 1 and sensor.binning_model == "digital" else 1
        sigma, sigma_lcg = sensor.dcg.hcg_read_noise_e * digital_scale, sensor.read_noise_e * digital_scale
        hcg_well = _F32(sensor.full_well_output_e / sensor.dcg.ratio)
        merge_below = _F32(sensor.dcg.merge_threshold) * hcg_well
    else:
        sigma, sigma_lcg = sensor.read_noise_output_e, 0.0
        hcg_well = merge_below = _F32(0.0)
    unit = 1.0 if tukey is None else _tukey_unit(float(tukey))
    return FusedParams(
        shape=(int(shape[0]), int(shape[1])),
        origin=(int(origin[0]), int(origin[1])),
        readout_width=int(sensor.readout[1]),
        seed=seed,
        shot=noise.shot,
        dark_e=_F32(dark_mean) if noise.dark_current and dark_mean > 0 else None,
        hot_e_per_count=_F32(sensor.hot_pixel_dark_e_s * t) if t > 0 else None,
        full_well_e=_F32(sensor.full_well_output_e),
        row_sigma_e=_F32(sensor.row_noise_e) if noise.row and sensor.row_noise_e > 0 else None,
        read=None if not noise.read or max(sigma, sigma_lcg) <= 0 else ("gaussian" if tukey is None else "tukey"),
        tukey_lambda=_F32(0.0 if tukey is None else tukey),
        read_scale=_F32(sigma * unit),
        read_lcg_scale=_F32(sigma_lcg * unit),
        dcg=dcg,
        hcg_well_e=hcg_well,
        merge_below_e=merge_below,
        adc_gain_dn_e=_F32(sensor.adc_gain_dn_e),
        black_dn=_F32(black),
        code_max_dn=_F32(2**bits - 1),
        digital_gain=_F32(sensor.gains[1]),
        white_dn=_F32(white),
    )


def _tukey_unit(lam: float) -> float:
    """Scale that turns the quantile ``u**l - (1-u)**l`` (``log(u/(1-u))`` at ``l = 0``) into a
    variate of unit standard deviation: ``1 / (l · std)``."""
    if lam == 0.0:
        return 1.0 / (math.pi / math.sqrt(3.0))
    var = 2.0 / lam**2 * (1.0 / (1.0 + 2.0 * lam) - math.gamma(lam + 1.0) ** 2 / math.gamma(2.0 * lam + 2.0))
    return 1.0 / (lam * math.sqrt(var))


# -- random numbers ------------------------------------------------------------------------------


def _normal(b0: Any, b1: Any, xp: Any) -> Any:
    """Box-Muller, first of the pair (as the kernel's ``standard_normal``)."""
    radius = xp.sqrt(_F32(-2.0) * xp.log(uniform01(b0, xp)))
    return radius * xp.cos(_F32(2.0 * np.pi) * uniform01(b1, xp))


def _draw(lo: Any, hi: Any, draw: int, stream: str, key: tuple[int, int], xp: Any) -> tuple[Any, Any, Any, Any]:
    return philox4x32((lo, hi, np.uint32(draw), np.uint32(STREAMS[stream])), key, xp)


def poisson(lam: Any, lo: Any, hi: Any, stream: str, key: tuple[int, int], xp: Any) -> Any:
    """Poisson counts (float32) of means ``lam`` for the pixels whose counters are ``lo``, ``hi``.

    All three are 1-D arrays of one length. Inversion below :data:`POISSON_INVERSION_BELOW`,
    PTRS from it (see the module docstring); the rejection loop runs over the pixels not yet
    accepted.
    """
    lam = xp.asarray(lam, dtype=xp.float32)
    out = xp.empty_like(lam)
    small = lam < _F32(POISSON_INVERSION_BELOW)
    index = xp.nonzero(small)[0]
    if index.size:
        u = uniform01(_draw(lo[index], hi[index], 0, stream, key, xp)[0], xp)
        out[index] = _poisson_inversion(lam[index], u, xp)
    index = xp.nonzero(~small)[0]
    if index.size:
        out[index] = _poisson_ptrs(lam[index], lo[index], hi[index], stream, key, xp)
    return out


def _poisson_inversion(lam: Any, u: Any, xp: Any) -> Any:
    p = xp.exp(-lam)
    cdf = p.copy()
    k = xp.zeros_like(lam)
    active = xp.nonzero(u > cdf)[0]
    while active.size:
        ka = k[active] + _F32(1.0)
        k[active] = ka
        pa = p[active] * lam[active] / ka
        before = cdf[active]
        after = before + pa
        p[active] = pa
        cdf[active] = after
        # Past the sum's float32 resolution the remaining tail cannot be resolved: stop there.
        active = active[(after != before) & (u[active] > after)]
    return k


def _poisson_ptrs(lam: Any, lo: Any, hi: Any, stream: str, key: tuple[int, int], xp: Any) -> Any:
    slam = xp.sqrt(lam)
    loglam = xp.log(lam)
    b = _F32(0.931) + _F32(2.53) * slam
    a = _F32(-0.059) + _F32(0.02483) * b
    invalpha = _F32(1.1239) + _F32(1.1328) / (b - _F32(3.4))
    vr = _F32(0.9277) - _F32(3.6224) / (b - _F32(2.0))
    # Per-pixel state of the pixels still proposing, compressed as they accept.
    state = {"at": xp.arange(lam.size), "lam": lam, "loglam": loglam, "a": a, "b": b, "vr": vr, "log_invalpha": xp.log(invalpha), "lo": lo, "hi": hi}
    out = xp.empty_like(lam)
    k = lam
    for draw in range(PTRS_MAX_DRAWS):
        if not state["at"].size:
            break
        words = _draw(state["lo"], state["hi"], draw, stream, key, xp)
        for wu, wv in ((0, 1), (2, 3)):
            s = state
            U = uniform01(words[wu], xp) - _F32(0.5)
            V = uniform01(words[wv], xp)
            us = _F32(0.5) - xp.abs(U)
            k = xp.floor((_F32(2.0) * s["a"] / us + s["b"]) * U + s["lam"] + _F32(0.43))
            accept = (us >= _F32(0.07)) & (V <= s["vr"])
            test = xp.nonzero(~accept & ~((k < 0) | ((us < _F32(0.013)) & (V > us))))[0]
            if test.size:
                uts = us[test]
                lhs = xp.log(V[test]) + s["log_invalpha"][test] - xp.log(s["a"][test] / (uts * uts) + s["b"][test])
                accept[test] = lhs <= _log_poisson_pmf(k[test], s["lam"][test], s["loglam"][test], xp)
            out[s["at"][accept]] = k[accept]
            keep = xp.nonzero(~accept)[0]
            state = {name: value[keep] for name, value in s.items()}
            words = tuple(word[keep] for word in words)
            k = k[keep]
            if not keep.size:
                break
    out[state["at"]] = k  # only a NaN mean gets here: the last proposal, as the kernel returns
    return out


_LOG_FACTORIAL_ARGUMENT = np.array([math.factorial(k) for k in range(10)], dtype=np.float32)  # exact in float32


def _log_poisson_pmf(k: Any, lam: Any, loglam: Any, xp: Any) -> Any:
    """``log P(k; lam)`` as the kernel computes it (see the module docstring)."""
    out = xp.empty_like(lam)
    small = k < _F32(10.0)
    index = xp.nonzero(small)[0]
    if index.size:
        ks = k[index]
        factorial = xp.asarray(_LOG_FACTORIAL_ARGUMENT)[ks.astype(xp.int64)]
        out[index] = (ks * loglam[index] - lam[index]) - xp.log(factorial)
    index = xp.nonzero(~small)[0]
    if index.size:
        kb, lb = k[index], lam[index]
        d = kb - lb
        bd0 = kb * xp.log1p(d / lb) - d
        s = _F32(1.0) / kb
        stirling = (_F32(1.0 / 12.0) - (s * s) * _F32(1.0 / 360.0)) * s
        out[index] = (-bd0 - _F32(0.5) * xp.log(_F32(2.0 * np.pi) * kb)) - stirling
    return out


def _read_noise(lo: Any, hi: Any, stream: str, params: FusedParams, scale: np.float32, xp: Any) -> Any:
    words = _draw(lo, hi, 0, stream, params.key, xp)
    if params.read == "tukey":
        u = uniform01(words[0], xp)
        v = _F32(1.0) - u
        lam = params.tukey_lambda
        if lam == 0:
            q = xp.log(u) - xp.log(v)
        else:
            q = xp.exp(lam * xp.log(u)) - xp.exp(lam * xp.log(v))
    else:
        q = _normal(words[0], words[1], xp)
    return q * scale


# -- the array-module reference ------------------------------------------------------------------


def noisy_electrons(mean_e: Any, patterns: FixedPatterns, params: FusedParams, xp: Any, components: dict[str, Any] | None = None) -> Any:
    """The fused engine's electrons of every output pixel, before the ADC (array-module reference).

    Parameters
    ----------
    mean_e
        ``(H, W)`` float32 mean photo-electrons (:func:`isp.sensor.capture.mean_electrons`).
    patterns
        The sensor instance's fixed patterns over this window (:func:`~isp.sensor.capture.fixed_patterns`).
    params
        :func:`fused_params` of this capture.
    components
        If a dict is given, each temporal noise source's realisation (electrons) is stored in it
        under the reference engine's names (``shot``, ``dark``, ``hot``, ``row``, ``read``,
        ``read_lcg``).

    Returns
    -------
    ``(H, W)`` float32 electrons (with offsets and read noise, in the scale of the ADC's input);
    :func:`isp.sensor.capture.digitise` turns them into DN exactly as the kernel does.
    """
    keep = components if components is not None else {}
    shape = tuple(mean_e.shape)
    key = params.key
    lo, hi = (c.reshape(-1) for c in pixel_counters(shape, params.origin, params.readout_width, xp))
    e = xp.asarray(mean_e, dtype=xp.float32)
    if patterns.gain is not None:
        e = e * patterns.gain
    if params.shot:
        photo = poisson(e.reshape(-1), lo, hi, "shot", key, xp).reshape(shape)
        if components is not None:
            components["shot"] = photo - e
        e = photo
    if params.dark_e is not None:
        dark = poisson(xp.full(lo.size, params.dark_e, dtype=xp.float32), lo, hi, "dark", key, xp).reshape(shape)
        keep["dark"] = dark
        e = e + dark
    if patterns.hot_index is not None and params.hot_e_per_count is not None:
        index = patterns.hot_index
        hot = poisson(patterns.hot_count * params.hot_e_per_count, lo[index], hi[index], "hot", key, xp)
        keep["hot"] = hot
        e = e.reshape(-1).copy()
        e[index] = e[index] + hot
        e = e.reshape(shape)
    e = xp.minimum(e, params.full_well_e)
    offset = patterns.offset_e
    if params.row_sigma_e is not None:
        rows = xp.arange(params.origin[0], params.origin[0] + shape[0], dtype=xp.uint32)
        words = _draw(rows, np.uint32(0), 0, "row", key, xp)
        row = (_normal(words[0], words[1], xp) * params.row_sigma_e)[:, None]
        keep["row"] = row
        offset = row if offset is None else offset + row
    flat_lo, flat_hi = lo.reshape(shape), hi.reshape(shape)
    if params.dcg:
        high, low = xp.minimum(e, params.hcg_well_e), e
        if params.read is not None:
            read_high = _read_noise(flat_lo, flat_hi, "read", params, params.read_scale, xp)
            read_low = _read_noise(flat_lo, flat_hi, "read_lcg", params, params.read_lcg_scale, xp)
            keep["read"], keep["read_lcg"] = read_high, read_low
            high, low = high + read_high, low + read_low
        e = xp.where(high < params.merge_below_e, high, low)
    elif params.read is not None:
        read = _read_noise(flat_lo, flat_hi, "read", params, params.read_scale, xp)
        keep["read"] = read
        e = e + read
    return e if offset is None else e + offset


#: Rows the array-module reference draws at once: Philox's integer temporaries (about 150 bytes
#: per pixel) stay a few hundred MB instead of 7 GB for a 50 MP frame.
STRIP_ROWS = 512


def dn_reference(mean_e: Any, patterns: FixedPatterns, params: FusedParams, digitise: Callable[[Any], Any], xp: Any) -> Any:
    """The fused engine's DN by the array-module reference, in strips of :data:`STRIP_ROWS` rows.

    Every draw is counted by the pixel's index in the read-out (and the row noise by its row),
    so a strip draws exactly what the same rows draw in the whole frame: the result does not
    depend on the strip height. ``digitise`` turns a strip's electrons into DN
    (:func:`isp.sensor.capture.digitise` with the sensor bound).
    """
    h, w = mean_e.shape
    out = None
    for top in range(0, h, STRIP_ROWS):
        bottom = min(h, top + STRIP_ROWS)
        strip = dataclasses.replace(params, shape=(bottom - top, w), origin=(params.origin[0] + top, params.origin[1]))
        dn = digitise(noisy_electrons(mean_e[top:bottom], _patterns_of_rows(patterns, top, bottom, w), strip, xp))
        if out is None:
            out = xp.empty((h, w), dtype=dn.dtype)
        out[top:bottom] = dn
    return out


def _patterns_of_rows(patterns: FixedPatterns, top: int, bottom: int, width: int) -> FixedPatterns:
    """The fixed patterns of rows ``top:bottom`` of the window, hot pixels re-indexed to the strip."""
    hot_index = hot_count = None
    if patterns.hot_index is not None:
        inside = (patterns.hot_index >= top * width) & (patterns.hot_index < bottom * width)
        if bool(inside.any()):
            hot_index = patterns.hot_index[inside] - top * width
            hot_count = patterns.hot_count[inside]
    return dataclasses.replace(
        patterns,
        gain=None if patterns.gain is None else patterns.gain[top:bottom],
        offset_e=None if patterns.offset_e is None else patterns.offset_e[top:bottom],
        hot_index=hot_index,
        hot_count=hot_count,
    )


# -- the kernel ----------------------------------------------------------------------------------


def _flags(patterns: FixedPatterns, params: FusedParams) -> int:
    flags = 0
    for on, bit in (
        (params.shot, _SHOT),
        (params.dark_e is not None, _DARK),
        (params.read is not None, _READ),
        (params.read == "tukey", _TUKEY),
        (params.row_sigma_e is not None, _ROW),
        (params.dcg, _DCG),
        (patterns.gain is not None, _GAIN),
        (patterns.offset_e is not None, _OFFSET),
        (params.digital_gain != 1, _DIGITAL),
    ):
        if on:
            flags |= bit
    return flags


def kernel_launches(mean_e: Any, patterns: FixedPatterns, params: FusedParams, out: Any, xp: Any) -> list[tuple[str, tuple[int, ...], tuple[int, ...], tuple[Any, ...]]]:
    """The launches of ``kernels/sensor.cu`` that write the DN of ``mean_e`` into ``out``, in order.

    Each is ``(function, grid, block, arguments)``: ``sensor_capture`` over the frame, then
    ``sensor_capture_hot`` over the hot pixels (if any). ``mean_e`` and the maps must be
    C-contiguous float32 and ``out`` uint16 of the same shape; the CPU emulation test launches
    exactly these.
    """
    h, w = params.shape
    if tuple(mean_e.shape) != (h, w) or tuple(out.shape) != (h, w):
        raise ValueError(f"fused sensor kernel: mean_e {tuple(mean_e.shape)} and out {tuple(out.shape)} must be {(h, w)}")
    placeholder = xp.zeros(1, dtype=xp.float32)  # never read: its flag is off
    gain = placeholder if patterns.gain is None else xp.ascontiguousarray(patterns.gain, dtype=xp.float32)
    offset = placeholder if patterns.offset_e is None else xp.ascontiguousarray(patterns.offset_e, dtype=xp.float32)
    key0, key1 = params.key
    scalars = (
        np.int32(h), np.int32(w), np.int32(params.origin[0]), np.int32(params.origin[1]), np.int32(params.readout_width),
        np.uint32(key0), np.uint32(key1), np.int32(_flags(patterns, params)),
        _F32(params.dark_e or 0.0), params.full_well_e, _F32(params.row_sigma_e or 0.0), params.read_scale,
        params.read_lcg_scale, params.tukey_lambda, params.hcg_well_e, params.merge_below_e, params.adc_gain_dn_e,
        params.black_dn, params.code_max_dn, params.digital_gain, params.white_dn,
    )  # fmt: skip
    grid = ((w + _BLOCK[0] - 1) // _BLOCK[0], (h + _BLOCK[1] - 1) // _BLOCK[1])
    launches = [("sensor_capture", grid, _BLOCK, (mean_e, gain, offset, out, *scalars))]
    if patterns.hot_index is not None and params.hot_e_per_count is not None:
        count = int(patterns.hot_index.size)
        launches.append(
            (
                "sensor_capture_hot",
                ((count + _HOT_BLOCK - 1) // _HOT_BLOCK,),
                (_HOT_BLOCK,),
                (mean_e, gain, offset, out, patterns.hot_index, patterns.hot_count, np.int32(count), params.hot_e_per_count, *scalars),
            )
        )
    return launches


def dn_cuda(mean_e: Any, patterns: FixedPatterns, params: FusedParams, backend: Backend) -> Any:
    """The DN mosaic ``(H, W)`` uint16 on the GPU: ``kernels/sensor.cu``, one thread per pixel."""
    xp = backend.xp
    mean_e = xp.ascontiguousarray(mean_e, dtype=xp.float32)
    out = xp.empty(params.shape, dtype=xp.uint16)
    for function, grid, block, args in kernel_launches(mean_e, patterns, params, out, xp):
        backend.kernel("sensor", function)(grid, block, args)
    return out
