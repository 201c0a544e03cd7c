"""CPU serving backend: an LLM iteration's ops on the cores of a CPU (llama.cpp / T-MAC style).

Models: every op is split over ``threads`` cores and ends at a thread barrier (the CPU's fitted
    ``gemm_fork_join_s``, one per op when more than one thread runs). GEMM: max(bytes / DRAM
    bandwidth, compute), the bandwidth being the calibrated CPU model's DRAM level for ``threads``
    cores (per-core limit x threads, capped by the socket, x the fitted DRAM efficiency). Compute:
    FLOPs / (peak of the op's dtype x gemm_efficiency x Hockney factors of n and k) — the kernels
    vectorise along K and N (dot products), so a decode row is not padded along M — plus the
    dequantization of low-bit weights on the SIMD lanes (``deq_ops`` per weight element, once per
    call). Where the CPU has table-lookup kernels (``lut_kernels``) and a weight is stored in at
    most 4 bits, the T-MAC kernel replaces the multiplies: activations in groups of g = 4 index a
    table of 2^g partial sums built per row, and each weight bit-plane costs one byte shuffle per
    group, so a weight element costs bits / g lookups at simd_bits / 8 lookups per shuffle; each
    shuffle and the two widening adds accumulating it issue on ``shuffle_units`` SIMD pipes per
    cycle: time grows linearly with the bits. Attention: decode
    reads the K/V once (bytes / bandwidth vs FLOPs / peak), prefill is compute-bound at the peak
    x gemm_efficiency. Elementwise ops sweep their bytes at the DRAM bandwidth.
Ignores: caches holding a layer's weights between tokens (a 7B model streams from DRAM), NUMA,
    SMT, hybrid big/little cores (``cores`` are the cores used), the LUT table's precision loss,
    frequency changes with the number of active cores.
Sources: Wei et al., "T-MAC: CPU Renaissance via Table Lookup for Low-Bit LLM Deployment on
    Edge" (EuroSys 2025) for the LUT kernel (g = 4, bit-serial tables, tbl/pshufb lookups);
    ggml / llama.cpp (ggml_graph_compute: one barrier per node) for the per-op barrier; the CPU
    model (``hw_models/cpu.py``) for the bandwidths and the fitted efficiencies.
"""

from __future__ import annotations

import math
from typing import Any, Literal

import numpy as np
from pydantic import Field

from hw_models.cpu import Cpu
from hw_models.timing.base import TimingBackend
from simulator.config.quantities import StrictConfig
from simulator.core.registry import register_timing

LUT_GROUP = 4  # activations per table (T-MAC's g)
# SIMD instructions per table lookup of 16 byte lanes: the TBL / PSHUFB and the two widening adds that
# accumulate its int8 partial sums into int16 (T-MAC, section 4: lookup then accumulate)
LUT_INSTRUCTIONS = 3


class CpuTimingConfig(StrictConfig):
    threads: int = Field(default=0, ge=0, description="cores the engine runs on (0: every core)")
    kernels: Literal["auto", "dequant", "lut"] = Field(
        default="auto", description="low-bit GEMV kernel: auto (LUT where the CPU has it and weights have <= 4 "
                                    "bits), dequant (unpack + multiply), lut (T-MAC table lookup)")


@register_timing("cpu", config=CpuTimingConfig)
class CpuBackend(TimingBackend):
    """LLM ops on CPU cores (see module docstring)."""

    name = "cpu"

    def __init__(self, config: CpuTimingConfig, device: Any, link: Any = None) -> None:
        super().__init__(config, device, link)
        self.cpu = Cpu(device)
        self.threads = min(config.threads or device.cores, device.cores)
        self._bw = self.cpu.level_bandwidths(self.threads)[3]
        self._share = self.threads / device.cores
        self._sync = device.gemm_fork_join_s if self.threads > 1 else 0.0
        self._lanes32 = device.simd_bits / 32 * device.fma_units * device.freq_hz * self.threads
        self._lookups = (device.simd_bits / 8 * device.shuffle_units / LUT_INSTRUCTIONS * device.freq_hz
                         * self.threads)
        if config.kernels == "lut" and not device.lut_kernels:
            from simulator.core.errors import ConfigError

            raise ConfigError(f"{device.name} has no table-lookup kernels (lut_kernels: false)",
                              where="hardware.timing.kernels")

    def peak(self, dtype: str) -> float:
        return self.device.tensor_peak(dtype) * self._share

    def _lut(self, op: Any) -> bool:
        bits = (op.w_bytes or op.dtype_bytes) * 8
        if self.config.kernels == "dequant" or not op.w_bytes or bits > 4.99:
            return False
        return self.config.kernels == "lut" or self.device.lut_kernels

    def _gemm_compute_s(self, op: Any) -> float:
        """Compute seconds of a GEMM: the lookup kernel where the CPU has it for these weights
        (``kernels: auto`` takes the faster of lookup and dequantize-and-multiply, as an engine
        picking per shape: lookups win at decode, the multiply engines at long prefills)."""
        if self._lut(op):
            m, n, k, w = op.m, op.n, op.k, op.weights()
            bits = math.floor(op.w_bytes * 8 + 1e-9)  # integer bit-planes; the scales ride along
            lookups = m * k * n * w * bits / LUT_GROUP
            tables = m * w * (k / LUT_GROUP) * 2**LUT_GROUP  # partial sums per activation group
            lut = lookups / self._lookups + tables / self._lanes32
            return lut if self.config.kernels == "lut" else min(lut, self._multiply_s(op))
        return self._multiply_s(op)

    def _multiply_s(self, op: Any) -> float:
        c = self.device
        m, n, k, w = op.m, op.n, op.k, op.weights()
        h = c.gemm_half_dim
        shape = (n / (n + h)) * (k / (k + h))
        t = 2.0 * m * n * k * w / (self.peak(op.dtype) * c.gemm_efficiency * shape)
        if op.w_bytes and op.w_bytes < op.dtype_bytes:  # low-bit weights unpacked on the SIMD lanes
            t += max(op.deq_ops, 2.0) * k * n * w / self._lanes32
        return t

    def _op_s(self, op: Any) -> float:
        kind = op.kind
        if kind in ("gemm", "grouped_gemm"):
            t = max(op.bytes_moved() / op.count / self._bw, self._gemm_compute_s(op))
        elif kind == "attn_prefill":
            flops = op.flops() / op.count
            t = max(flops / (self.peak(op.dtype) * self.device.gemm_efficiency), op.bytes_moved() / op.count / self._bw)
        elif kind == "attn_decode":
            return float(self.decode_attention_s(op, np.array([op.kv_tokens]))[0])
        elif kind == "elementwise":
            t = op.bytes / self._bw
        elif kind in ("allreduce", "alltoall"):
            if self.link is None or op.workers <= 1:
                return 0.0
            f = self.link.allreduce_s if kind == "allreduce" else self.link.alltoall_s
            return f(op.bytes, op.workers) * op.count
        else:
            raise ValueError(f"cpu backend cannot time op kind {kind!r}")
        return (t + self._sync) * op.count

    def decode_attention_s(self, op: Any, kv_tokens: np.ndarray) -> np.ndarray:
        kv = np.asarray(kv_tokens, dtype=np.float64)
        flops = 4.0 * op.heads * op.head_dim * kv
        nbytes = op.head_dim * (2.0 * op.seqs * op.heads * op.dtype_bytes + 2.0 * op.kv_heads * op.kv_elem_bytes(kv))
        return (np.maximum(flops / self.peak(op.dtype), nbytes / self._bw) + self._sync) * op.count
