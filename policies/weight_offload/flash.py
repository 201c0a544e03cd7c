"""``flash``: LLM in a flash. The weights the GPU (or DRAM) does not hold stay on flash; attention and
embeddings are kept, and of the FFN the neurons a low-rank predictor flags are read per token, less
those a window of the last ``window_tokens`` tokens keeps, with row-column bundling making one read per
neuron. The predictor's precision and recall and the FFN's activation density are inputs.

Models: the read plan's inputs; bytes, read sizes and time are the mechanism's
    (``workloads.weight_offload.FlashRead``).
Ignores: the predictor's quality effect (recall is an input), which neurons are active (only their share).
Sources: Alizadeh et al., "LLM in a flash: Efficient Large Language Model Inference with Limited Memory"
    (ACL 2024), Sections 3.1 (sparsity predictor, windowing) and 3.2 (row-column bundling).
"""

from __future__ import annotations

from policies.weight_offload import FlashConfig, register_weight_offload


@register_weight_offload("flash", config=FlashConfig)
class FlashOffload:
    """Sparse FFN reads from flash (the mechanism is workloads.weight_offload.FlashRead)."""

    sparse = True

    def __init__(self, config: FlashConfig) -> None:
        self.config = config
