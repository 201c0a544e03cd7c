"""Context (sequence) parallelism of a serving iteration: ring attention over ``cp`` GPU groups.

Models: a replica of ``tp`` GPUs forms ``cp`` context-parallel groups of ``tp / cp`` GPUs; each group
    holds the whole model tensor-parallel over its GPUs (the weights replicated over the groups) and
    ``1 / cp`` of every sequence's K/V (the KV memory split over the groups).
    Prefill: each group takes ``1 / cp`` of every chunk's tokens (zigzag sharding, so the causal
    (query, key) pairs split evenly too) and runs the GEMMs on them; attention is a ring of ``cp``
    steps: in each step a GPU attends its queries to the K/V block it holds (its own first) while
    sending that block to the next group and receiving the previous group's (``cp - 1`` exchanges of
    ``1 / cp`` of the sequence's K/V over the link: ring bytes per GPU = (cp - 1) / cp of the K/V
    bytes the GPU's heads hold). A step lasts the longer of its attention kernel and its transfer.
    Decode stays split: every group computes the decode rows' projections (replicated), attends each
    row's query to its own ``1 / cp`` of the row's K/V, and the groups merge the partial outputs by
    their log-sum-exp (FlashDecoding's split-K merge across GPUs) in two dependent all-reduces: the
    max of the log-sum-exps, then the sum of the rescaled outputs;
    the new token's K/V is stored on one group (round-robin, so the shares stay even).
    ``cp == 1`` is exactly ``workloads.llm.lower``.
Ignores: the SMs a transfer occupies (NCCL send/recv runs on a few SMs beside attention), zigzag's
    uneven per-step causal work (each step is given ``1 / cp`` of a GPU's pairs), passing queries
    instead of K/V when a short chunk attends to a long cached context, MLA, attention variants and
    state-space layers (refused), and combining context parallelism with expert, attention-data or
    pipeline parallelism (refused).
Sources: Liu, Zaharia, Abbeel, "Ring Attention with Blockwise Transformers" (2023) for the ring and
    its compute/transfer overlap; Brandon et al., "Striped Attention" (2023) and Megatron-LM's context
    parallelism (zigzag load balance); Dao et al., "Flash-Decoding" (2023) for the split-K
    log-sum-exp combine used across GPUs in decode.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from workloads.architectures.transformer import TransformerConfig
from workloads.llm import ALLREDUCE, ATTN_PREFILL, BatchShape, Op, _kv_quantized, decode_attention, layer_shards


def _cut(x: int, cp: int) -> int:
    return -(-x // cp)


def unsupported(model: TransformerConfig) -> str:
    """Why ``model`` cannot run context-parallel ('' when it can)."""
    if model.kv_lora_rank:
        return "MLA attention"
    if model.attention is not None or model.linear is not None:
        return "attention variants / state-space layers"
    if getattr(model, "vision", None) is not None:
        return "a vision encoder"
    return ""


def kv_elem_bytes(model: TransformerConfig, scheme: Any = None) -> float:
    """Bytes of one stored K/V element (the quantization scheme's KV format, else the model dtype)."""
    kv = scheme.kv_format(model.dtype_bytes, model.head_dim) if scheme is not None else None
    return float(kv.bytes) if kv is not None else float(model.dtype_bytes)


@dataclass(frozen=True, slots=True)
class Ring:
    """The ring attention of one iteration's prefill chunks on one GPU: ``block`` is the attention
    kernel of one ring step (run ``steps`` times, each over all layers: ``count`` = layers),
    ``send_bytes`` the K/V bytes the GPU sends per step and layer (``steps - 1`` sends)."""

    block: Op
    steps: int
    send_bytes: float

    def ring_bytes(self) -> float:
        """K/V bytes one GPU sends over the whole ring, all layers."""
        return (self.steps - 1) * self.send_bytes * self.block.count


def ring_prefill(shape: BatchShape, model: TransformerConfig, tp: int, cp: int, scheme: Any = None) -> Ring | None:
    """The ring attention of ``shape``'s prefill chunks on one GPU of a ``tp``-GPU replica in ``cp``
    context-parallel groups (None without prefill). Each chunk of ``t`` tokens after ``ctx`` cached
    ones gives a GPU ceil(t / cp) queries, ceil((t + ctx) / cp) keys per block and 1 / cp of its
    causal pairs, split evenly over the ``cp`` steps."""
    if not shape.prefill:
        return None
    g = tp // cp
    heads, kv_heads, _ = layer_shards(model, g)
    q = sum(_cut(t, cp) for t, _ in shape.prefill)
    kv = sum(_cut(t + ctx, cp) for t, ctx in shape.prefill)
    pairs = sum(_cut(_cut(t * ctx + t * (t + 1) // 2, cp), cp) for t, ctx in shape.prefill)
    op = _kv_quantized(Op(ATTN_PREFILL, "attn_prefill" if cp == 1 else "attn_ring", model.num_layers,
                          seqs=len(shape.prefill), q_tokens=q, kv_tokens=kv, pairs=pairs, heads=heads,
                          kv_heads=kv_heads, head_dim=model.head_dim, dtype=model.dtype,
                          dtype_bytes=model.dtype_bytes), model, scheme)
    per_layer = model.kv_elems_per_token(g) / model.num_layers * kv_elem_bytes(model, scheme)
    return Ring(op, cp, kv * per_layer)


def decode_combine(model: TransformerConfig, tp: int, cp: int, rows: int) -> list[Op]:
    """The combine of the decode rows' partial attention outputs over the ``cp`` groups, per layer, as
    NCCL can run it: two dependent all-reduces, the max of the fp32 log-sum-exps (one per head and
    row), then the sum of the outputs each group rescaled by exp(its lse - max) (each GPU's heads);
    each pays its own collective latency. Empty when cp = 1 or no rows."""
    if cp <= 1 or not rows:
        return []
    heads, _, _ = layer_shards(model, tp // cp)
    lse = Op(ALLREDUCE, "cp_combine_lse", model.num_layers, bytes=int(rows * heads * 4), workers=cp,
             dtype="fp32", dtype_bytes=4)
    out = Op(ALLREDUCE, "cp_combine", model.num_layers, bytes=int(rows * heads * model.head_dim * model.dtype_bytes),
             workers=cp, dtype=model.dtype, dtype_bytes=model.dtype_bytes)
    return [lse, out]


def cp_attention_ops(shape: BatchShape, model: TransformerConfig, tp: int, cp: int, scheme: Any = None) -> list[Op]:
    """The attention kernels of one GPU for ``shape`` (one ring step's kernel for prefill, the split
    decode attention and its combine), as ``workloads.llm.attention_ops`` lists them for cp = 1."""
    ops: list[Op] = []
    ring = ring_prefill(shape, model, tp, cp, scheme)
    if ring is not None:
        ops.append(ring.block)
    if shape.decode_rows:
        ops.append(decode_attention(model, tp // cp, shape.decode_rows, _cut(shape.decode_kv, cp), scheme))
        ops += decode_combine(model, tp, cp, shape.decode_rows)
    return ops


def dense_tokens(shape: BatchShape, cp: int) -> int:
    """Rows of one GPU's GEMMs: its share of the prefill tokens plus every decode row (replicated)."""
    return sum(_cut(t, cp) for t, _ in shape.prefill) + shape.decode_rows


__all__ = ["Ring", "cp_attention_ops", "decode_combine", "dense_tokens", "kv_elem_bytes", "ring_prefill",
           "unsupported"]
