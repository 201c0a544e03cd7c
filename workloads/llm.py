"""Lowering of one serving iteration (prefill chunks + decode rows) to per-layer kernel ops.

Models: the kernels a tensor-parallel decoder runs per iteration — embedding gather, per layer
    RMS/LayerNorm, fused QKV GEMM, rotary embedding, attention (FlashAttention-style varlen
    prefill, paged decode), O projection, all-reduce, residual add, MLP up (gate+up fused),
    activation, MLP down, all-reduce; then the final norm and the LM head for the rows that emit
    a token. Weights are split over the
    tensor-parallel degree (heads, MLP width and vocabulary); KV heads are replicated when there
    are fewer than the TP degree.
    With a quantization scheme (duck-typed, see ``lower``) each GEMM carries its weight bytes per
    element (scales and zero points included), tensor-core dtype and CUDA-core dequantization work;
    activation-quantize kernels precede GEMMs with low-precision activations; LLM.int8() runs
    bitsandbytes' kernel sequence (quantize with outlier detection, outlier-column gather, col32
    layout transform, int8 GEMM, 16-bit outlier GEMM, int32 dequantize, add); a KV-quantize kernel writes the new
    tokens' K/V, and attention reads K/V at the quantized width (a per-sequence window of recent
    tokens at full precision, KIVI's residual).
    Mixture-of-experts layers (``moe_ops``): the router, one grouped GEMM per projection over the
    GPU's experts with the token counts ``workloads.moe`` routes to them (skewed popularity and
    expert parallelism included; the busiest GPU sets the time), shared experts as a dense MLP, and
    the leading dense layers of models that have them.
Ignores: sampling, the LM-head all-gather, bias adds, fusion of activation quantization into the
    producing kernel, the MoE kernels' token permute/unpermute gathers (folded into the grouped
    GEMMs' activation reads).
Sources: Megatron-LM tensor parallelism (Shoeybi et al. 2019); FlashAttention I/O analysis (Dao
    et al. 2022); vLLM PagedAttention (Kwon et al. 2023); LLM.int8() (Dettmers et al. 2022), KIVI
    (Liu et al. 2024) for the quantized kernels' structure.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from workloads.architectures.transformer import TransformerConfig

GEMM, ATTN_PREFILL, ATTN_DECODE, ELEMENTWISE, ALLREDUCE, GROUPED, ALLTOALL = (
    "gemm", "attn_prefill", "attn_decode", "elementwise", "allreduce", "grouped_gemm", "alltoall")
# GEMM-like kinds: a grouped GEMM runs one weight matrix per group (expert) in one kernel
GEMM_KINDS = (GEMM, GROUPED)


@dataclass(frozen=True, slots=True)
class Op:
    """One kernel, run ``count`` times per iteration (usually once per layer).

    gemm: C[m,n] = A[m,k] @ B[k,n]; B is a weight. attn_prefill: ``seqs`` sequences, ``q_tokens``
    query tokens in all, ``pairs`` (query, key) pairs after causal masking, ``kv_tokens`` keys
    read. attn_decode: ``seqs`` rows each attending to its context, ``kv_tokens`` keys in all.
    elementwise: ``bytes`` moved. allreduce: ``bytes`` per GPU over ``workers`` GPUs. alltoall:
    ``bytes`` each GPU sends, spread over the other ``workers`` - 1 GPUs (MoE dispatch / combine), for
    ``m`` tokens per GPU of width ``k`` gathered from ``n`` data-parallel groups.
    grouped_gemm: one kernel running ``len(groups)`` GEMMs of ``groups[i]`` rows each against its own
    [k, n] weight (the experts of a MoE layer on one GPU); ``m`` is the rows in all, ``pairs`` the
    (token, expert) pairs of the layer over all expert-parallel GPUs, ``q_tokens`` the layer's tokens and
    ``experts`` the experts the GPU holds (what a fused-MoE kernel picks its tile configuration by).

    Quantization (all 0 = unquantized): gemm ``dtype`` is the tensor-core dtype and ``dtype_bytes``
    the activation width, ``w_bytes`` the weight bytes per element (scales included), ``out_bytes``
    the output width, ``deq_ops`` CUDA-core instructions per weight element each time a CTA loads it
    (weight-only kernels), overlapped with the MMAs when ``deq_overlap``, ``scale_block_k`` the K
    elements per scale block of a block-scaled GEMM (fp8 block: 128; its fp32 partial sums are
    rescaled and accumulated on the CUDA cores at each block boundary). Attention: ``kv_bytes``
    per K/V element, ``kv_residual`` recent tokens per sequence kept at ``dtype_bytes``,
    ``kv_deq_ops`` CUDA-core instructions per K/V element read.
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
    w_bytes: float = 0.0
    out_bytes: float = 0.0
    deq_ops: float = 0.0
    deq_overlap: bool = True
    kv_bytes: float = 0.0
    kv_residual: int = 0
    kv_deq_ops: float = 0.0
    groups: tuple[int, ...] = ()
    scale_block_k: int = 0
    w_dtype: str = ""  # the weights' storage format when quantized (e.g. "mxfp4"; kernels specific to it)
    experts: int = 0  # grouped_gemm: the experts the GPU holds (0: not known)

    def kv_elem_bytes(self, kv: Any) -> Any:
        """Bytes of one K (or V) element summed over ``kv`` tokens (scalar or array): the residual
        window of each sequence at ``dtype_bytes``, the rest at ``kv_bytes``."""
        if not self.kv_bytes:
            return kv * self.dtype_bytes
        full = np.minimum(kv, self.seqs * self.kv_residual)
        return full * self.dtype_bytes + (kv - full) * self.kv_bytes

    def bytes_moved(self) -> float:
        """The minimum HBM bytes of all ``count`` runs (every operand once), as the roofline counts."""
        if self.kind in GEMM_KINDS:
            one = (self.dtype_bytes * self.m * self.k + (self.w_bytes or self.dtype_bytes) * self.k * self.n
                   * self.weights() + (self.out_bytes or self.dtype_bytes) * self.m * self.n)
        elif self.kind == ATTN_PREFILL:
            ctx = self.kv_tokens - self.q_tokens  # earlier chunks' K/V, stored quantized
            one = self.head_dim * (2.0 * self.q_tokens * self.heads * self.dtype_bytes + 2.0 * self.kv_heads * (
                self.q_tokens * self.dtype_bytes + ctx * (self.kv_bytes or self.dtype_bytes)))
        elif self.kind == ATTN_DECODE:
            one = self.head_dim * (2.0 * self.seqs * self.heads * self.dtype_bytes
                                   + 2.0 * self.kv_heads * float(self.kv_elem_bytes(self.kv_tokens)))
        else:
            one = self.bytes
        return float(one) * self.count

    def dequant_ops(self) -> float:
        """CUDA-core dequantization instructions of one run (weights once; K/V as read)."""
        if self.kind in GEMM_KINDS:
            return self.deq_ops * self.k * self.n * self.weights()
        if self.kind in (ATTN_DECODE, ATTN_PREFILL) and self.kv_deq_ops:
            return self.kv_deq_ops * 2.0 * self.kv_heads * self.head_dim * self.kv_tokens
        return 0.0

    def weights(self) -> int:
        """Weight matrices the op reads: one, or one per group of a grouped GEMM."""
        return len(self.groups) if self.kind == GROUPED else 1

    def flops(self) -> float:
        if self.kind in GEMM_KINDS:
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
    decode_ctx: tuple[int, ...] = ()  # each decode row's context when known (attention variants read it)


# GEMMs that share a projection's quantization format (policies.quantization PROJECTIONS)
PROJECTION = {"moe_up": "mlp_up", "moe_down": "mlp_down", "shared_up": "mlp_up", "shared_down": "mlp_down"}


def layer_shards(model: TransformerConfig, tp: int) -> tuple[int, int, int]:
    heads = max(1, model.num_heads // tp)
    kv_heads = max(1, model.num_kv_heads // tp)
    inter = -(-model.intermediate_size // tp)
    return heads, kv_heads, inter


def lower(shape: BatchShape, model: TransformerConfig, tp: int = 1, scheme: Any = None,
          fusion: Any = None, ep: int = 1, dp: int = 1) -> list[Op]:
    """Per-GPU ops of one iteration of ``shape`` on ``model`` split over ``tp`` GPUs.

    ``scheme`` (a quantization policy, duck-typed; None = unquantized) answers
    ``linear(name, model_dtype, model_bytes)`` with None or an object with ``tensor_dtype``,
    ``a_bytes``, ``w_bytes``, ``deq_ops``, ``deq_overlap``, ``act_quant`` and ``outlier_fraction``,
    and ``kv_format(model_bytes, head_dim)`` with None or an object with ``bytes``, ``residual`` and ``deq_ops``.
    ``fusion`` (duck-typed, None = nothing fused) has the booleans ``add_norm`` (residual add fused
    into the next norm), ``rope_in_attention``, ``act_quant_in_producer`` (activation quantization
    fused into the norm / activation kernel producing the GEMM input) and ``allreduce_norm``
    (all-reduce fused with the residual add and norm after it). ``ep``: the experts of a MoE model
    split over that many of the ``tp`` GPUs (``moe_ops``); ``dp``: attention data parallelism
    (``_dense_unquantized``).
    """
    pre_tokens = sum(t for t, _ in shape.prefill)
    pre, post = _dense_parts(pre_tokens + shape.decode_rows, shape.emitting, model, tp, scheme, fusion, ep, dp)
    if not pre:
        return pre
    return pre + attention_ops(shape, model, tp, scheme, dp) + post


def dense_ops(tokens: int, emitting: int, model: TransformerConfig, tp: int = 1, scheme: Any = None,
              fusion: Any = None, ep: int = 1, dp: int = 1) -> list[Op]:
    """Every op of an iteration but attention: they depend only on the token count ``tokens`` and
    the rows that emit a token (``lower`` puts attention after the rotary embedding)."""
    pre, post = _dense_parts(tokens, emitting, model, tp, scheme, fusion, ep, dp)
    return pre + post


def _dense_parts(tokens: int, emitting: int, model: TransformerConfig, tp: int, scheme: Any,
                 fusion: Any = None, ep: int = 1, dp: int = 1) -> tuple[list, list]:
    ops = _dense_unquantized(tokens, emitting, model, tp, ep, dp)
    if not ops:
        return ops, []
    if fusion is not None and getattr(fusion, "shared_experts_in_moe", False) and ep == 1 and dp == 1:
        from workloads.moe import fuse_shared_expert

        ops = fuse_shared_expert(ops)  # the shared expert as one more expert of the fused MoE kernel
    if fusion is not None:
        ops = fuse(ops, fusion, tp)
    cut = next(i for i, op in enumerate(ops) if op.name == "o_proj")  # attention runs before the O projection
    if scheme is None:
        return ops[:cut], ops[cut:]
    pre, post = _quantize(ops[:cut], model, scheme, fusion), _quantize(ops[cut:], model, scheme, fusion)
    kv = scheme.kv_format(model.dtype_bytes, model.head_dim)
    if kv is not None:  # quantize the new tokens' K and V as they are written to the cache
        nbytes = int(-(-tokens // dp) * model.kv_elems_per_token(tp // dp) // model.num_layers
                     * (model.dtype_bytes + kv.bytes))
        pre.append(Op(ELEMENTWISE, "kv_quant", model.num_layers, bytes=nbytes, dtype=model.dtype,
                      dtype_bytes=model.dtype_bytes))
    return pre, post


def fuse(ops: list[Op], fusion: Any, tp: int) -> list[Op]:
    """The unfused op list with a framework's fusions applied (per layer; ``count`` unchanged).

    add_norm: the attention residual add and the post-attention norm become one ``add_norm``
    kernel (read the input and the residual, write both: 4 activations); the MLP residual add folds
    into the next layer's input norm, which becomes an ``add_norm`` too (the last layer's into the
    final norm). allreduce_norm (tp > 1): each all-reduce kernel also adds the residual and
    normalises, so the add and norm after it disappear. rope_in_attention: no rotary kernel.
    """
    fold_ar = bool(fusion.allreduce_norm) and tp > 1
    out: list[Op] = []
    skip = set()
    for i, op in enumerate(ops):
        if i in skip:
            continue
        name = op.name
        nxt = ops[i + 1] if i + 1 < len(ops) else None
        if name == "rope" and fusion.rope_in_attention:
            continue
        if op.kind == ALLREDUCE and fold_ar:
            out.append(replace(op, name=f"{name}_add_norm"))
            if nxt is not None and nxt.name == "residual_add":
                skip.add(i + 1)
                if i + 2 < len(ops) and ops[i + 2].name == "post_attn_norm":
                    skip.add(i + 2)
            continue
        if name == "input_norm" and (fold_ar or fusion.add_norm):
            if not fold_ar:  # fused with the previous layer's MLP residual add: 4 activations
                out.append(replace(op, name="add_norm", bytes=2 * op.bytes))
            continue
        if name == "residual_add" and fusion.add_norm:
            if nxt is not None and nxt.name == "post_attn_norm":
                act = op.bytes // 3
                out.append(replace(nxt, name="add_norm", bytes=op.bytes + nxt.bytes - act))
                skip.add(i + 1)
            continue  # the MLP residual add: folded into the next input norm
        out.append(op)
    return out


def _quantize(ops: list[Op], model: TransformerConfig, scheme: Any, fusion: Any = None) -> list[Op]:
    """Each GEMM at the scheme's precision, with its activation-quantize / outlier kernels (the
    quantize kernel left out for GEMMs whose input comes from a norm or the activation when
    ``fusion.act_quant_in_producer``: that kernel writes the quantized input itself; for per-group
    (block-scaled) formats when ``fusion.group_act_quant_in_producer``, unset: the same)."""
    fused_quant = bool(fusion is not None and fusion.act_quant_in_producer)
    fused_group = getattr(fusion, "group_act_quant_in_producer", None)
    fused_group = fused_quant if fused_group is None else bool(fused_group)
    per_row = fusion is None or getattr(fusion, "per_token_act_quant", True)
    out: list[Op] = []
    b = model.dtype_bytes
    for op in ops:
        fmt = scheme.linear(PROJECTION.get(op.name, op.name), model.dtype, b) if op.kind in GEMM_KINDS else None
        if fmt is None:
            out.append(op)
            continue
        outliers = int(round(fmt.outlier_fraction * op.k)) if fmt.outlier_fraction else 0
        fused = fused_group if getattr(fmt, "scale_block_k", 0) else fused_quant
        if fmt.act_quant and not (fused and op.name in ("qkv_proj", "mlp_up", "mlp_down") and not outliers):
            # read the 16-bit input (twice with outlier detection), write it quantized
            reads = 2 if outliers else 1
            # per-group scales (block-scaled fp8): one pass, no global amax: a plain memory-bound kernel
            group = "_group" if getattr(fmt, "scale_block_k", 0) else ""
            out.append(Op(ELEMENTWISE, f"{op.name}_quant{group}", op.count, m=op.m if per_row else 0,
                          bytes=int(op.m * op.k * (reads * b + fmt.a_bytes)),
                          dtype=model.dtype, dtype_bytes=b))
        if outliers:  # bitsandbytes: gather the outlier columns, transform the int8 input to col32 layout
            out.append(Op(ELEMENTWISE, f"{op.name}_extract", op.count, bytes=int(2 * op.m * outliers * b),
                          dtype=model.dtype, dtype_bytes=b))
            out.append(Op(ELEMENTWISE, f"{op.name}_transform", op.count, bytes=int(2 * op.m * op.k * fmt.a_bytes),
                          dtype=model.dtype, dtype_bytes=b))
        out.append(replace(op, dtype=fmt.tensor_dtype, dtype_bytes=fmt.a_bytes, w_bytes=fmt.w_bytes, out_bytes=b
                           if fmt.a_bytes != b else 0.0, deq_ops=fmt.deq_ops, deq_overlap=fmt.deq_overlap,
                           scale_block_k=getattr(fmt, "scale_block_k", 0), w_dtype=getattr(fmt, "w_dtype", "")))
        if outliers:  # LLM.int8(): the outlier columns in 16 bit (weights' rows dequantized), int32 -> 16 bit, add
            out.append(Op(GEMM, f"{op.name}_outliers", op.count, m=op.m, n=op.n, k=outliers, dtype=model.dtype,
                          dtype_bytes=b, w_bytes=fmt.w_bytes, deq_ops=1.0))
            out.append(Op(ELEMENTWISE, f"{op.name}_dequant", op.count, bytes=int(op.m * op.n * (4 + b)),
                          dtype=model.dtype, dtype_bytes=b))
            out.append(Op(ELEMENTWISE, f"{op.name}_add", op.count, bytes=int(3 * op.m * op.n * b),
                          dtype=model.dtype, dtype_bytes=b))
    return out


def _mlp(tokens: int, width: int, count: int, model: TransformerConfig, prefix: str) -> list[Op]:
    """A dense (gated) MLP of ``width`` per GPU: up (gate+up fused), activation, down."""
    d, b, h = model.dtype, model.dtype_bytes, model.hidden_size
    up = 2 * width if model.gated_mlp else width
    return [Op(GEMM, f"{prefix}_up", count, m=tokens, n=up, k=h, dtype=d, dtype_bytes=b),
            Op(ELEMENTWISE, f"{prefix}_act", count, bytes=int(tokens * (up + width) * b), dtype=d, dtype_bytes=b),
            Op(GEMM, f"{prefix}_down", count, m=tokens, n=h, k=width, dtype=d, dtype_bytes=b)]


def moe_ops(tokens: int, model: TransformerConfig, tp: int = 1, ep: int = 1,
            shared: tuple[int, int] | None = None) -> list[Op]:
    """The MoE layers' MLP on one GPU of a ``tp``-GPU replica whose experts are split ``ep`` ways
    (expert parallel) and each expert ``tp / ep`` ways (tensor parallel inside the expert). Every GPU
    holds all ``tokens`` (the attention output is all-reduced), runs the router, then one grouped
    GEMM over its own experts' tokens (the busiest GPU's, as ``workloads.moe`` routes them), the
    activation, the down grouped GEMM and the weighted sum of each token's top-k outputs; shared
    experts run as a dense MLP on every token. The all-reduce after the MLP combines the GPUs'
    partial outputs, as with a dense MLP. ``shared``: (tokens, tensor-parallel GPUs) of the shared
    experts when they differ (attention data parallelism: each group runs its own tokens')."""
    from workloads.moe import busiest_rank

    d, b, h = model.dtype, model.dtype_bytes, model.hidden_size
    count = model.moe_layers
    moe_tp = tp // ep
    width = -(-model.expert_intermediate // moe_tp)
    up = 2 * width if model.gated_mlp else width
    groups = busiest_rank(tokens, model.num_experts, model.experts_per_token, ep, model.routing)
    routed = sum(groups)
    s_tokens, s_tp = shared or (tokens, tp)  # the GPU's own tokens (route them, run the shared experts)
    ops = [Op(GEMM, "moe_router", count, m=s_tokens, n=model.num_experts, k=h, dtype=d, dtype_bytes=b)]
    if routed:
        pairs = tokens * model.experts_per_token  # (token, expert) pairs over all GPUs (kernel families that
        # keep a cache row per pair whatever the expert parallelism pay for the others' too: timing backend)
        local = model.num_experts // ep
        ops += [Op(GROUPED, "moe_up", count, m=routed, n=up, k=h, dtype=d, dtype_bytes=b, groups=groups, pairs=pairs,
                   q_tokens=tokens, experts=local),
                Op(ELEMENTWISE, "moe_act", count, bytes=int(routed * (up + width) * b), dtype=d, dtype_bytes=b),
                Op(GROUPED, "moe_down", count, m=routed, n=h, k=width, dtype=d, dtype_bytes=b, groups=groups,
                   pairs=pairs, q_tokens=tokens, experts=local)]
    # the top-k outputs of each token, weighted and summed (tokens whose experts are elsewhere add 0)
    ops.append(Op(ELEMENTWISE, "moe_sum", count, bytes=int((routed + tokens) * h * b), dtype=d, dtype_bytes=b))
    if model.shared_intermediate:
        ops += _mlp(s_tokens, -(-model.shared_intermediate // s_tp), count, model, "shared")
    return ops


def _dense_unquantized(tokens: int, emitting: int, model: TransformerConfig, tp: int = 1, ep: int = 1,
                       dp: int = 1) -> list[Op]:
    """``dp`` > 1 (attention data parallelism): the ``tp`` GPUs form ``dp`` groups of ``tp / dp``; each
    group runs attention and the dense layers tensor-parallel on its ``1 / dp`` of the tokens (an
    even split), and the MoE layers dispatch every token to the GPUs holding its experts and
    combine the results back (all-to-all over the ``tp`` GPUs)."""
    d = model.dtype
    b = model.dtype_bytes
    h = model.hidden_size
    hd = model.head_dim
    L = model.num_layers
    T_all = tokens
    tp_all, tp = tp, tp // dp  # the MoE's GPUs; attention's tensor-parallel group
    T, emitting = -(-tokens // dp), -(-emitting // dp)
    heads, kv_heads, inter = layer_shards(model, tp)
    ops: list[Op] = []
    if T == 0:
        return ops
    act = int(T * h * b)
    ops.append(Op(ELEMENTWISE, "embed", 1, bytes=2 * act, dtype=d, dtype_bytes=b))
    ops.append(Op(ELEMENTWISE, "input_norm", L, bytes=2 * act, dtype=d, dtype_bytes=b))
    if model.kv_lora_rank:  # multi-head latent attention (DeepSeek): its own projections (workloads.mla)
        from workloads.mla import projection_ops

        ops += projection_ops(T, model, tp)
    else:
        qkv_n = (heads + 2 * kv_heads) * hd
        ops.append(Op(GEMM, "qkv_proj", L, m=T, n=qkv_n, k=h, dtype=d, dtype_bytes=b))
        ops.append(Op(ELEMENTWISE, "rope", L, bytes=int(2 * T * (heads + kv_heads) * hd * b), dtype=d,
                      dtype_bytes=b))
    ops.append(Op(GEMM, "o_proj", L, m=T, n=h, k=heads * hd, dtype=d, dtype_bytes=b))
    if tp > 1:
        ops.append(Op(ALLREDUCE, "attn_allreduce", L, bytes=act, workers=tp, dtype=d, dtype_bytes=b))
    ops.append(Op(ELEMENTWISE, "residual_add", L, bytes=3 * act, dtype=d, dtype_bytes=b))
    if not model.parallel_attn_mlp:
        ops.append(Op(ELEMENTWISE, "post_attn_norm", L, bytes=2 * act, dtype=d, dtype_bytes=b))
    dense = model.first_dense_layers if model.is_moe else L
    if dense:
        ops += _mlp(T, inter, dense, model, "mlp")
    if model.is_moe and dp == 1:
        ops += moe_ops(T, model, tp, ep)
    elif model.is_moe:  # DP attention: dispatch each token's hidden state to its top-k experts' GPUs and back
        from workloads.moe import dispatch_copies

        copies = dispatch_copies(model.experts_per_token, ep, tp_all // ep)
        sent = int(T * copies * h * b * (tp_all - 1) / tp_all)
        # k, n: the hidden width and the dp groups, for engines that all-gather every group's tokens instead
        # (and reduce-scatter the outputs back): the timing backend's moe_a2a says which
        ops.append(Op(ALLTOALL, "moe_dispatch", model.moe_layers, m=T, n=dp, k=h, bytes=sent, workers=tp_all,
                      dtype=d, dtype_bytes=b))
        ops += moe_ops(T_all, model, tp_all, ep, shared=(T, tp))
        ops.append(Op(ALLTOALL, "moe_combine", model.moe_layers, m=T, n=dp, k=h, bytes=sent, workers=tp_all,
                      dtype=d, dtype_bytes=b))
    if tp > 1:
        ops.append(Op(ALLREDUCE, "mlp_allreduce", L, bytes=act, workers=tp, dtype=d, dtype_bytes=b))
    ops.append(Op(ELEMENTWISE, "residual_add", L, bytes=3 * act, dtype=d, dtype_bytes=b))
    if emitting:
        ops.append(Op(ELEMENTWISE, "final_norm", 1, bytes=int(2 * emitting * h * b), dtype=d, dtype_bytes=b))
        ops.append(Op(GEMM, "lm_head", 1, m=emitting, n=-(-model.vocab_size // tp), k=h, dtype=d, dtype_bytes=b))
    if model.linear is not None:  # hybrid: the state-space layers' own projections (workloads.variant_ops)
        from workloads.variant_ops import hybrid_dense

        ops = hybrid_dense(ops, model, T, tp)
    return ops


def attention_ops(shape: BatchShape, model: TransformerConfig, tp: int = 1, scheme: Any = None,
                  dp: int = 1) -> list[Op]:
    """The attention kernels of one iteration: varlen prefill over the chunks, paged decode.
    ``dp`` > 1: one of ``dp`` attention groups of ``tp / dp`` GPUs, holding ``1 / dp`` of the
    sequences (an even split of the iteration's work)."""
    if dp > 1:
        return [per_group(op, dp) for op in attention_ops(shape, model, tp // dp, scheme)]
    if model.attention is not None or model.linear is not None or model.vision is not None:  # workloads.variant_ops
        from workloads.variant_ops import attention_ops as variant_attention_ops

        return variant_attention_ops(shape, model, tp, scheme)
    ops: list[Op] = []
    if shape.prefill and model.kv_lora_rank:  # MLA: KV up-projection, then MHA (workloads.mla)
        from workloads.mla import prefill_ops

        ops += prefill_ops(shape, model, tp, scheme)
    elif shape.prefill:
        heads, kv_heads, _ = layer_shards(model, tp)
        pre_tokens = sum(t for t, _ in shape.prefill)
        pairs = sum(t * ctx + t * (t + 1) // 2 for t, ctx in shape.prefill)
        kv_read = sum(t + ctx for t, ctx in shape.prefill)
        ops.append(_kv_quantized(Op(ATTN_PREFILL, "attn_prefill", model.num_layers, seqs=len(shape.prefill),
                                    q_tokens=pre_tokens, kv_tokens=kv_read, pairs=pairs, heads=heads,
                                    kv_heads=kv_heads, head_dim=model.head_dim, dtype=model.dtype,
                                    dtype_bytes=model.dtype_bytes), model, scheme))
    if shape.decode_rows:
        ops.append(decode_attention(model, tp, shape.decode_rows, shape.decode_kv, scheme))
    return ops


def per_group(op: Op, dp: int) -> Op:
    """``op`` of a whole iteration cut to one of ``dp`` data-parallel groups' even share."""
    def cut(x: int) -> int:
        return -(-x // dp)

    if op.kind in (ATTN_PREFILL, ATTN_DECODE):
        return replace(op, seqs=cut(op.seqs), q_tokens=cut(op.q_tokens), kv_tokens=cut(op.kv_tokens),
                       pairs=cut(op.pairs))
    if op.kind == GEMM:
        return replace(op, m=cut(op.m))
    return replace(op, bytes=cut(op.bytes))


def decode_attention(model: TransformerConfig, tp: int, rows: int, kv_tokens: int, scheme: Any = None) -> Op:
    if model.kv_lora_rank:  # MLA: absorbed MQA over the latent (workloads.mla)
        from workloads.mla import decode_op

        return decode_op(model, tp, rows, kv_tokens, scheme)
    heads, kv_heads, _ = layer_shards(model, tp)
    return _kv_quantized(Op(ATTN_DECODE, "attn_decode", model.num_layers, seqs=rows, q_tokens=rows,
                            kv_tokens=kv_tokens, heads=heads, kv_heads=kv_heads, head_dim=model.head_dim,
                            dtype=model.dtype, dtype_bytes=model.dtype_bytes), model, scheme)


def _kv_quantized(op: Op, model: TransformerConfig, scheme: Any) -> Op:
    kv = scheme.kv_format(model.dtype_bytes, model.head_dim) if scheme is not None else None
    if kv is None:
        return op
    return replace(op, kv_bytes=kv.bytes, kv_residual=kv.residual, kv_deq_ops=kv.deq_ops)
