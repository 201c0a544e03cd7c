"""Read calibration records (``capture.csv`` + ``capture.json``) with errors that name file and row.

The format is written by :mod:`simulator.calibration.capture` (columns in ``capture.COLUMNS``) and
documented in ``docs/calibration.md``. Vidur tables are converted to the same records by
:mod:`simulator.calibration.vidur`.
"""

from __future__ import annotations

import csv
import json
import math
from dataclasses import dataclass, field
from pathlib import Path

from simulator.calibration.capture import COLUMNS
from simulator.core.errors import InputFileError
from simulator.core.files import read_text

INT_COLUMNS = ("threads", "m", "n", "k", "batch", "elements", "bytes", "repeats", "number")
FLOAT_COLUMNS = ("median_s", "p10_s", "p90_s")
TEXT_COLUMNS = ("kernel_class", "op", "dtype", "device", "label")
REQUIRED = ("kernel_class", "op", "dtype", "device", "m", "n", "k", "batch", "elements", "median_s",
            "p10_s", "p90_s", "repeats")
DEFAULTS = {"threads": 0, "bytes": 0, "number": 1, "label": ""}


@dataclass(frozen=True)
class Measurement:
    kernel_class: str
    op: str
    dtype: str
    device: str
    m: int = 0
    n: int = 0
    k: int = 0
    batch: int = 1
    elements: int = 0
    median_s: float = 0.0
    p10_s: float = 0.0
    p90_s: float = 0.0
    repeats: int = 1
    threads: int = 0
    bytes: int = 0
    number: int = 1
    label: str = ""

    def shape(self) -> str:
        if self.kernel_class in ("stream", "copy", "collective"):
            return f"{self.op} {self.elements} x {self.dtype}"
        if self.kernel_class == "attention":
            return f"{self.op} h={self.batch} q={self.m} kv={self.n} d={self.k} {self.dtype}"
        return f"{self.op} {self.m}x{self.n}x{self.k} {self.dtype}" + (f" x{self.batch}" if self.batch > 1 else "")


@dataclass
class Capture:
    path: str
    rows: list[Measurement]
    provenance: dict = field(default_factory=dict)


def _number(text: str, col: str, cast, where: str, row: int):
    try:
        value = cast(text) if cast is float else int(float(text))
    except (TypeError, ValueError):
        raise InputFileError(f"row {row}: column {col!r} has {text!r}, which is not a number", where=where) from None
    if cast is int and float(text) != value:
        raise InputFileError(f"row {row}: column {col!r} has {text!r}, expected an integer", where=where)
    return value


def read_capture(path: str | Path) -> Capture:
    """Read ``capture.csv`` (or a directory holding one) and its sidecar ``capture.json`` if present."""
    path = Path(path)
    if path.is_dir():
        path = path / "capture.csv"
    text = read_text(path, "capture file")
    lines = text.splitlines()
    if not lines or not lines[0].strip():
        raise InputFileError("capture file is empty (expected a header row)", where=f"{path}:1")
    reader = csv.reader(lines)
    header = [h.strip() for h in next(reader)]
    missing = [c for c in REQUIRED if c not in header]
    if missing:
        raise InputFileError(f"header is missing column(s) {', '.join(missing)} (expected {', '.join(COLUMNS)})",
                             where=f"{path}:1")
    index = {c: header.index(c) for c in COLUMNS if c in header}
    rows: list[Measurement] = []
    for row_no, fields in enumerate(reader, start=1):
        line = row_no + 1
        where = f"{path}:{line}"
        if not fields or all(not f.strip() for f in fields):
            continue
        if len(fields) != len(header):
            raise InputFileError(f"row {row_no} has {len(fields)} fields, expected {len(header)} "
                                 "(truncated or malformed row)", where=where)
        values: dict = dict(DEFAULTS)
        for col, i in index.items():
            cell = fields[i].strip()
            if col in TEXT_COLUMNS:
                values[col] = cell
            elif col in FLOAT_COLUMNS:
                values[col] = _number(cell, col, float, where, row_no)
            else:
                values[col] = _number(cell, col, int, where, row_no) if cell or col in REQUIRED else DEFAULTS[col]
        for col in FLOAT_COLUMNS:
            if not math.isfinite(values[col]) or values[col] <= 0:
                raise InputFileError(f"row {row_no}: column {col!r} must be a positive time in seconds, "
                                     f"got {values[col]!r}", where=where)
        for col in ("kernel_class", "op", "dtype"):
            if not values[col]:
                raise InputFileError(f"row {row_no}: column {col!r} is empty", where=where)
        rows.append(Measurement(**values))
    if not rows:
        raise InputFileError("capture file has a header but no measurements", where=str(path))
    prov: dict = {}
    side = path.with_suffix(".json")
    if side.exists():
        try:
            prov = json.loads(side.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as exc:
            raise InputFileError(f"provenance file is not valid JSON: {exc}", where=str(side)) from None
    return Capture(str(path), rows, prov)
