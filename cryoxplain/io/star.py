"""RELION STAR files: a small, dependency-free reader and writer.

A STAR file is a sequence of data blocks (``data_<name>``); each block is either a list of
``_label value`` pairs or a ``loop_`` table.  :func:`read_star` returns an ordered ``dict``
``{block name: StarTable | dict}``: tables map each label (without the leading ``_``) to a numpy
column (int64, float64 or str, inferred per column), pair blocks map labels to scalars.  Both
RELION 3.0 files (one particle table, ``data_`` or ``data_images``) and 3.1+ files
(``data_optics`` + ``data_particles``) read the same way.  :func:`write_star` writes floats with
the shortest representation that round-trips exactly.
"""
from __future__ import annotations

import os
import re
import shlex
from pathlib import Path

import numpy as np

from ..errors import InputFileError, ParameterError
from .atomic import atomic_path


class StarTable(dict):
    """A ``loop_`` table: label → column (all columns the same length)."""

    @property
    def n_rows(self) -> int:
        return len(next(iter(self.values()))) if self else 0

    def row(self, i: int) -> dict:
        return {k: v[i] for k, v in self.items()}


def _tokens(line: str) -> list[str]:
    if '"' in line or "'" in line:
        try:
            return shlex.split(line, posix=True)
        except ValueError:
            return line.split()
    return line.split()


def _column(values: list[str]) -> np.ndarray:
    for caster, dtype in ((int, np.int64), (float, np.float64)):
        try:
            return np.array([caster(v) for v in values], dtype=dtype)
        except ValueError:
            continue
    return np.array(values, dtype=str)


def _scalar(v: str):
    for caster in (int, float):
        try:
            return caster(v)
        except ValueError:
            continue
    return v


def read_star(path: str | os.PathLike) -> dict:
    """Parse a STAR file into ``{block: StarTable | dict}`` (see the module docstring)."""
    path = Path(path)
    if not path.is_file():
        raise InputFileError(f"{path}: no such file")
    try:
        text = path.read_text()
    except UnicodeDecodeError:
        raise InputFileError(f"{path}: not a STAR file (not text)") from None
    blocks: dict = {}
    name = None
    labels: list[str] | None = None
    rows: list[list[str]] = []
    pairs: dict | None = None

    def finish_loop():
        nonlocal labels, rows
        if labels is not None:
            for i, r in enumerate(rows):
                if len(r) != len(labels):
                    raise InputFileError(
                        f"{path}: block data_{name}: row {i + 1} has {len(r)} values, expected {len(labels)}")
            cols = list(zip(*rows)) if rows else [()] * len(labels)
            blocks[name] = StarTable((lab, _column(list(c))) for lab, c in zip(labels, cols))
        labels, rows = None, []

    for lineno, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            if not line and labels is not None and rows:
                finish_loop()
            continue
        if line.startswith("data_"):
            finish_loop()
            name = line[5:]
            blocks[name] = pairs = {}
            continue
        if name is None:
            raise InputFileError(f"{path}: line {lineno}: not a STAR file (content before any data_ block)")
        if line.startswith("loop_"):
            finish_loop()
            labels, rows = [], []
            continue
        if line.startswith("_"):
            tok = line.split(None, 1)
            label = tok[0][1:]
            if labels is not None and not rows:
                labels.append(label)  # "#N" column numbers after labels are comments
                continue
            finish_loop()
            value = _tokens(tok[1])[0] if len(tok) > 1 and _tokens(tok[1]) else ""
            pairs = blocks[name] if isinstance(blocks.get(name), dict) and not isinstance(blocks[name], StarTable) else {}
            pairs[label] = _scalar(value)
            blocks[name] = pairs
            continue
        if labels is None:
            raise InputFileError(f"{path}: line {lineno}: value outside a loop_ or label: {line[:60]!r}")
        rows.append(_tokens(line))
    finish_loop()
    if not blocks:
        raise InputFileError(f"{path}: not a STAR file (no data_ block)")
    return blocks


def _fmt(v) -> str:
    if isinstance(v, (bool, np.bool_)):
        return str(int(v))
    if isinstance(v, (int, np.integer)):
        return str(int(v))
    if isinstance(v, (float, np.floating)):
        return repr(float(v))
    s = str(v)
    if s == "" or any(c.isspace() for c in s):
        return '"' + s.replace('"', "'") + '"'
    return s


def format_star(blocks: dict) -> str:
    out: list[str] = ["# written by cryoxplain", ""]
    for name, block in blocks.items():
        out.append(f"data_{name}")
        out.append("")
        if isinstance(block, StarTable) or (isinstance(block, dict) and block and
                                             all(isinstance(v, (np.ndarray, list, tuple)) for v in block.values())):
            cols = {k: np.asarray(v) for k, v in block.items()}
            lengths = {len(c) for c in cols.values()}
            if len(lengths) > 1:
                raise ParameterError(f"STAR block data_{name}: columns have different lengths {sorted(lengths)}")
            out.append("loop_")
            for i, k in enumerate(cols, 1):
                out.append(f"_{k} #{i}")
            for r in zip(*[c.tolist() for c in cols.values()]):
                out.append(" ".join(_fmt(v) for v in r))
        else:
            width = max((len(k) for k in block), default=0) + 2
            for k, v in block.items():
                out.append(f"_{k:<{width}}{_fmt(v)}")
        out.append("")
    return "\n".join(out) + "\n"


def write_star(path: str | os.PathLike, blocks: dict, *, force: bool = False, inputs: tuple = ()) -> Path:
    """Write ``blocks`` (``{name: StarTable | dict of columns | dict of scalars}``) atomically."""
    text = format_star(blocks)
    with atomic_path(path, force=force, inputs=inputs) as tmp:
        tmp.write_text(text)
    return Path(path)


_TOKEN = re.compile(r'"[^"]*"|\'[^\']*\'|\S+')


def rewrite_star_text(text: str, updates: dict, where: str = "STAR file") -> str:
    """``text`` with some loop columns replaced and every other byte kept as it was.

    ``updates`` maps ``(block name, label)`` to the new values of that column, one per row, in
    row order (already formatted strings or values formatted like :func:`write_star` does).  Only
    the tokens of those columns change: comments, version lines, spacing and every other value are
    copied, so the result is the input file except for the given columns.  The parsing follows
    :func:`read_star`.
    """
    wanted = {}
    for (block, label), values in updates.items():
        wanted.setdefault(block, {})[label] = [v if isinstance(v, str) else _fmt(v) for v in values]
    out = []
    name = None
    labels: list[str] | None = None
    row = 0
    cols: dict = {}
    seen: set = set()
    for raw in text.splitlines(keepends=True):
        line = raw.strip()
        if not line or line.startswith("#"):
            if not line and labels is not None and row:
                labels = None
            out.append(raw)
            continue
        if line.startswith("data_"):
            name, labels = line[5:], None
        elif line.startswith("loop_"):
            labels, row = [], 0
        elif line.startswith("_"):
            if labels is not None and not row:
                labels.append(line.split(None, 1)[0][1:])
            else:
                labels = None
        elif labels is not None:
            if row == 0:
                cols = {labels.index(lab): vals for lab, vals in wanted.get(name, {}).items() if lab in labels}
                seen.update((name, labels[i]) for i in cols)
            if cols:
                spans = [m.span() for m in _TOKEN.finditer(raw)]
                pieces, last = [], 0
                for i, (a, b) in enumerate(spans):
                    if i in cols:
                        if row >= len(cols[i]):
                            raise ParameterError(f"{where}: data_{name}: more rows than new values for _{labels[i]}")
                        pieces += [raw[last:a], cols[i][row]]
                        last = b
                raw = "".join(pieces) + raw[last:]
            row += 1
        out.append(raw)
    missing = [f"data_{b}/_{lab}" for (b, lab) in updates if (b, lab) not in seen]
    if missing:
        raise ParameterError(f"{where}: no column {', '.join(missing)} to rewrite")
    return "".join(out)
