"""Lowering of one training micro-batch on one pipeline stage: forward, backward, recompute, optimizer.

Models: the forward ops of a stage's layers are the serving lowering's (``workloads.llm.lower`` on a
    prefill of ``micro_batch`` sequences of ``seq_len`` tokens, split over ``tp`` GPUs), with the
    embedding only on the first stage and the final norm, LM head and cross-entropy only on the last
    (every token produces a logit). The backward of each GEMM C = A @ B is two GEMMs of the same
    FLOPs (dgrad dA = dC @ B^T, wgrad dB = A^T @ dC), so backward GEMM FLOPs are 2x the forward's;
    attention backward is FlashAttention-2's (5 matmuls against the forward's 2: 2.5x the forward's
    FLOPs, Dao 2023: the scores S = Q K^T recomputed) or, unfused (scores stored), 4 matmuls (2x);
    model FLOPs (MFU) count every backward at 2x its forward, FlashAttention-2's recomputed scores
    only in the hardware FLOPs (HFU), as activation recompute; a memory-bound kernel's backward moves
    twice its forward bytes (the saved input and the incoming gradient in, the gradient out); each
    tensor-parallel all-reduce has its conjugate in the backward (Megatron's f / g operators).
    Recompute (Korthikanti et al. 2022): full re-runs every layer's forward before its backward;
    selective re-runs core attention.
    Expert parallelism wider than the tensor-parallel group (``ep`` = k x ``tp``, the extra factor
    taken from the data-parallel ranks) runs the serving lowering's attention-data-parallel layout:
    attention and dense layers tensor-parallel over ``tp``, each token dispatched to its top-k
    experts' GPUs and combined back by all-to-all over the ``ep`` GPUs, each GPU holding whole
    experts. Sequence parallelism splits the norms, residual adds and dropouts over the ``tp`` GPUs and
    turns each tensor-parallel all-reduce into a reduce-scatter and an all-gather of (n - 1) / n of its
    bytes each (``sp_collective_bytes``; timed on the TP link by the step); context parallelism splits
    each sequence ``cp`` ways (Megatron-Core's causal load balancing: 2 cp chunks, rank i holding
    chunks i and 2 cp - 1 - i, so each GPU computes 1/cp of the query-key pairs and every step of the
    ring the same share); the ring exchanges each GPU's K/V block cp - 1 times per attention pass
    (``ring_send_bytes``; the serving lowering's ``workloads.context_parallel.ring_prefill``).
    fp8 runs every GEMM but the LM head on the fp8 tensor path with a cast kernel per input
    (Transformer Engine's recipe). The optimizer step (Adam) is one memory-bound pass over the GPU's
    parameters: fp32 master weight, two moments and the gradient in, master, moments and the model
    copy out.
    Activation memory per layer generalises Korthikanti et al.'s count (34 s b h + 5 a s^2 b bytes
    for a GPT layer in 16-bit: 10 sbh outside the tensor-parallel region, 24 sbh inside, 5 a s^2 b
    for the attention scores) to GQA and gated MLPs; a FlashAttention kernel stores no scores, only
    the per-head log-sum-exp.
Ignores: dropout kernels (Megatron fuses them into bias-dropout-add), gradient clipping and loss
    scaling, the fp8 amax bookkeeping, MoE routing imbalance in the backward (the forward's routed
    counts are reused), the embedding's tied-weight all-reduce across the first and last stages.
Sources: Narayanan et al., "Efficient Large-Scale Language Model Training on GPU Clusters Using
    Megatron-LM" (SC21); Korthikanti et al., "Reducing Activation Recomputation in Large Transformer
    Models" (2022); Dao, "FlashAttention-2" (2023); Rajbhandari et al., "ZeRO" (SC20) for the mixed
    precision Adam state (16 bytes per parameter); Micikevicius et al., "FP8 Formats for Deep
    Learning" (2022).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from workloads.architectures.transformer import TransformerConfig
from workloads.context_parallel import ring_prefill
from workloads.llm import (
    ALLREDUCE,
    ALLTOALL,
    ATTN_PREFILL,
    ELEMENTWISE,
    GEMM,
    GEMM_KINDS,
    GROUPED,
    BatchShape,
    Op,
    attention_ops,
    dense_ops,
)

# names of the ops sequence parallelism splits over the tensor-parallel GPUs (outside the TP region)
SP_SPLIT = ("input_norm", "post_attn_norm", "residual_add", "add_norm")
# ops that run once per stage, not once per layer (never recomputed)
STAGE_OPS = ("embed", "final_norm", "lm_head", "cross_entropy")
# FlashAttention-2 backward: 5 matmuls (S = Q K^T recomputed, dV, dP, dQ, dK) against the forward's 2
ATTN_BWD_FLOP_RATIO = 2.5
# unfused attention backward (scores stored): dV = P^T dO, dP = dO V^T, dQ = dS K, dK = dS^T Q, 4 matmuls
UNFUSED_ATTN_BWD_FLOP_RATIO = 2.0
# Adam state per parameter: fp32 master weight, first and second moment (Rajbhandari et al. 2020, K = 12)
ADAM_STATE_BYTES = 12.0
SGD_STATE_BYTES = 8.0  # fp32 master weight and momentum


@dataclass(frozen=True)
class StageShape:
    """One pipeline stage's share of a micro-batch: ``layers`` transformer layers (``dense_layers``
    of them with a dense MLP in a MoE model), whether it holds the embedding / the LM head."""

    layers: int
    first: bool
    last: bool
    dense_layers: int = 0


@dataclass(frozen=True)
class TrainShape:
    micro_batch: int
    seq_len: int
    tp: int = 1
    cp: int = 1
    ep: int = 1
    sequence_parallel: bool = False
    precision: str = "bf16"  # bf16 | fp8
    recompute: str = "none"  # none | selective | full

    @property
    def tokens(self) -> int:
        """Tokens of one micro-batch on one GPU (its share of each sequence under context parallelism)."""
        return self.micro_batch * (-(-self.seq_len // self.cp))


def stage_model(model: TransformerConfig, stage: StageShape) -> TransformerConfig:
    """``model`` cut to one stage's layers (the serving lowering counts per-layer ops by num_layers)."""
    update = {"num_layers": stage.layers}
    if model.is_moe:
        update["first_dense_layers"] = stage.dense_layers
    return model.model_copy(update=update)


def forward_ops(model: TransformerConfig, stage: StageShape, ts: TrainShape) -> list[Op]:
    """The per-GPU forward kernels of one micro-batch on ``stage``."""
    m = stage_model(model, stage)
    T = ts.tokens
    if ts.ep > ts.tp:  # experts over ep / tp tensor-parallel groups: tokens dispatched to them and back
        k = ts.ep // ts.tp
        dense = dense_ops(T * k, T * k if stage.last else 0, m, ts.ep, ep=ts.ep, dp=k)
    else:
        dense = dense_ops(T, T if stage.last else 0, m, ts.tp, ep=ts.ep)
    seqs = BatchShape(prefill=((ts.seq_len, 0),) * ts.micro_batch)
    attn = attention_ops(seqs, m, ts.tp)
    if ts.cp > 1:  # each GPU holds 1/cp of every sequence's queries and sees all of its keys (ring)
        attn = [replace(op, q_tokens=-(-op.q_tokens // ts.cp), pairs=-(-op.pairs // ts.cp)) for op in attn]
    cut = next(i for i, op in enumerate(dense) if op.name == "o_proj")
    ops = dense[:cut] + attn + dense[cut:]
    if not stage.first:
        ops = [op for op in ops if op.name != "embed"]
    if stage.last:
        b = model.dtype_bytes
        vocab = -(-model.vocab_size // ts.tp)
        # softmax cross-entropy over the logits: read them, write the fp32 loss-gradient buffer
        ops.append(Op(ELEMENTWISE, "cross_entropy", 1, bytes=int(T * vocab * (b + 4)), dtype=model.dtype,
                      dtype_bytes=b))
    if ts.sequence_parallel and ts.tp > 1:
        ops = [replace(op, bytes=-(-op.bytes // ts.tp)) if op.name in SP_SPLIT else op for op in ops]
    if ts.precision == "fp8":
        ops = _fp8(ops)
    return ops


def ring_send_bytes(model: TransformerConfig, ts: TrainShape) -> float:
    """K/V bytes one GPU sends per ring step and layer under context parallelism: its block of K and V
    (micro_batch x seq_len / cp tokens, its kv_heads / tp heads), 2 x tokens / cp x kv_heads / tp x
    head_dim x dtype bytes (0 for cp = 1). The serving ring's count, ``ring_prefill`` over tp x cp GPUs
    in cp groups of tp."""
    if ts.cp <= 1:
        return 0.0
    seqs = BatchShape(prefill=((ts.seq_len, 0),) * ts.micro_batch)
    return ring_prefill(seqs, model, ts.tp * ts.cp, ts.cp).send_bytes


def sp_collective_bytes(op: Op) -> float:
    """Bytes each GPU puts on the wire in one of sequence parallelism's two collectives (reduce-scatter
    or all-gather) replacing the all-reduce ``op``: (n - 1) / n of its activation bytes; the pair moves
    the all-reduce's 2 (n - 1) / n."""
    n = op.workers
    return (n - 1) / n * op.bytes if n > 1 else 0.0


def _fp8(ops: list[Op]) -> list[Op]:
    """GEMMs (but the LM head) on the fp8 tensor path, each input cast from 16 bit first."""
    out: list[Op] = []
    for op in ops:
        if op.kind in GEMM_KINDS and op.name != "lm_head":
            out.append(Op(ELEMENTWISE, f"{op.name}_cast", op.count, bytes=int(op.m * op.k * 3), dtype=op.dtype,
                          dtype_bytes=op.dtype_bytes))
            out.append(replace(op, dtype="fp8", dtype_bytes=1.0, w_bytes=1.0, out_bytes=2.0))
        else:
            out.append(op)
    return out


def backward_op(op: Op, flash: bool = True) -> list[Op]:
    """The backward kernels of one forward op (``flash``: FlashAttention-2's attention backward)."""
    if op.kind == GEMM:
        return [replace(op, name=f"{op.name}_dgrad", n=op.k, k=op.n),
                replace(op, name=f"{op.name}_wgrad", m=op.k, n=op.n, k=op.m)]
    if op.kind == GROUPED:  # same FLOPs per expert; the routed row counts of the forward
        return [replace(op, name=f"{op.name}_dgrad", n=op.k, k=op.n), replace(op, name=f"{op.name}_wgrad")]
    if op.kind == ATTN_PREFILL:
        ratio = ATTN_BWD_FLOP_RATIO if flash else UNFUSED_ATTN_BWD_FLOP_RATIO
        return [replace(op, name="attn_bwd", pairs=int(op.pairs * ratio))]
    if op.kind == ELEMENTWISE:
        return [replace(op, name=f"{op.name}_bwd", bytes=2 * op.bytes)]
    if op.kind in (ALLREDUCE, ALLTOALL):
        return [replace(op, name=f"{op.name}_bwd")]
    return []


def recompute_ops(fwd: list[Op], mode: str) -> list[Op]:
    """Forward kernels re-run before the backward: all layer ops (full), core attention (selective)."""
    if mode == "full":
        return [replace(op, name=f"{op.name}_recompute") for op in fwd if op.name not in STAGE_OPS]
    if mode == "selective":
        return [replace(op, name=f"{op.name}_recompute") for op in fwd if op.kind == ATTN_PREFILL]
    return []


def backward_ops(fwd: list[Op], mode: str = "none", flash: bool = True) -> list[Op]:
    """Recompute (if any), then each op's backward in reverse order."""
    out = recompute_ops(fwd, mode)
    for op in reversed(fwd):
        out += backward_op(op, flash)
    return out


def model_flops(fwd: list[Op]) -> float:
    """Model FLOPs of one forward and backward pass of ``fwd`` (the MFU numerator): every backward at 2x
    its forward (dgrad + wgrad; attention's dV, dP, dQ, dK), no recompute of any kind (PaLM's MFU,
    Chowdhery et al. 2022, appendix B; Megatron-LM's count without recomputation)."""
    return 3.0 * flops(fwd)


def optimizer_op(params: float, grad_bytes: float, weight_bytes: float, state_bytes: float = ADAM_STATE_BYTES) -> Op:
    """One memory-bound pass over ``params`` parameters: state and gradient in, state and weights out."""
    nbytes = params * (state_bytes + grad_bytes + state_bytes + weight_bytes)
    return Op(ELEMENTWISE, "optimizer_step", 1, bytes=int(nbytes), dtype="fp32", dtype_bytes=4.0)


def flops(ops: list[Op]) -> float:
    return sum(op.flops() for op in ops)


# -- parameters and activation memory -----------------------------------------------------------

def layer_params(model: TransformerConfig, tp: int = 1, ep: int = 1) -> float:
    """Parameters of one average layer on one GPU: attention and dense MLP split ``tp`` ways, routed
    experts ``ep`` ways and each expert ``tp / ep`` ways (as the serving lowering splits them), or,
    with ``ep`` > ``tp`` (experts over several tensor-parallel groups), each GPU whole experts."""
    attn = model.attn_params_per_layer() / tp
    norms = 2 * model.hidden_size
    if not model.is_moe:
        return attn + model.mlp_params_per_layer() / tp + norms
    mlp_total = model.mlp_params_per_layer() * model.num_layers
    experts = model._mlp_params(model.expert_intermediate) * model.num_experts * model.moe_layers
    rest = (mlp_total - experts) / tp
    return attn + (experts / max(tp, ep) + rest) / model.num_layers + norms


def expert_params(model: TransformerConfig, stage: StageShape, tp: int = 1, ep: int = 1) -> float:
    """The routed experts' parameters among ``stage_params`` (one GPU's share, as ``layer_params``)."""
    if not model.is_moe:
        return 0.0
    experts = model._mlp_params(model.expert_intermediate) * model.num_experts * model.moe_layers
    return stage.layers * experts / model.num_layers / max(tp, ep)


def stage_params(model: TransformerConfig, stage: StageShape, tp: int = 1, ep: int = 1) -> float:
    """Parameters one GPU of ``stage`` holds (its layers; the embedding / LM head on the end stages)."""
    p = stage.layers * layer_params(model, tp, ep)
    emb = model.vocab_size * model.hidden_size / tp
    if stage.first:
        p += emb
    if stage.last:
        p += model.hidden_size + (0 if model.tie_embeddings and stage.first else emb)
    return p


def activation_bytes_per_layer(model: TransformerConfig, ts: TrainShape, flash: bool = True) -> float:
    """Bytes one layer keeps for its backward, for one micro-batch on one GPU (16-bit activations,
    1-byte dropout masks), per Korthikanti et al. (2022), generalised to GQA and gated MLPs."""
    T = ts.tokens
    t = ts.tp
    h = model.hidden_size
    q = model.num_heads * model.head_dim
    kv = model.num_kv_heads * model.head_dim
    if model.is_moe:
        inter = model.expert_intermediate * model.experts_per_token + model.shared_intermediate
    else:
        inter = model.intermediate_size
    up = 2 * inter if model.gated_mlp else inter
    if ts.recompute == "full":  # only the layer's input
        return T * 2 * h / (t if ts.sequence_parallel else 1)
    outside = 10 * h  # two norm inputs, QKV and MLP inputs (2 bytes each), two dropout masks (1 byte)
    inside = 2 * (2 * q + 2 * kv) + 2 * up + 2 * inter  # Q, K, V, attention output; MLP up output, activation
    heads = model.num_heads
    if ts.recompute == "selective" or flash:
        scores = 4.0 * heads if flash else 0.0  # fp32 log-sum-exp per head (FlashAttention)
    else:  # softmax output (2), dropout mask (1), dropout output (2) per head per key
        scores = 5.0 * heads * ts.seq_len
    per_token = outside / (t if ts.sequence_parallel else 1) + (inside + scores) / t
    return T * per_token


def logits_bytes(model: TransformerConfig, ts: TrainShape) -> float:
    """The last stage's logits and their fp32 gradient for one micro-batch."""
    return ts.tokens * (-(-model.vocab_size // ts.tp)) * (model.dtype_bytes + 4)
