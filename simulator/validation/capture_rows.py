"""Calibration captures (``capture.csv`` + ``capture.json``) as validation rows.

Models: each GPU record of a capture (device ``cuda:...``) as the op a timing backend predicts:
    ``gemm`` -> a GEMM of the record's m x n x k in its dtype (fp8 with a 16-bit output);
    ``attention`` ``sdpa_prefill`` -> causal FlashAttention over ``batch`` independent (sequence,
    head) pairs of m queries and keys; ``sdpa_decode`` -> decode attention of ``batch`` rows over
    n keys each; ``paged_gather``, ``stream``, device-to-device ``copy`` and ``elementwise``
    (softmax, layernorm) -> memory-bound kernels moving the record's bytes.
Ignores: CPU records (the GPU backends do not model a CPU; ``hwsim calibrate report`` checks
    those), host<->device copies (a PCIe transfer, not a GPU kernel) and collectives (the capture
    does not say which fabric joined the GPUs); their counts are reported as skipped.
Sources: the record format of :mod:`simulator.calibration.capture` (docs/calibration.md).
"""

from __future__ import annotations

from pathlib import Path

from simulator.calibration.fit import GPU_DTYPE_BYTES
from simulator.calibration.records import Capture, Measurement, read_capture
from simulator.core.errors import InputFileError
from simulator.validation.vidur import Row
from workloads.llm import Op


def is_capture_dir(directory: Path) -> bool:
    return (Path(directory) / "capture.csv").is_file()


def to_op(r: Measurement) -> Op | None:
    """The op of one GPU record, or None when no GPU kernel model applies."""
    if r.kernel_class == "gemm":
        b = GPU_DTYPE_BYTES.get(r.dtype)
        if b is None:
            return None
        out = 2.0 if b == 1 else 0.0  # fp8 / int8 GEMMs write a 16-bit result
        return Op("gemm", "gemm", max(r.batch, 1), m=r.m, n=r.n, k=r.k, dtype=r.dtype, dtype_bytes=float(b),
                  out_bytes=out)
    if r.kernel_class == "attention" and r.op == "sdpa_prefill":
        pairs = r.batch * r.m * (r.m + 1) // 2
        return Op("attn_prefill", "attn_prefill", 1, seqs=r.batch, q_tokens=r.batch * r.m, kv_tokens=r.batch * r.n,
                  pairs=pairs, heads=1, kv_heads=1, head_dim=r.k, dtype=r.dtype)
    if r.kernel_class == "attention" and r.op == "sdpa_decode":
        return Op("attn_decode", "attn_decode", 1, seqs=r.batch, q_tokens=r.batch, kv_tokens=r.batch * r.n,
                  heads=1, kv_heads=1, head_dim=r.k, dtype=r.dtype)
    if r.bytes > 0 and (r.kernel_class in ("stream", "elementwise") or r.op in ("d2d", "paged_gather")):
        return Op("elementwise", r.op, 1, bytes=r.bytes)
    return None


def capture_rows(capture: Capture) -> tuple[list[Row], dict[str, int]]:
    """(rows a GPU backend can predict, {reason: count} of the records left out)."""
    rows: list[Row] = []
    skipped: dict[str, int] = {}
    for r in capture.rows:
        if not r.device.startswith("cuda"):
            skipped["cpu records"] = skipped.get("cpu records", 0) + 1
            continue
        op = to_op(r)
        if op is None:
            key = f"{r.kernel_class} {r.op} (no GPU kernel model)"
            skipped[key] = skipped.get(key, 0) + 1
            continue
        rows.append(Row(r.device, f"{r.kernel_class}.{r.op}", 1, float(r.m or r.elements), r.median_s, op))
    return rows, skipped


def load_capture(directory: Path) -> tuple[list[Row], dict[str, int]]:
    rows, skipped = capture_rows(read_capture(Path(directory) / "capture.csv"))
    if not rows:
        left = ", ".join(f"{n} {k}" for k, n in skipped.items()) or "no records"
        raise InputFileError(f"no GPU kernel records to validate ({left}); CPU captures are checked by "
                             "`hwsim calibrate report`", where=str(Path(directory) / "capture.csv"))
    return rows, skipped
