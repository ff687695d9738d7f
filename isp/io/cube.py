"""Reading and writing 3D LUTs in the Adobe / Resolve ``.cube`` text format.

A ``.cube`` file holds a header of keywords, then ``N³`` lines of three numbers: the output
RGB at each lattice point, red varying fastest, then green, then blue. Keywords read:

``TITLE "text"``
    Optional name.
``LUT_3D_SIZE N``
    Lattice points per axis, 2 to 256 (required).
``DOMAIN_MIN r g b`` / ``DOMAIN_MAX r g b``
    Input values at the first and last lattice points per channel (default 0 and 1).
``LUT_3D_INPUT_RANGE min max``
    Resolve's spelling of the same domain, one range for all channels.

Lines starting with ``#`` are comments and may appear anywhere; blank lines are skipped.
1D LUTs (``LUT_1D_SIZE``) and unknown keywords are refused rather than silently ignored, so a
file never gives a result other than the one its author saw.

In memory a LUT is a :class:`Lut3D`: a ``(N, N, N, 3)`` float32 table indexed
``[r, g, b]`` (colour-science's ``LUT3D`` layout) and its domain.

References
----------
Adobe Systems, "Cube LUT Specification", version 1.0, 2013.
"""

from __future__ import annotations

import math
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from isp.errors import InputError
from isp.io.images import atomic_path

__all__ = ["Lut3D", "read_cube", "write_cube", "MAX_CUBE_SIZE"]

#: Largest LUT_3D_SIZE the specification allows.
MAX_CUBE_SIZE = 256

_KEYWORD = re.compile(r"[A-Z][A-Z0-9_]*")


@dataclass(frozen=True, eq=False)
class Lut3D:
    """A 3D lookup table over a box of input RGB values.

    Parameters
    ----------
    table
        ``(N, N, N, 3)`` output RGB at the lattice points, indexed ``[r, g, b]``; stored as
        float32 on the host.
    domain_min, domain_max
        ``(3,)`` input values of the first and last lattice point per channel.
    title
        The file's TITLE.
    comments
        Comment lines, without the ``#``.
    """

    table: np.ndarray
    domain_min: np.ndarray = field(default_factory=lambda: np.zeros(3))
    domain_max: np.ndarray = field(default_factory=lambda: np.ones(3))
    title: str = ""
    comments: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        table = np.asarray(self.table, dtype=np.float32)
        n = table.shape[0] if table.ndim else 0
        if table.shape != (n, n, n, 3) or not 2 <= n <= MAX_CUBE_SIZE:
            raise ValueError(f"Lut3D.table must be (N, N, N, 3) with 2 <= N <= {MAX_CUBE_SIZE}, got shape {table.shape}")
        low = np.broadcast_to(np.asarray(self.domain_min, dtype=np.float64), (3,)).copy()
        high = np.broadcast_to(np.asarray(self.domain_max, dtype=np.float64), (3,)).copy()
        if not np.all(high > low):
            raise ValueError(f"Lut3D domain: DOMAIN_MAX {high.tolist()} must exceed DOMAIN_MIN {low.tolist()} in every channel")
        object.__setattr__(self, "table", table)
        object.__setattr__(self, "domain_min", low)
        object.__setattr__(self, "domain_max", high)
        object.__setattr__(self, "comments", tuple(self.comments))

    @property
    def size(self) -> int:
        """Lattice points per axis (LUT_3D_SIZE)."""
        return int(self.table.shape[0])


def read_cube(path: str | os.PathLike) -> Lut3D:
    """Read a 3D LUT from a ``.cube`` file.

    Raises
    ------
    InputError
        The file is missing or unreadable, or malformed: the message names the file and line.
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise InputError(f"{path}: no such file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"{path}: cannot read as a .cube LUT ({type(exc).__name__}: {exc})") from None

    def fail(number: int, message: str) -> InputError:
        return InputError(f"{path}, line {number}: {message}")

    lines = text.splitlines()
    header: dict[str, tuple[int, list[str]]] = {}
    title = ""
    comments: list[str] = []
    table_start = len(lines)
    for index, raw in enumerate(lines):
        line = raw.strip()
        if not line:
            continue
        if line.startswith("#"):
            comments.append(line[1:].strip())
            continue
        keyword, _, rest = line.replace("\t", " ").partition(" ")
        if not _KEYWORD.fullmatch(keyword):
            table_start = index
            break
        number = index + 1
        if keyword in header:
            raise fail(number, f"{keyword} given twice (first on line {header[keyword][0]})")
        if keyword == "TITLE":
            rest = rest.strip()
            if len(rest) < 2 or rest[0] != '"' or rest[-1] != '"':
                raise fail(number, f"TITLE needs a quoted string, got {rest!r}")
            title = rest[1:-1]
        elif keyword in ("LUT_1D_SIZE", "LUT_1D_INPUT_RANGE"):
            raise fail(number, f"{keyword}: 1D LUTs (and 1D shapers) are not supported; give a 3D LUT (LUT_3D_SIZE)")
        elif keyword not in ("LUT_3D_SIZE", "DOMAIN_MIN", "DOMAIN_MAX", "LUT_3D_INPUT_RANGE"):
            raise fail(number, f"unknown keyword {keyword!r}")
        header[keyword] = (number, rest.split())

    rows: list[str] = []
    row_lines: list[int] = []
    for index in range(table_start, len(lines)):
        line = lines[index].strip()
        if not line:
            continue
        if line.startswith("#"):
            comments.append(line[1:].strip())
            continue
        rows.append(line)
        row_lines.append(index + 1)

    if "LUT_3D_SIZE" not in header:
        raise InputError(f"{path}: no LUT_3D_SIZE line; a .cube 3D LUT must declare its size")
    number, tokens = header["LUT_3D_SIZE"]
    size = _numbers(tokens, 1, "LUT_3D_SIZE", fail, number)[0]
    if size != int(size) or not 2 <= size <= MAX_CUBE_SIZE:
        raise fail(number, f"LUT_3D_SIZE {tokens[0]} must be an integer from 2 to {MAX_CUBE_SIZE}")
    size = int(size)

    low, high = np.zeros(3), np.ones(3)
    if "LUT_3D_INPUT_RANGE" in header:
        if "DOMAIN_MIN" in header or "DOMAIN_MAX" in header:
            raise fail(header["LUT_3D_INPUT_RANGE"][0], "LUT_3D_INPUT_RANGE and DOMAIN_MIN/DOMAIN_MAX both given; use one")
        number, tokens = header["LUT_3D_INPUT_RANGE"]
        low[:], high[:] = _numbers(tokens, 2, "LUT_3D_INPUT_RANGE", fail, number)
    for keyword, target in (("DOMAIN_MIN", low), ("DOMAIN_MAX", high)):
        if keyword in header:
            number, tokens = header[keyword]
            target[:] = _numbers(tokens, 3, keyword, fail, number)
    if not np.all(high > low):
        where = max(header[k][0] for k in ("DOMAIN_MIN", "DOMAIN_MAX", "LUT_3D_INPUT_RANGE") if k in header)
        raise fail(where, f"the domain maximum {high.tolist()} must exceed the minimum {low.tolist()} in every channel")

    values = _table_values(rows, row_lines, fail)
    expected = size**3
    if len(values) != expected:
        if len(values) > expected:
            raise fail(row_lines[expected], f"more table lines than LUT_3D_SIZE {size} allows ({expected} = {size}³)")
        raise InputError(f"{path}: LUT_3D_SIZE {size} needs {expected} table lines, found {len(values)}")
    # red varies fastest in the file: the rows run over [b][g][r]
    table = values.reshape(size, size, size, 3).transpose(2, 1, 0, 3)
    return Lut3D(table, low, high, title=title, comments=tuple(comments))


def write_cube(path: str | os.PathLike, lut: Lut3D) -> Path:
    """Write ``lut`` as a ``.cube`` file, atomically.

    The text goes to a temporary file beside ``path`` that then replaces it in one step, so a
    reader never sees a half-written LUT and a LUT read from ``path`` stays intact until the
    new one is complete. Numbers are written so that they read back to the same value (float32
    table, float64 domain), without exponents, which some readers do not accept.
    """
    if '"' in lut.title or "\n" in lut.title:
        raise ValueError(f"write_cube: the title {lut.title!r} may not contain quotes or line breaks")
    lines = [f"# {comment}".rstrip() for comment in lut.comments]
    if lut.title:
        lines.append(f'TITLE "{lut.title}"')
    lines.append(f"LUT_3D_SIZE {lut.size}")
    lines.append("DOMAIN_MIN " + " ".join(_format(v) for v in lut.domain_min))
    lines.append("DOMAIN_MAX " + " ".join(_format(v) for v in lut.domain_max))
    numbers = [_format_float32(v) for v in lut.table.transpose(2, 1, 0, 3).ravel().tolist()]
    lines.extend(" ".join(numbers[i : i + 3]) for i in range(0, len(numbers), 3))
    with atomic_path(path) as tmp:
        tmp.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return Path(path)


def _format(value: np.floating) -> str:
    return np.format_float_positional(value, unique=True, trim="0")


def _format_float32(value: float) -> str:
    # 9 significant digits read back to the same float32; "g" formatting is 5x faster than the
    # shortest-repr formatter, which is kept for the few tiny values "g" writes with an exponent
    text = f"{value:.9g}"
    return text if "e" not in text else _format(np.float32(value))


def _table_values(rows: list[str], row_lines: list[int], fail) -> np.ndarray:
    """The table lines as ``(n, 3)`` float64: converted in one go, and only when that fails,
    line by line, naming the first bad one."""
    tokens = " ".join(rows).split()
    if len(tokens) == 3 * len(rows):
        try:
            values = np.array(tokens, dtype=np.float64).reshape(-1, 3)
        except ValueError:
            values = None
        if values is not None and np.all(np.isfinite(values)):
            return values
    checked = []
    for line, number in zip(rows, row_lines, strict=True):
        parts = line.split()
        if _KEYWORD.fullmatch(parts[0]):
            raise fail(number, f"keyword {parts[0]} after the table data; keywords belong in the header")
        if len(parts) != 3:
            raise fail(number, f"expected three numbers (r g b), got {len(parts)}: {line!r}")
        if not all(_is_finite_number(t) for t in parts):
            raise fail(number, f"not three finite numbers: {line!r}")
        checked.append([float(t) for t in parts])  # forms Python accepts and NumPy's parser does not
    return np.array(checked, dtype=np.float64).reshape(-1, 3)


def _numbers(tokens: list[str], count: int, keyword: str, fail, number: int) -> list[float]:
    if len(tokens) != count or not all(_is_finite_number(t) for t in tokens):
        raise fail(number, f"{keyword} needs {count} number{'s' if count > 1 else ''}, got {' '.join(tokens)!r}")
    return [float(t) for t in tokens]


def _is_finite_number(token: str) -> bool:
    try:
        return math.isfinite(float(token))
    except ValueError:
        return False
