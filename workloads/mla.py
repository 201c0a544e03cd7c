"""Multi-head latent attention (MLA, DeepSeek-V2/V3/R1) lowered to per-GPU kernel ops.

Models: one MLA layer on one GPU of a ``tp``-way tensor-parallel replica, as vLLM, SGLang and
    TensorRT-LLM run it. Before attention, for every token: the fused down-projection of the
    query and the KV (hidden -> q_lora_rank + kv_lora_rank + rope; replicated on every GPU, as the
    engines' ``ReplicatedLinear``/fused ``qkv_a`` layers are), the two latent RMSNorms, the query
    up-projection (q_lora_rank -> heads/tp x (nope + rope); a plain hidden -> heads/tp x (nope +
    rope) projection when ``q_lora_rank`` is None), the rotary embedding of the query's and the
    key's rope parts, and the absorbed key up-projection (q_nope x W_UK: a batched GEMM, one
    nope x kv_lora_rank matrix per head) with, after attention, the absorbed value up-projection
    (latent x W_UV, one kv_lora_rank x v matrix per head) and the output projection (heads/tp x v
    -> hidden). Prefill (:func:`prefill_ops`): the KV up-projection of every key the chunks read
    (kv_lora_rank -> heads/tp x (nope + v), the cached context included, as vLLM's chunked-context
    prefill does), then multi-head attention with Q/K width nope + rope (192) and V width v (128)
    over those up-projected K/V (at the model dtype even with a quantized latent cache).
    Decode (:func:`decode_op`, weight-absorbed): multi-query attention over the cached latent, one
    576-wide key (latent + rope) whose first 512 elements are the value, shared by the heads/tp
    query heads; each token's latent is read once per step per row. The latent is stored whole on
    every GPU (all its heads read it).
Ignores: the absorbed up-projections run for every token of the step, prefill tokens included
    (the engines run them for decode rows only; they are ~3 % of a DeepSeek-V3 token's GEMM
    FLOPs); the latent RMSNorms' weights in the parameter count; YaRN's attention scaling;
    the MTP (next-token prediction) module.
Sources: DeepSeek-AI, "DeepSeek-V2" (2024) section 2.1 (MLA, the decoupled rotary key, weight
    absorption); DeepSeek-AI, "DeepSeek-V3 Technical Report" (2024); vLLM ``MLACommonImpl``
    (prefill up-projection incl. context chunks, decode absorption) and SGLang
    ``DeepseekV2AttentionMLA``; deepseek-ai/FlashMLA (2025).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from workloads.architectures.transformer import TransformerConfig
from workloads.llm import ATTN_DECODE, ATTN_PREFILL, ELEMENTWISE, GEMM, GROUPED, BatchShape, Op


@dataclass(frozen=True, slots=True)
class MlaAttnOp(Op):
    """An attention op with separate Q/K (``head_dim``) and V (``v_head_dim``) widths; ``latent``:
    K and V are one ``head_dim``-wide vector per token and KV head (the MLA latent and rotary key),
    V its first ``v_head_dim`` elements, stored and read once."""

    v_head_dim: int = 0
    latent: bool = False

    def _kv_width(self) -> int:
        return self.head_dim if self.latent else self.head_dim + self.v_head_dim

    def bytes_moved(self) -> float:
        dk, dv, kvw = self.head_dim, self.v_head_dim, self._kv_width()
        b = self.dtype_bytes
        if self.kind == ATTN_PREFILL:
            ctx = self.kv_tokens - self.q_tokens
            one = b * self.q_tokens * self.heads * (dk + dv) + kvw * self.kv_heads * (
                self.q_tokens * b + ctx * (self.kv_bytes or b))
        else:
            one = b * self.seqs * self.heads * (dk + dv) + kvw * self.kv_heads * float(
                self.kv_elem_bytes(self.kv_tokens))
        return float(one) * self.count

    def dequant_ops(self) -> float:
        return self.kv_deq_ops * self._kv_width() * self.kv_heads * self.kv_tokens if self.kv_deq_ops else 0.0

    def flops(self) -> float:
        per = self.pairs if self.kind == ATTN_PREFILL else self.kv_tokens
        return 2.0 * self.heads * (self.head_dim + self.v_head_dim) * per * self.count


def heads_per_gpu(model: TransformerConfig, tp: int) -> int:
    return max(1, model.num_heads // tp)


def projection_ops(tokens: int, model: TransformerConfig, tp: int) -> list[Op]:
    """The per-token ops of an MLA layer before attention (``count`` = layers), in place of a
    fused QKV projection and its rotary kernel; they end with the absorbed value up-projection,
    which the engines run after attention (ops are summed, so only the listing order differs)."""
    d, b, h, L = model.dtype, model.dtype_bytes, model.hidden_size, model.num_layers
    heads = heads_per_gpu(model, tp)
    rank, rope, nope = model.kv_lora_rank or 0, model.qk_rope_head_dim, model.qk_nope_head_dim
    qk = nope + rope
    T = tokens
    ops: list[Op] = []
    if model.q_lora_rank:
        ops.append(Op(GEMM, "qkv_a_proj", L, m=T, n=model.q_lora_rank + rank + rope, k=h, dtype=d, dtype_bytes=b))
        ops.append(Op(ELEMENTWISE, "q_a_norm", L, bytes=int(2 * T * model.q_lora_rank * b), dtype=d, dtype_bytes=b))
        ops.append(Op(GEMM, "q_b_proj", L, m=T, n=heads * qk, k=model.q_lora_rank, dtype=d, dtype_bytes=b))
    else:  # DeepSeek-V2-Lite: a plain query projection beside the KV down-projection
        ops.append(Op(GEMM, "q_proj", L, m=T, n=heads * qk, k=h, dtype=d, dtype_bytes=b))
        ops.append(Op(GEMM, "kv_a_proj", L, m=T, n=rank + rope, k=h, dtype=d, dtype_bytes=b))
    ops.append(Op(ELEMENTWISE, "kv_a_norm", L, bytes=int(2 * T * rank * b), dtype=d, dtype_bytes=b))
    ops.append(Op(ELEMENTWISE, "rope", L, bytes=int(2 * T * (heads + 1) * rope * b), dtype=d, dtype_bytes=b))
    groups = (T,) * heads
    ops.append(Op(GROUPED, "w_uk_bmm", L, m=T * heads, n=rank, k=nope, dtype=d, dtype_bytes=b, groups=groups))
    ops.append(Op(GROUPED, "w_uv_bmm", L, m=T * heads, n=model.v_head_dim, k=rank, dtype=d, dtype_bytes=b,
                  groups=groups))
    return ops


def prefill_ops(shape: BatchShape, model: TransformerConfig, tp: int, scheme: Any = None) -> list[Op]:
    """KV up-projection of every key the prefill chunks read, then MHA with Q/K width nope + rope
    and V width v (heads/tp heads, each with its own up-projected K and V)."""
    from workloads.llm import _quantize

    d, b, L = model.dtype, model.dtype_bytes, model.num_layers
    heads = heads_per_gpu(model, tp)
    q_tokens = sum(t for t, _ in shape.prefill)
    kv_read = sum(t + ctx for t, ctx in shape.prefill)
    pairs = sum(t * ctx + t * (t + 1) // 2 for t, ctx in shape.prefill)
    up = [Op(GEMM, "kv_b_proj", L, m=kv_read, n=heads * (model.qk_nope_head_dim + model.v_head_dim),
             k=model.kv_lora_rank or 0, dtype=d, dtype_bytes=b)]
    if scheme is not None:
        up = _quantize(up, model, scheme)
    attn = MlaAttnOp(ATTN_PREFILL, "attn_prefill", L, seqs=len(shape.prefill), q_tokens=q_tokens,
                     kv_tokens=kv_read, pairs=pairs, heads=heads, kv_heads=heads,
                     head_dim=model.qk_nope_head_dim + model.qk_rope_head_dim, v_head_dim=model.v_head_dim,
                     dtype=d, dtype_bytes=b)
    return up + [attn]  # K and V come out of the up-projection at the model dtype, whatever the cache holds


def decode_op(model: TransformerConfig, tp: int, rows: int, kv_tokens: int, scheme: Any = None) -> Op:
    """Weight-absorbed decode: MQA of heads/tp query heads over the latent (one 576-wide key whose
    first 512 elements are the value per token)."""
    from workloads.llm import _kv_quantized

    op = MlaAttnOp(ATTN_DECODE, "attn_decode", model.num_layers, seqs=rows, q_tokens=rows, kv_tokens=kv_tokens,
                   heads=heads_per_gpu(model, tp), kv_heads=1, head_dim=model.mla_latent,
                   v_head_dim=model.kv_lora_rank or 0, latent=True, dtype=model.dtype,
                   dtype_bytes=model.dtype_bytes)
    return _kv_quantized(op, model, scheme)


def absorbed_prefill_op(seqs: int, isl: int, heads: int, kv_lora_rank: int = 512, rope: int = 64,
                        dtype: str = "bf16", dtype_bytes: float = 2.0) -> MlaAttnOp:
    """Causal prefill of ``seqs`` prompts of ``isl`` tokens run weight-absorbed (MQA over the latent,
    as for decode): the form of SGLang's MLA context kernel in the aic tables."""
    return MlaAttnOp(ATTN_PREFILL, "attn_prefill", 1, seqs=seqs, q_tokens=seqs * isl, kv_tokens=seqs * isl,
                     pairs=seqs * isl * (isl + 1) // 2, heads=heads, kv_heads=1, head_dim=kv_lora_rank + rope,
                     v_head_dim=kv_lora_rank, latent=True, dtype=dtype, dtype_bytes=dtype_bytes)
