"""Linear-attention and state-space layers (Mamba-2, gated delta net): a fixed state per sequence.

Models: one layer as its kernels -- the input projection GEMM (hidden -> z, x / v, B / k, C / q and
    the per-head gates), the short causal depthwise convolution over x, B and C (``conv_kernel``
    taps; decode reads and writes a conv state of ``conv_kernel - 1`` tokens), the sequence mixer
    and the output projection GEMM (plus the gated RMSNorm, elementwise). The mixer at prefill is
    the chunked algorithm (Mamba-2 SSD, FLA's chunked delta rule): inside a chunk of
    ``chunk_size`` tokens a masked attention-like product (Q x Q per head, with key width
    ``state_dim`` and value width ``head_dim``), between chunks a state of ``state_dim x head_dim``
    per head passed on and read back: per token and head 2 Q (N + P) + 4 N P FLOPs (N: state_dim,
    P: head_dim, Q: chunk). It is lowered as an ``attn_prefill`` op over chunk-long sequences (head
    width (N + P) / 2: the masked intra-chunk product), two GEMMs for the chunk states (K^T V per
    chunk and head, then Q times the state carried in) and the state writes and reads (elementwise,
    fp32 as the SSD kernels keep them). At decode
    the mixer reads and writes each row's state once (``ssm_update``, elementwise): its cost does
    not depend on the context. The state (and conv state) is held per running sequence, at
    ``state_dtype_bytes`` per element.
    Heads split over tensor-parallel GPUs; the projections split with them.
Ignores: the delta rule's extra state products (gated delta net: about 2 N P more FLOPs per token
    and head than Mamba-2's update; state traffic dominates at decode); the dt / gate softplus and
    the A exponentials (elementwise, folded into the mixer's bytes); the projection of B and C
    groups being replicated when there are fewer groups than GPUs (counted split).
Sources: Dao & Gu, "Transformers are SSMs" (Mamba-2, ICML 2024) section 6 (SSD chunked algorithm,
    its FLOP count) and the state-spaces/mamba reference layer (in_proj layout z, x, B, C, dt);
    Yang et al., "Gated Delta Networks" (ICLR 2025) and the Qwen3-Next modelling code (in_proj_qkvz,
    in_proj_ba, conv over q, k, v); vLLM ``mamba_ssm_cache_dtype: auto`` (the state at the model
    dtype) for the default state width.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from simulator.config.quantities import StrictConfig


class LinearLayerConfig(StrictConfig):
    """The linear-attention / state-space layers of a model (``model.linear``; layers marked S in
    ``attention.layer_pattern``)."""

    kind: Literal["mamba2", "gated_delta_net"] = "mamba2"
    num_heads: int = Field(gt=0, description="value heads (Mamba-2 nheads; gated delta net num_value_heads)")
    head_dim: int = Field(gt=0, description="value head width P (Mamba-2 headdim; GDN value_head_dim)")
    state_dim: int = Field(gt=0, description="key / state width N (Mamba-2 d_state; GDN key_head_dim)")
    num_groups: int = Field(default=1, gt=0, description="B/C groups (Mamba-2 ngroups) or key heads (GDN)")
    conv_kernel: int = Field(default=4, gt=0, description="taps of the causal depthwise convolution")
    chunk_size: int = Field(default=256, gt=0, description="tokens per chunk of the chunked prefill algorithm")
    state_dtype_bytes: float = Field(default=2.0, gt=0, description="bytes per state element")

    @model_validator(mode="after")
    def _groups(self) -> LinearLayerConfig:
        if self.num_heads % self.num_groups:
            raise ValueError(f"num_heads {self.num_heads} is not a multiple of num_groups {self.num_groups} (each "
                             f"group's B / C or key head serves a whole number of value heads)")
        return self

    @property
    def inner(self) -> int:
        return self.num_heads * self.head_dim

    @property
    def qk_width(self) -> int:
        return self.num_groups * self.state_dim

    @property
    def conv_dim(self) -> int:
        """Channels of the convolution: x / v, B / k, C / q."""
        return self.inner + 2 * self.qk_width

    @property
    def gates(self) -> int:
        """Per-head gate outputs of the input projection: dt (Mamba-2); beta and alpha (GDN)."""
        return self.num_heads * (1 if self.kind == "mamba2" else 2)

    def in_proj_width(self) -> int:
        return self.conv_dim + self.inner + self.gates  # + z (the output gate)

    def params(self, hidden: int) -> int:
        """Weights of one layer: projections, conv taps, per-head A / dt bias / D, the gated norm."""
        return hidden * self.in_proj_width() + self.inner * hidden + self.conv_dim * self.conv_kernel \
            + 3 * self.num_heads + self.inner

    def state_elems(self, tp: int = 1) -> int:
        """Elements one sequence holds per layer on one of ``tp`` GPUs: the state and the conv state."""
        heads = max(1, self.num_heads // tp)
        conv = -(-self.conv_dim // tp) * (self.conv_kernel - 1)
        return heads * self.state_dim * self.head_dim + conv

    def flops_per_token(self, tp: int = 1) -> float:
        """Chunked-mixer FLOPs per token on one GPU (Mamba-2 SSD count, section 6)."""
        heads = max(1, self.num_heads // tp)
        N, P, Q = self.state_dim, self.head_dim, self.chunk_size
        return heads * (2.0 * Q * (N + P) + 4.0 * N * P)
