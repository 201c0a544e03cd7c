"""Replay a request trace file (CSV): arrival times and prompt/output token counts.

Formats (``format: auto`` picks one from the header):

- ``splitwise``: ``arrived_at,num_prefill_tokens,num_decode_tokens`` with arrivals in seconds
  (the Splitwise/vidur processed Azure traces, e.g. ``shared/traces/splitwise_conv.csv``).
- ``azure``: ``TIMESTAMP,ContextTokens,GeneratedTokens`` with datetime stamps such as
  ``2023-11-16 18:15:46.6805900`` (the Azure LLM inference traces), read as seconds since the
  first row.

Other columns are ignored. Rows ``start_row .. start_row + max_requests`` are used and shifted so
the first one arrives at 0; ``time_scale`` multiplies inter-arrival times, ``target_rate``
rescales them so the mean rate ``(n - 1) / span`` over the used rows is the one asked for.
A malformed file is an :class:`InputFileError` naming the file, line, row and column.
"""

from __future__ import annotations

import csv
import warnings
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Literal

import numpy as np
from pydantic import Field, model_validator

from simulator.config.quantities import PositivePerS, StrictConfig
from simulator.core.errors import InputFileError
from simulator.core.registry import register_workload
from simulator.core.rng import RngStreams
from workloads.sources.base import RequestTable

FORMATS: dict[str, tuple[str, str, str]] = {
    # format: (arrival column, prompt column, output column)
    "splitwise": ("arrived_at", "num_prefill_tokens", "num_decode_tokens"),
    "azure": ("TIMESTAMP", "ContextTokens", "GeneratedTokens"),
}


class TraceConfig(StrictConfig):
    path: str = Field(description="CSV file; relative paths are looked up next to the scenario file, then in "
                                  "the working directory")
    format: Literal["auto", "splitwise", "azure"] = "auto"
    start_row: int = Field(default=0, ge=0, description="first data row used (0-based)")
    max_requests: int | None = Field(default=None, ge=1, description="use at most this many rows")
    time_scale: float = Field(default=1.0, gt=0, description="multiplies inter-arrival times")
    target_rate: PositivePerS | None = Field(default=None, description="rescale arrivals to this mean rate")
    max_prompt_tokens: int | None = Field(default=None, ge=1, description="clip prompts to this length")
    max_output_tokens: int | None = Field(default=None, ge=1, description="clip outputs to this length")

    @model_validator(mode="after")
    def _exclusive(self) -> TraceConfig:
        if self.target_rate is not None and self.time_scale != 1.0:
            raise ValueError("give either target_rate or time_scale, not both")
        return self


@dataclass(frozen=True)
class TraceData:
    """A whole trace file, validated: arrivals in seconds since its first row, lengths >= 1."""

    path: Path
    format: str
    arrival_s: np.ndarray  # float64, non-decreasing, starts at 0
    prompt_tokens: np.ndarray  # int64 >= 1
    output_tokens: np.ndarray  # int64 >= 1

    def __len__(self) -> int:
        return int(self.arrival_s.shape[0])


# --------------------------------------------------------------------------------------------
# locating and reading


def resolve_trace_path(path: str, base_dir: Path) -> Path:
    """``path`` as given if absolute, else under ``base_dir`` if there, else under the CWD."""
    p = Path(path).expanduser()
    if p.is_absolute():
        if not p.exists():
            raise InputFileError("trace file not found", where=str(path))
        return p
    candidates = [Path(base_dir) / p, Path.cwd() / p]
    for cand in candidates:
        if cand.exists():
            return cand
    looked = ", ".join(dict.fromkeys(str(c.resolve()) for c in candidates))
    raise InputFileError(f"trace file not found (looked in {looked})", where=str(path))


def load_trace_file(path: Path, fmt: str = "auto") -> TraceData:
    """Read and validate a whole trace file (cached while the file is unchanged)."""
    path = Path(path)
    try:
        st = path.stat()
    except FileNotFoundError:
        raise InputFileError("trace file not found", where=str(path)) from None
    except OSError as exc:
        raise InputFileError(f"cannot read trace file: {exc.strerror or exc}", where=str(path)) from None
    if path.is_dir():
        raise InputFileError("expected a trace file, found a directory", where=str(path))
    return _load_cached(str(path), fmt, st.st_mtime_ns, st.st_size)


@lru_cache(maxsize=8)
def _load_cached(path_str: str, fmt: str, _mtime_ns: int, _size: int) -> TraceData:
    path = Path(path_str)
    header, header_line = _read_header(path)
    fmt = _detect_format(path, header, header_line, fmt)
    names = FORMATS[fmt]
    missing = [c for c in names if c not in header]
    if missing:
        raise InputFileError(f"missing column {missing[0]!r} ({fmt} format needs {', '.join(names)}); "
                             f"columns found: {', '.join(header) or '(none)'}", where=f"{path}:{header_line}")
    idx = [header.index(c) for c in names]
    fast = _parse_fast(path, header_line, idx, fmt)
    if fast is None:  # something odd: the slow parser finds it and says where
        t, prompt, output, lines = _parse_slow(path, header, header_line, idx, fmt)
    else:
        t, prompt, output = fast
        lines = None
    n = t.shape[0]
    if n == 0:
        raise InputFileError("the trace has a header but no data rows", where=str(path))

    def where(i: int) -> str:
        nonlocal lines
        if lines is None:
            lines = _parse_slow(path, header, header_line, idx, fmt)[3]
        return f"{path}:{lines[i]}"

    for values, col in ((prompt, names[1]), (output, names[2])):
        bad = np.flatnonzero(values < 1)
        if bad.size:
            i = int(bad[0])
            raise InputFileError(f"row {i + 1}, column {col!r}: token counts must be >= 1, got {int(values[i])}",
                                 where=where(i))
    back = np.flatnonzero(t[1:] < t[:-1])
    if back.size:
        i = int(back[0]) + 1
        shown = [str(x).replace("T", " ") if fmt == "azure" else f"{x:g}" for x in (t[i], t[i - 1])]
        raise InputFileError(f"row {i + 1}, column {names[0]!r}: timestamps must be non-decreasing "
                             f"({shown[0]} is earlier than {shown[1]} in the row before)", where=where(i))
    if fmt == "azure":
        t = (t - t[0]).astype(np.int64) / 1e9
    arrival = (t - t[0]).astype(np.float64)
    prompt = prompt.astype(np.int64)
    output = output.astype(np.int64)
    for arr in (arrival, prompt, output):
        arr.setflags(write=False)
    return TraceData(path=path, format=fmt, arrival_s=arrival, prompt_tokens=prompt, output_tokens=output)


def _read_header(path: Path) -> tuple[list[str], int]:
    try:
        with open(path, encoding="utf-8-sig", newline="") as f:
            reader = csv.reader(f)
            for row in reader:
                if any(cell.strip() for cell in row):
                    return [cell.strip() for cell in row], reader.line_num
    except UnicodeDecodeError as exc:
        raise InputFileError(f"not a UTF-8 text file ({exc.reason} at byte {exc.start})", where=str(path)) from None
    except (OSError, csv.Error) as exc:
        raise InputFileError(f"cannot read trace file: {exc}", where=str(path)) from None
    raise InputFileError("empty file: expected a CSV header and rows", where=str(path))


def _detect_format(path: Path, header: list[str], header_line: int, fmt: str) -> str:
    """``fmt``, or for ``auto`` the format most of whose columns the header has."""
    if fmt != "auto":
        return fmt
    score = {name: sum(c in header for c in cols) for name, cols in FORMATS.items()}
    best = max(score, key=score.__getitem__)
    if score[best] > 0:
        return best
    expected = "; ".join(f"{name}: {', '.join(cols)}" for name, cols in FORMATS.items())
    raise InputFileError(f"cannot detect the trace format from its columns ({', '.join(header)}); expected the "
                         f"columns of one of: {expected}", where=f"{path}:{header_line}")


def _parse_fast(path: Path, header_line: int, idx: list[int], fmt: str
                ) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
    """The whole file through numpy's C reader; None when anything is unusual."""
    kw = {"delimiter": ",", "skiprows": header_line, "comments": None, "encoding": "utf-8"}
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # "input contained no data": reported by the caller
            if fmt == "azure":
                tokens = np.loadtxt(path, usecols=idx[1:], dtype=np.float64, ndmin=2, **kw)
                t = np.loadtxt(path, usecols=idx[0], dtype="datetime64[ns]", ndmin=1, **kw)
            else:
                table = np.loadtxt(path, usecols=idx, dtype=np.float64, ndmin=2, **kw)
                t, tokens = table[:, 0], table[:, 1:]
    except (ValueError, TypeError, UnicodeDecodeError, OverflowError):
        return None
    if np.isnat(t).any() if fmt == "azure" else not np.isfinite(t).all():
        return None
    if not np.isfinite(tokens).all() or (tokens != np.rint(tokens)).any() or (np.abs(tokens) > 2**53).any():
        return None
    return t, tokens[:, 0], tokens[:, 1]


def _parse_slow(path: Path, header: list[str], header_line: int, idx: list[int], fmt: str
                ) -> tuple[np.ndarray, np.ndarray, np.ndarray, list[int]]:
    """Row by row with the csv module; raises naming the first bad row and column."""
    names = [header[i] for i in idx]
    need = max(idx) + 1
    times: list = []
    prompt: list[float] = []
    output: list[float] = []
    lines: list[int] = []
    try:
        with open(path, encoding="utf-8-sig", newline="") as f:
            reader = csv.reader(f)
            for row in reader:
                if reader.line_num <= header_line or not any(cell.strip() for cell in row):
                    continue
                line, k = reader.line_num, len(lines) + 1
                where = f"{path}:{line}"
                if len(row) < need:
                    raise InputFileError(f"row {k} has {len(row)} columns, expected {len(header)} "
                                         f"(column {names[[i >= len(row) for i in idx].index(True)]!r} is missing)",
                                         where=where)
                cells = [row[i].strip() for i in idx]
                if fmt == "azure":
                    try:
                        stamp = np.datetime64(cells[0], "ns")
                    except ValueError:
                        stamp = np.datetime64("NaT")
                    if np.isnat(stamp):
                        raise InputFileError(f"row {k}, column {names[0]!r}: cannot read {cells[0]!r} as a "
                                             "date and time such as '2023-11-16 18:15:46.6805900'", where=where)
                    times.append(stamp)
                else:
                    times.append(_number(cells[0], k, names[0], where))
                vals = []
                for cell, name in zip(cells[1:], names[1:]):
                    v = _number(cell, k, name, where)
                    if v != round(v) or abs(v) > 2**53:
                        raise InputFileError(f"row {k}, column {name!r}: token count {cell!r} is not a whole "
                                             "number", where=where)
                    vals.append(v)
                prompt.append(vals[0])
                output.append(vals[1])
                lines.append(line)
    except UnicodeDecodeError as exc:
        raise InputFileError(f"not a UTF-8 text file ({exc.reason} at byte {exc.start})", where=str(path)) from None
    except csv.Error as exc:
        raise InputFileError(f"malformed CSV: {exc}", where=str(path)) from None
    except OSError as exc:
        raise InputFileError(f"cannot read trace file: {exc}", where=str(path)) from None
    t = np.array(times, dtype="datetime64[ns]" if fmt == "azure" else np.float64)
    return t, np.array(prompt, dtype=np.float64), np.array(output, dtype=np.float64), lines


def _number(cell: str, row: int, column: str, where: str) -> float:
    try:
        v = float(cell)
    except ValueError:
        v = float("nan")
    if not np.isfinite(v):
        raise InputFileError(f"row {row}, column {column!r}: {cell!r} is not a number", where=where)
    return v


# --------------------------------------------------------------------------------------------
# the source


@register_workload("trace", config=TraceConfig)
class TraceSource:
    """Requests replayed from a trace file."""

    def __init__(self, config: TraceConfig, base_dir: Path = Path(".")) -> None:
        self.config = config
        self.base_dir = Path(base_dir)
        self.path = resolve_trace_path(config.path, self.base_dir)

    def generate(self, rngs: RngStreams | None = None) -> RequestTable:
        cfg = self.config
        data = load_trace_file(self.path, cfg.format)
        total = len(data)
        if cfg.start_row >= total:
            raise InputFileError(f"start_row {cfg.start_row} is past the end of the trace ({total} rows)",
                                 where=str(self.path))
        stop = total if cfg.max_requests is None else min(total, cfg.start_row + cfg.max_requests)
        rows = slice(cfg.start_row, stop)
        arrival = data.arrival_s[rows] - data.arrival_s[cfg.start_row]
        n = arrival.shape[0]
        if cfg.target_rate is not None:
            span = float(arrival[-1])
            if n < 2 or span <= 0:
                raise InputFileError(f"cannot rescale to target_rate: the {n} rows used all arrive at the same time",
                                     where=str(self.path))
            arrival = arrival * ((n - 1) / span / cfg.target_rate)
        elif cfg.time_scale != 1.0:
            arrival = arrival * cfg.time_scale
        prompt = data.prompt_tokens[rows].copy()
        output = data.output_tokens[rows].copy()
        if cfg.max_prompt_tokens is not None:
            np.minimum(prompt, cfg.max_prompt_tokens, out=prompt)
        if cfg.max_output_tokens is not None:
            np.minimum(output, cfg.max_output_tokens, out=output)
        return RequestTable(
            arrival_s=np.ascontiguousarray(arrival, dtype=np.float64),
            prompt_tokens=prompt,
            output_tokens=output,
            meta={"source": str(self.path), "format": data.format, "rows": n, "start_row": cfg.start_row},
        )
