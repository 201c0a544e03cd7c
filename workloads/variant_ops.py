"""Lowering of attention variants and linear / state-space layers to kernel ops.

Models: ``attention_ops`` splits an iteration's attention into one op per group of layers and KV
    heads that read the same keys (``workloads.attention_variants.groups``): each op has the
    group's layer count, its heads and the keys they read (a window's ``min(context, window +
    sinks)``, a budget's kept tokens at decode, a top-k selection's ``topk_tokens`` plus its
    ``attn_select`` kernel, a block-sparse prefill's share of the pairs plus its
    ``attn_sparse_index`` estimate); the state-space layers' mixers (``workloads.linear_attention``)
    follow: the chunked scan at prefill, the state update at decode. ``hybrid_dense`` gives the
    per-token ops of a hybrid: the attention projections on the attention layers only, the
    linear layers' projections, convolution and gated norm on theirs.
    ``decode_attention_s`` times decode attention for many context sums at once (a decode
    stretch of the serving loop), each row at the mean context.
Ignores: see ``workloads.attention_variants`` and ``workloads.linear_attention``.
Sources: as those modules.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import numpy as np

from workloads.attention_variants import FULL, STATE, WINDOW, group_kv_heads, groups, layer_kinds, window_pairs
from workloads.llm import ATTN_DECODE, ATTN_PREFILL, ELEMENTWISE, GEMM, BatchShape, Op, _kv_quantized, layer_shards

Q_TILE = 128  # FlashAttention-2's query tile (Br) for head widths up to 128 (flash_fwd_launch_template.h)


def attention_layers(model: Any) -> int:
    kinds = layer_kinds(model)
    return kinds.count(FULL) + kinds.count(WINDOW)


def state_layers(model: Any) -> int:
    return layer_kinds(model).count(STATE)


def _heads(model: Any, tp: int, kvh: int) -> tuple[int, int]:
    """(query heads, KV heads) of a group holding ``kvh`` of the busiest GPU's KV heads."""
    heads, kv_heads, _ = layer_shards(model, tp)
    return kvh * max(1, heads // kv_heads), kvh


def _mean_ctx(rows: int, kv: int, ctx: tuple[int, ...]) -> list[float]:
    if ctx:
        return list(ctx)
    return [kv / rows] * rows if rows else []


def _decode_heads(model: Any, tp: int) -> dict[str, int]:
    """KV heads each group's decode op covers: the density groups (which differ only at prefill) as one
    decode over all their heads, carried by the first of them that has heads; the others none."""
    out = {g.name: kvh for g, kvh in zip(groups(model), group_kv_heads(model, tp))}
    dens = [name for name in out if name.startswith("full_d")]
    carrier = next((name for name in dens if out[name]), None)
    if carrier is not None:
        total = sum(out[name] for name in dens)
        out.update({name: 0 for name in dens})
        out[carrier] = total
    return out


def attention_ops(shape: BatchShape, model: Any, tp: int = 1, scheme: Any = None) -> list[Op]:
    """Attention (and state-space mixer) ops of one iteration of ``shape`` on one of ``tp`` GPUs."""
    ops: list[Op] = []
    dec_heads = _decode_heads(model, tp)
    d, b, hd = model.dtype, model.dtype_bytes, model.head_dim
    v = model.attention
    dec_ctx = _mean_ctx(shape.decode_rows, shape.decode_kv, getattr(shape, "decode_ctx", ()))
    for g, kvh in zip(groups(model), group_kv_heads(model, tp)):
        heads, kvh = _heads(model, tp, kvh)
        if not kvh:
            continue
        if shape.prefill:
            cap = None if g.prefill_full else g.cap
            pairs = keys = 0
            for t, ctx in shape.prefill:
                p, k = window_pairs(t, ctx, cap)
                pairs, keys = pairs + p, keys + k
            name = "attn_prefill" if g.name == "full" else f"attn_prefill_{g.name}"
            seqs, q = len(shape.prefill), sum(t for t, _ in shape.prefill)
            if g.density < 1.0:
                pairs = int(round(pairs * g.density))
                name = "attn_prefill_sparse" + ("" if g.name == "full" else "_" + g.name.removeprefix("full_"))
            if g.density < 1.0 or (cap is not None and any(cap < t + c for t, c in shape.prefill)):
                # each query tile reads only its own key blocks (a window's, the sparse index's): the op
                # as one sequence per tile whose keys are that tile's, so the kernel model re-reads nothing
                seqs = sum(-(-t // Q_TILE) for t, _ in shape.prefill)
                keys = max(q, -(-pairs // Q_TILE))
                if g.density >= 1.0:  # the window's lower edge cuts key blocks the kernel computes in full, as
                    pairs += seqs * Q_TILE * Q_TILE // 2  # the diagonal's (which the kernel model adds itself)
            op = _kv_quantized(Op(ATTN_PREFILL, name, g.layers, seqs=seqs, q_tokens=q, kv_tokens=keys, pairs=pairs,
                                  heads=heads, kv_heads=kvh, head_dim=hd, dtype=d, dtype_bytes=b), model, scheme)
            if g.prefill_full:  # budgets are kept after the prompt: their layers' prefill is one full-prompt op
                same = next((i for i, o in enumerate(ops) if o.name == "attn_prefill"
                             and replace(o, count=g.layers) == replace(op, name=o.name)), None)
                op = replace(op, name="attn_prefill")
                if same is not None:
                    ops[same] = replace(ops[same], count=ops[same].count + g.layers)
                    op = None
            if op is not None:
                ops.append(op)
            if g.density < 1.0 and v.sparse_index_queries:  # MInference: last queries x every key
                nq = [min(t, v.sparse_index_queries) for t, _ in shape.prefill]
                ops.append(Op(ATTN_PREFILL, "attn_sparse_index", g.layers, seqs=len(nq), q_tokens=sum(nq),
                              kv_tokens=sum(t + c for t, c in shape.prefill),
                              pairs=sum(q * (t + c) for q, (t, c) in zip(nq, shape.prefill)),
                              heads=heads, kv_heads=kvh, head_dim=hd, dtype=d, dtype_bytes=b))
        if shape.decode_rows and dec_heads[g.name]:
            heads, kvh = _heads(model, tp, dec_heads[g.name])
            read = int(round(sum(g.read_decode(c) for c in dec_ctx)))
            if g.topk is not None:  # Quest: score one min and one max key per page, then read the top-k
                pages = int(sum(np.ceil(c / v.topk_page_tokens) for c in dec_ctx))  # as decode_attention_s
                ops.append(Op(ATTN_DECODE, "attn_select", g.layers, seqs=shape.decode_rows, q_tokens=shape.decode_rows,
                              kv_tokens=pages, heads=heads, kv_heads=kvh, head_dim=hd, dtype=d, dtype_bytes=b))
            name = "attn_decode" if g.name == "full" or g.name.startswith("full_d") else f"attn_decode_{g.name}"
            ops.append(_kv_quantized(Op(ATTN_DECODE, name, g.layers, seqs=shape.decode_rows,
                                        q_tokens=shape.decode_rows, kv_tokens=read, heads=heads, kv_heads=kvh,
                                        head_dim=hd, dtype=d, dtype_bytes=b), model, scheme))
    if model.linear is not None and state_layers(model):
        ops += mixer_ops(shape, model, tp)
    vision = getattr(model, "vision", None)
    if vision is not None and vision.images_per_request:  # a request's images, encoded with its first chunk
        from workloads.vision import encoder_ops

        firsts = sum(1 for _, ctx in shape.prefill if ctx == 0)
        ops = encoder_ops(firsts * vision.images_per_request, vision, model.hidden_size, d, b, tp) + ops
    return ops


def mixer_ops(shape: BatchShape, model: Any, tp: int = 1) -> list[Op]:
    """The state-space layers' sequence mixer: chunked scan at prefill, state update at decode."""
    lin = model.linear
    n = state_layers(model)
    d, b = model.dtype, model.dtype_bytes
    heads = max(1, lin.num_heads // tp)
    groups_ = max(1, lin.num_groups // tp)
    sb = lin.state_dtype_bytes
    state = lin.state_elems(tp)
    ops: list[Op] = []
    if shape.prefill:
        Q = lin.chunk_size
        lens = [min(Q, t - i) for t, _ in shape.prefill for i in range(0, t, Q)]
        T = sum(lens)
        N, P = lin.state_dim, lin.head_dim
        # inside each chunk: a masked Q x Q attention-like product per head (keys N wide, values P wide)
        ops.append(Op(ATTN_PREFILL, "ssm_chunk_scan", n, seqs=len(lens), q_tokens=T, kv_tokens=T,
                      pairs=sum(x * x for x in lens), heads=heads, kv_heads=groups_, head_dim=(N + P) // 2,
                      dtype=d, dtype_bytes=b))
        # between chunks: each chunk's state K^T V (N x P per head) and its read-back Q H, as batched GEMMs
        ops.append(Op(GEMM, "ssm_chunk_state_gemm", n, m=len(lens) * heads * N, n=P, k=Q, dtype=d, dtype_bytes=b))
        ops.append(Op(GEMM, "ssm_chunk_output_gemm", n, m=T * heads, n=P, k=N, dtype=d, dtype_bytes=b))
        # chunk states written, passed on and read back (fp32 in the SSD kernels), final state stored
        chunk_states = len(lens) * heads * N * P
        ops.append(Op(ELEMENTWISE, "ssm_chunk_state", n, bytes=int(chunk_states * 4 * 2 + len(shape.prefill) * state
                                                                   * sb), dtype=d, dtype_bytes=b))
    if shape.decode_rows:  # read and write each row's state and conv state; the new token's x, B, C, dt, y
        per_row = 2 * state * sb + (-(-lin.conv_dim // tp) + 2 * heads * lin.head_dim) * b
        # one CTA per (row, head), as the recurrent-update kernels launch (a per-row bandwidth cap each)
        ops.append(Op(ELEMENTWISE, "ssm_update", n, m=shape.decode_rows * heads, bytes=int(shape.decode_rows * per_row),
                      dtype=d, dtype_bytes=b))
    return ops


def hybrid_dense(ops: list[Op], model: Any, tokens: int, tp: int) -> list[Op]:
    """The per-token ops of a model with state-space layers: attention projections counted on the
    attention layers, the linear layers' projections and convolution before the O projection (where
    attention runs), their gated norm and output projection after it."""
    n_s = state_layers(model)
    if not n_s or model.linear is None:
        return ops
    lin = model.linear
    n_a = model.num_layers - n_s
    d, b, h = model.dtype, model.dtype_bytes, model.hidden_size
    inner = -(-lin.inner // tp)
    conv = -(-lin.conv_dim // tp)
    pre = [Op(GEMM, "ssm_in_proj", n_s, m=tokens, n=-(-lin.in_proj_width() // tp), k=h, dtype=d, dtype_bytes=b),
           Op(ELEMENTWISE, "ssm_conv", n_s, bytes=int(2 * tokens * conv * b), dtype=d, dtype_bytes=b)]
    post = [Op(ELEMENTWISE, "ssm_gate_norm", n_s, bytes=int(3 * tokens * inner * b), dtype=d, dtype_bytes=b),
            Op(GEMM, "ssm_out_proj", n_s, m=tokens, n=h, k=inner, dtype=d, dtype_bytes=b)]
    out: list[Op] = []
    for op in ops:
        if op.name in ("qkv_proj", "rope"):
            op = replace(op, count=n_a)
        if op.name == "o_proj":
            out += pre
            out.append(replace(op, count=n_a))
            out += post
            continue
        out.append(op)
    return out


def decode_attention_s(backend: Any, model: Any, tp: int, rows: int, kv: np.ndarray, scheme: Any = None
                       ) -> tuple[np.ndarray, np.ndarray]:
    """(seconds, FLOPs) of the decode attention and state updates of ``rows`` rows for each
    summed context in ``kv`` (each row at the mean context)."""
    kv = np.asarray(kv, dtype=np.float64)
    mean = kv / max(rows, 1)
    t = np.zeros_like(kv)
    fl = np.zeros_like(kv)
    v = model.attention
    dec_heads = _decode_heads(model, tp)
    for g in groups(model):
        kvh = dec_heads[g.name]
        heads, kvh = _heads(model, tp, kvh)
        if not kvh:
            continue
        tmpl = _kv_quantized(Op(ATTN_DECODE, "attn_decode", g.layers, seqs=rows, q_tokens=rows, kv_tokens=0,
                                heads=heads, kv_heads=kvh, head_dim=model.head_dim, dtype=model.dtype,
                                dtype_bytes=model.dtype_bytes), model, scheme)
        if g.topk is not None:
            read = np.minimum(mean, g.topk)
            pages = rows * np.ceil(mean / v.topk_page_tokens)
            sel = replace(tmpl, name="attn_select", kv_heads=kvh)
            t += backend.decode_attention_s(sel, pages.astype(np.int64))
            fl += 4.0 * heads * model.head_dim * pages * g.layers
        elif g.cap is not None:
            read = np.minimum(mean, g.cap)
        elif g.frac is not None:
            read = np.ceil(g.frac * mean)
        else:
            read = mean
        keys = np.rint(read * rows).astype(np.int64)
        t += backend.decode_attention_s(tmpl, keys)
        fl += 4.0 * heads * model.head_dim * keys * g.layers
    if model.linear is not None and state_layers(model):
        for op in mixer_ops(BatchShape(decode_rows=rows), model, tp):
            t += backend.op_s(op)
    return t, fl
