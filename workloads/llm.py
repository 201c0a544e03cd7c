"""Lowering of one serving iteration (prefill chunks + decode rows) to per-layer kernel ops.

Models: the kernels a tensor-parallel decoder runs per iteration — embedding gather, per layer
    RMS/LayerNorm, fused QKV GEMM, rotary embedding, attention (FlashAttention-style varlen
    prefill, paged decode), O projection, all-reduce, residual add, MLP up (gate+up fused),
    activation, MLP down, all-reduce; then the final norm and the LM head for the rows that emit
    a token. Mixture-of-experts MLPs run one GEMM per active expert. Weights are split over the
    tensor-parallel degree (heads, MLP width and vocabulary); KV heads are replicated when there
    are fewer than the TP degree.
Ignores: sampling, the LM-head all-gather, bias adds, MoE routing imbalance (tokens spread evenly
    over active experts).
Sources: Megatron-LM tensor parallelism (Shoeybi et al. 2019); FlashAttention I/O analysis (Dao
    et al. 2022); vLLM PagedAttention (Kwon et al. 2023).
"""

from __future__ import annotations

from dataclasses import dataclass

from workloads.architectures.transformer import TransformerConfig

GEMM, ATTN_PREFILL, ATTN_DECODE, ELEMENTWISE, ALLREDUCE = (
    "gemm", "attn_prefill", "attn_decode", "elementwise", "allreduce")


@dataclass(frozen=True, slots=True)
class Op:
    """One kernel, run ``count`` times per iteration (usually once per layer).

    gemm: C[m,n] = A[m,k] @ B[k,n]; B is a weight. attn_prefill: ``seqs`` sequences, ``q_tokens``
    query tokens in all, ``pairs`` (query, key) pairs after causal masking, ``kv_tokens`` keys
    read. attn_decode: ``seqs`` rows each attending to its context, ``kv_tokens`` keys in all.
    elementwise: ``bytes`` moved. allreduce: ``bytes`` per GPU over ``workers`` GPUs.
    """

    kind: str
    name: str
    count: int = 1
    m: int = 0
    n: int = 0
    k: int = 0
    seqs: int = 0
    q_tokens: int = 0
    kv_tokens: int = 0
    pairs: int = 0
    heads: int = 0
    kv_heads: int = 0
    head_dim: int = 0
    bytes: int = 0
    workers: int = 1
    dtype: str = "bf16"
    dtype_bytes: float = 2.0

    def flops(self) -> float:
        if self.kind == GEMM:
            return 2.0 * self.m * self.n * self.k * self.count
        if self.kind == ATTN_PREFILL:
            return 4.0 * self.heads * self.head_dim * self.pairs * self.count
        if self.kind == ATTN_DECODE:
            return 4.0 * self.heads * self.head_dim * self.kv_tokens * self.count
        return 0.0


@dataclass(frozen=True, slots=True)
class BatchShape:
    """The shape of one iteration: prefill chunks as (tokens, context before the chunk), decode
    rows with their summed context, and the rows that emit a token (for the LM head)."""

    prefill: tuple[tuple[int, int], ...] = ()
    decode_rows: int = 0
    decode_kv: int = 0  # sum over decode rows of the context each attends to (incl. the new token)
    emitting: int = 0


def layer_shards(model: TransformerConfig, tp: int) -> tuple[int, int, int]:
    heads = max(1, model.num_heads // tp)
    kv_heads = max(1, model.num_kv_heads // tp)
    inter = -(-model.intermediate_size // tp)
    return heads, kv_heads, inter


def lower(shape: BatchShape, model: TransformerConfig, tp: int = 1) -> list[Op]:
    """Per-GPU ops of one iteration of ``shape`` on ``model`` split over ``tp`` GPUs."""
    pre_tokens = sum(t for t, _ in shape.prefill)
    dense = dense_ops(pre_tokens + shape.decode_rows, shape.emitting, model, tp)
    if not dense:
        return dense
    return dense[:4] + attention_ops(shape, model, tp) + dense[4:]


def dense_ops(tokens: int, emitting: int, model: TransformerConfig, tp: int = 1) -> list[Op]:
    """Every op of an iteration but attention: they depend only on the token count ``tokens`` and
    the rows that emit a token. The first four are embedding, norm, QKV and rotary (attention runs
    after them); the rest follow attention."""
    d = model.dtype
    b = model.dtype_bytes
    h = model.hidden_size
    hd = model.head_dim
    L = model.num_layers
    heads, kv_heads, inter = layer_shards(model, tp)
    T = tokens
    ops: list[Op] = []
    if T == 0:
        return ops
    act = int(T * h * b)
    ops.append(Op(ELEMENTWISE, "embed", 1, bytes=2 * act, dtype=d, dtype_bytes=b))
    ops.append(Op(ELEMENTWISE, "input_norm", L, bytes=2 * act, dtype=d, dtype_bytes=b))
    qkv_n = (heads + 2 * kv_heads) * hd
    ops.append(Op(GEMM, "qkv_proj", L, m=T, n=qkv_n, k=h, dtype=d, dtype_bytes=b))
    ops.append(Op(ELEMENTWISE, "rope", L, bytes=int(2 * T * (heads + kv_heads) * hd * b), dtype=d, dtype_bytes=b))
    ops.append(Op(GEMM, "o_proj", L, m=T, n=h, k=heads * hd, dtype=d, dtype_bytes=b))
    if tp > 1:
        ops.append(Op(ALLREDUCE, "attn_allreduce", L, bytes=act, workers=tp, dtype=d, dtype_bytes=b))
    ops.append(Op(ELEMENTWISE, "residual_add", L, bytes=3 * act, dtype=d, dtype_bytes=b))
    if not model.parallel_attn_mlp:
        ops.append(Op(ELEMENTWISE, "post_attn_norm", L, bytes=2 * act, dtype=d, dtype_bytes=b))
    up = 2 * inter if model.gated_mlp else inter
    if model.num_experts > 1:
        routed = T * model.experts_per_token
        active = min(model.num_experts, routed)
        m = -(-routed // active)
        ops.append(Op(GEMM, "moe_router", L, m=T, n=model.num_experts, k=h, dtype=d, dtype_bytes=b))
        ops.append(Op(GEMM, "mlp_up", L * active, m=m, n=up, k=h, dtype=d, dtype_bytes=b))
        ops.append(Op(ELEMENTWISE, "mlp_act", L, bytes=int(routed * (up + inter) * b), dtype=d, dtype_bytes=b))
        ops.append(Op(GEMM, "mlp_down", L * active, m=m, n=h, k=inter, dtype=d, dtype_bytes=b))
    else:
        ops.append(Op(GEMM, "mlp_up", L, m=T, n=up, k=h, dtype=d, dtype_bytes=b))
        ops.append(Op(ELEMENTWISE, "mlp_act", L, bytes=int(T * (up + inter) * b), dtype=d, dtype_bytes=b))
        ops.append(Op(GEMM, "mlp_down", L, m=T, n=h, k=inter, dtype=d, dtype_bytes=b))
    if tp > 1:
        ops.append(Op(ALLREDUCE, "mlp_allreduce", L, bytes=act, workers=tp, dtype=d, dtype_bytes=b))
    ops.append(Op(ELEMENTWISE, "residual_add", L, bytes=3 * act, dtype=d, dtype_bytes=b))
    if emitting:
        ops.append(Op(ELEMENTWISE, "final_norm", 1, bytes=int(2 * emitting * h * b), dtype=d, dtype_bytes=b))
        ops.append(Op(GEMM, "lm_head", 1, m=emitting, n=-(-model.vocab_size // tp), k=h, dtype=d, dtype_bytes=b))
    return ops


def attention_ops(shape: BatchShape, model: TransformerConfig, tp: int = 1) -> list[Op]:
    """The attention kernels of one iteration: varlen prefill over the chunks, paged decode."""
    ops: list[Op] = []
    if shape.prefill:
        heads, kv_heads, _ = layer_shards(model, tp)
        pre_tokens = sum(t for t, _ in shape.prefill)
        pairs = sum(t * ctx + t * (t + 1) // 2 for t, ctx in shape.prefill)
        kv_read = sum(t + ctx for t, ctx in shape.prefill)
        ops.append(Op(ATTN_PREFILL, "attn_prefill", model.num_layers, seqs=len(shape.prefill),
                      q_tokens=pre_tokens, kv_tokens=kv_read, pairs=pairs, heads=heads, kv_heads=kv_heads,
                      head_dim=model.head_dim, dtype=model.dtype, dtype_bytes=model.dtype_bytes))
    if shape.decode_rows:
        ops.append(decode_attention(model, tp, shape.decode_rows, shape.decode_kv))
    return ops


def decode_attention(model: TransformerConfig, tp: int, rows: int, kv_tokens: int) -> Op:
    heads, kv_heads, _ = layer_shards(model, tp)
    return Op(ATTN_DECODE, "attn_decode", model.num_layers, seqs=rows, q_tokens=rows, kv_tokens=kv_tokens,
              heads=heads, kv_heads=kv_heads, head_dim=model.head_dim, dtype=model.dtype,
              dtype_bytes=model.dtype_bytes)
