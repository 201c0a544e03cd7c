"""Draft-model speculation: a small model on the same replica proposes k tokens, one decode step of
its own per token, then the target verifies them in one pass.

Models: the draft's weights and its KV cache (per token, for every request the replica holds) come
    out of the replica's KV memory; each step runs k draft decode iterations over the speculating
    rows and, for prompts being prefilled, the draft's prefill of the same chunks, all timed by the
    replica's timing backend with the draft's architecture at the same tensor parallelism.
    With ``device`` the draft runs on a device of its own (an NPU, a CPU, another GPU): its weights
    and KV are checked against that device's memory instead of the replica's KV pool, and its
    iterations are timed by that device's backend (still before the target's verification).
Ignores: the draft's own CUDA-graph/launch behaviour (it is timed like the target's kernels);
    proposals that a smaller k makes unnecessary are still drafted up to the longest k of the step;
    with a draft device, the token hand-off between the devices and the draft device's energy.
Sources: Leviathan et al., "Fast Inference from Transformers via Speculative Decoding" (ICML 2023);
    Chen et al., "Accelerating LLM Decoding with Speculative Sampling" (2023); vLLM's draft runner.
"""

from __future__ import annotations

from typing import Any

from pydantic import Field

from policies.speculation import SpeculationConfig, SpeculationMethod, register_speculation


class DraftModelConfig(SpeculationConfig):
    draft: str = Field(description="model preset of the draft (kind transformer), e.g. Llama-3.2-1B")
    device: dict[str, Any] | None = Field(
        default=None, description="device the draft runs on, e.g. {kind: npu, preset: Snapdragon-8-Gen3} (its "
                                  "weights and KV in that device's memory, timed by its own backend); default: the "
                                  "replica's GPUs")


@register_speculation("draft_model", config=DraftModelConfig)
class DraftModelSpeculation(SpeculationMethod):
    proposer = "model"
