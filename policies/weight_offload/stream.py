"""``stream``: FlexGen's weight placement. Shares of every layer's weights on the GPU, in host DRAM and on
the SSD (``gpu_fraction``, ``disk_fraction``, the rest in DRAM), streamed layer by layer with the next
layer prefetched; the iteration's rows run as ``num_gpu_batches`` GPU batches per weight transfer (the
zig-zag block); KV in GPU memory, host DRAM or on the drive; decode attention on the GPU, the host CPU
or inside computational storage.

Models: the placement only; the time and memory of a placement are the mechanism's
    (``workloads.weight_offload``).
Ignores: FlexGen's LP search over placements (the shares are inputs), weight and KV compression.
Sources: Sheng et al., "FlexGen: High-Throughput Generative Inference of Large Language Models with a
    Single GPU" (ICML 2023), Section 4 (the offloading policy: wg / wc / wd, cg / cc / cd, CPU
    attention) and Algorithm 1 (block schedule).
"""

from __future__ import annotations

from policies.weight_offload import StreamConfig, register_weight_offload


@register_weight_offload("stream", config=StreamConfig)
class StreamOffload:
    """Layer weights streamed from host DRAM / SSD (the mechanism is workloads.weight_offload)."""

    sparse = False

    def __init__(self, config: StreamConfig) -> None:
        self.config = config
