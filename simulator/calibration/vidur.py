"""Read Vidur-format A100 operator tables into calibration records.

Vidur's ``<org>__<model>.mlp.csv`` holds, per transformer layer and operator, CUDA time in
milliseconds (``time_stats.<op>.{min,max,mean,median,std}``) against ``num_tokens`` and
``num_tensor_parallel_workers``, with the model's ``n_head``, ``n_kv_head``, ``n_embd``,
``n_expanded_embd`` and ``use_gated_mlp``. The four projection operators are GEMMs with
m = num_tokens and weights split across TP workers:

    attn_pre_proj   n = (n_head + 2 n_kv_head) x head_dim / TP   k = n_embd        (fused QKV)
    attn_post_proj  n = n_embd                                    k = n_head x head_dim / TP
    mlp_up_proj     n = (2 if gated else 1) x n_expanded_embd / TP   k = n_embd
    mlp_down_proj   n = n_embd                                    k = n_expanded_embd / TP

Records carry the median as ``median_s`` and Vidur's min/max as ``p10_s``/``p90_s`` (the table
has no percentiles). Precision is fp16 (Vidur profiles in half precision).
"""

from __future__ import annotations

import csv
import math
from pathlib import Path

from simulator.calibration.records import Capture, Measurement
from simulator.core.errors import InputFileError
from simulator.core.files import read_text

GEMM_OPS = ("attn_pre_proj", "attn_post_proj", "mlp_up_proj", "mlp_down_proj")
SHAPE_COLUMNS = ("n_head", "n_kv_head", "n_embd", "n_expanded_embd", "use_gated_mlp", "num_tokens",
                 "num_tensor_parallel_workers")


def is_vidur_csv(path: Path) -> bool:
    try:
        with path.open(encoding="utf-8") as fh:
            head = fh.readline()
    except (OSError, UnicodeDecodeError):
        return False
    return head.startswith("time_stats.") or ",time_stats." in head


def gemm_shape(op: str, row: dict[str, float | bool], tokens: int) -> tuple[int, int, int]:
    h, kvh, e, f = (int(row[c]) for c in ("n_head", "n_kv_head", "n_embd", "n_expanded_embd"))
    tp = int(row["num_tensor_parallel_workers"])
    hd = e // h
    if op == "attn_pre_proj":
        return tokens, (h + 2 * kvh) * hd // tp, e
    if op == "attn_post_proj":
        return tokens, e, h * hd // tp
    if op == "mlp_up_proj":
        return tokens, (2 if row["use_gated_mlp"] else 1) * f // tp, e
    if op == "mlp_down_proj":
        return tokens, e, f // tp
    raise ValueError(op)


def read_vidur(path: str | Path, ops: tuple[str, ...] = GEMM_OPS, device: str = "cuda:A100-80GB (vidur)") -> Capture:
    """One Vidur ``*.mlp.csv`` file as GEMM records; errors name the file and row."""
    path = Path(path)
    text = read_text(path, "Vidur table")
    reader = csv.DictReader(text.splitlines())
    header = reader.fieldnames or []
    need = list(SHAPE_COLUMNS) + [f"time_stats.{op}.{s}" for op in ops for s in ("median", "min", "max")]
    missing = [c for c in need if c not in header]
    if missing:
        raise InputFileError(f"not a Vidur mlp table: missing column(s) {', '.join(missing[:4])}"
                             + (" ..." if len(missing) > 4 else ""), where=f"{path}:1")
    label = path.name.split(".")[0]
    rows: list[Measurement] = []
    for row_no, raw in enumerate(reader, start=1):
        where = f"{path}:{row_no + 1}"
        if None in raw or any(raw.get(c) is None for c in need):
            raise InputFileError(f"row {row_no} has the wrong number of fields (truncated?)", where=where)
        vals: dict[str, float | bool] = {}
        for c in SHAPE_COLUMNS:
            cell = raw[c].strip()
            if c == "use_gated_mlp":
                if cell not in ("True", "False", "true", "false", "1", "0"):
                    raise InputFileError(f"row {row_no}: use_gated_mlp has {cell!r}, expected True/False", where=where)
                vals[c] = cell in ("True", "true", "1")
                continue
            try:
                vals[c] = float(cell)
            except ValueError:
                raise InputFileError(f"row {row_no}: column {c!r} has {cell!r}, which is not a number",
                                     where=where) from None
        tokens = int(vals["num_tokens"])
        tp = int(vals["num_tensor_parallel_workers"])
        for op in ops:
            try:
                med, lo, hi = (float(raw[f"time_stats.{op}.{s}"]) * 1e-3 for s in ("median", "min", "max"))
            except ValueError:
                raise InputFileError(f"row {row_no}: time_stats.{op} is not a number", where=where) from None
            if not all(math.isfinite(v) and v > 0 for v in (med, lo, hi)):
                continue  # an operator Vidur did not time for this row
            m, n, k = gemm_shape(op, vals, tokens)
            rows.append(Measurement("gemm", op, "fp16", device, m, n, k, 1, 0, med, lo, hi, 1,
                                    bytes=2 * (m * k + k * n + m * n), label=f"{label} tp={tp}"))
    if not rows:
        raise InputFileError("Vidur table has no GEMM measurements", where=str(path))
    return Capture(str(path), rows, {"source": "vidur", "file": str(path)})


def read_vidur_dir(path: str | Path) -> Capture:
    """Every ``*.mlp.csv`` under ``path`` (e.g. ../shared/validation/vidur_a100/compute)."""
    files = sorted(Path(path).glob("*.mlp.csv"))
    if not files:
        raise InputFileError("no Vidur *.mlp.csv tables in this directory", where=str(path))
    rows = [r for f in files for r in read_vidur(f).rows]
    return Capture(str(path), rows, {"source": "vidur", "files": [f.name for f in files]})
