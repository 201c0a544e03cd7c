"""An iteration's work dealt over the attention data-parallel ranks of a MoE replica.

With attention data parallelism each rank runs its own requests' attention and dense layers, and every
MoE layer waits for all ranks (the experts take every rank's tokens), so the slowest rank sets the step.
The engines also pad every rank to the busiest one: vLLM pads each DP rank's batch to the largest token
count across the ranks whenever CUDA graphs are on (vllm==0.12.0 vllm/v1/worker/gpu_model_runner.py,
``coordinate_batch_across_dp(..., allow_dp_padding=cudagraph_mode != NONE)``; vllm/v1/worker/dp_utils.py
``_post_process_dp_padding``), and a rank without requests runs a dummy batch to join the collectives.

``rank_shapes`` deals one iteration (the replica's one scheduler plans it) over ``dp`` ranks: decode rows
evenly (requests are spread over the ranks as they arrive), prefill chunks whole, each to the rank with
the fewest tokens so far, largest first (a prompt is prefilled by the rank that holds the request).
"""

from __future__ import annotations

from workloads.llm import BatchShape


def rank_shapes(shape: BatchShape, dp: int) -> list[BatchShape]:
    """``shape`` split over ``dp`` ranks; the ranks' prefill chunks, decode rows, summed decode context
    and emitting rows add up to the shape's."""
    if dp <= 1:
        return [shape]
    rows = shape.decode_rows
    per = [rows // dp + (r < rows % dp) for r in range(dp)]
    kv = [shape.decode_kv * n // rows if rows else 0 for n in per]
    for r in range(shape.decode_kv - sum(kv)):  # the remainder, one token per rank in turn
        kv[r % dp] += 1
    ctx: list[tuple[int, ...]] = [()] * dp
    if shape.decode_ctx and len(shape.decode_ctx) == rows and sum(shape.decode_ctx) == shape.decode_kv:
        at = 0
        for r in range(dp):
            ctx[r] = shape.decode_ctx[at:at + per[r]]
            at += per[r]
        kv = [sum(c) for c in ctx]
    load = list(per)
    chunks: list[list[tuple[int, int]]] = [[] for _ in range(dp)]
    for chunk in sorted(shape.prefill, key=lambda c: -c[0]):
        r = min(range(dp), key=lambda i: (load[i], i))
        chunks[r].append(chunk)
        load[r] += chunk[0]
    # the prefill chunks that emit a token (a prompt's last chunk): counted on the ranks holding chunks
    extra = shape.emitting - rows
    emitting = list(per)
    for r in range(dp):
        take = min(extra, len(chunks[r]))
        emitting[r] += take
        extra -= take
    emitting[0] += max(0, extra)
    return [BatchShape(prefill=tuple(chunks[r]), decode_rows=per[r], decode_kv=kv[r], emitting=emitting[r],
                       decode_ctx=ctx[r]) for r in range(dp)]


def rank_tokens(shape: BatchShape) -> int:
    """Tokens one rank's share of an iteration computes."""
    return sum(t for t, _ in shape.prefill) + shape.decode_rows
