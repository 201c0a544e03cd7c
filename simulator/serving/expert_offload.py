"""Build a replica's expert offload (``policies.expert_offload``) from a resolved scenario.

The mechanism is :class:`workloads.expert_offload.ExpertOffload` (what a GPU keeps, how long a MoE
layer waits for the rest); the cache policy comes from the ``policies.expert_caches`` registry; the
link from the host preset (PCIe pinned copy rate and per-copy overhead) and, for experts on an SSD,
the drive's read throughput at the configured command size and queue depth. With a KV cache that
swaps to host memory, each step's expert copies also run on the replica's host-to-device link
(``expert_copies``), where they and the KV swap-ins share the bytes.
"""

from __future__ import annotations

from simulator.config.loader import resolve_component
from simulator.core import registry as reg
from simulator.core.errors import ConfigError
from workloads.expert_offload import ExpertOffload

WHERE = "policies.expert_offload"


def build_expert_offload(scenario, pool, quant=None) -> ExpertOffload | None:
    """The offload of one replica of ``pool`` (None when the scenario offloads no experts)."""
    block = scenario.spec.policies.expert_offload
    if block is None:
        return None
    from policies.expert_caches import EXPERT_CACHES

    model = scenario.model.config
    if not model.is_moe:
        raise ConfigError(f"expert offload needs a mixture-of-experts model; {model.name} is dense", where=WHERE)
    if pool.pipeline_parallel > 1 or pool.attention_data_parallel > 1:
        raise ConfigError("expert offload runs on tensor/expert-parallel replicas, not with pipeline_parallel or "
                          "attention_data_parallel > 1", where=WHERE)
    comp = resolve_component(block, EXPERT_CACHES, WHERE, base_dir=scenario.base_dir)
    cfg = comp.config
    policy = comp.cls(cfg)
    scale = quant.weight_bytes(model) / model.weight_bytes() if quant is not None else 1.0
    # one GPU's share: each expert's weights are split over the tensor-parallel GPUs (or, with expert
    # parallelism, whole experts over them: the same bytes per GPU on average)
    expert_bytes = model._mlp_params(model.expert_intermediate) * model.dtype_bytes * scale / pool.tensor_parallel
    host_c = resolve_component({"kind": "host", "preset": cfg.host}, reg.HARDWARE, f"{WHERE}.host")
    host = host_c.cls(host_c.config)
    rate, overhead = host.config.copy_rate(), host.config.transfer_overhead_s
    if cfg.tier == "ssd":
        ssd_c = resolve_component({"kind": "ssd", "preset": cfg.ssd}, reg.HARDWARE, f"{WHERE}.ssd")
        ssd = ssd_c.cls(ssd_c.config)
        rate = min(rate, ssd.throughput_bytes_per_s(cfg.io_size, cfg.queue_depth))
        overhead += ssd.latency_s(cfg.io_size)
    # a byte budget caches whole experts, more in some layers than in others: an average per layer
    cache = cfg.cache_experts if cfg.cache_experts is not None else cfg.cache_bytes / (expert_bytes * model.moe_layers)
    return ExpertOffload(model.num_experts, model.experts_per_token, model.moe_layers, model.num_layers,
                         model.routing, expert_bytes, cache, policy.resident, rate, overhead,
                         cfg.prefetch.accuracy if cfg.prefetch is not None else None)


def expert_copies(offload, expert_fetch, tokens: int, step_ps: int):
    """One step's expert copies on the replica's host-to-device link, the one its KV swap-ins use
    (``KvOffload.h2d``, a processor-sharing ``SharedBandwidth``), so that copies in flight at once
    share its bytes: an event that fires when they are done, or None when there is no such link or
    nothing to copy. The step timer's stall already holds the copies' time alone on the link; the
    replica waits for this event after the step's own time, so only sharing the link with swaps
    (or swaps sharing it with the experts) lengthens anything. Steps whose copies would not fit in
    the step's time even alone keep the stall as it is (nothing is put on the link)."""
    link = getattr(offload, "h2d", None) if offload is not None else None
    if link is None or expert_fetch is None or tokens <= 0:
        return None
    nbytes = expert_fetch.copy_bytes(tokens)
    if nbytes <= 0 or link.latency_ps + nbytes / link.bw_per_ps > step_ps:
        return None
    return link.transfer(nbytes)


__all__ = ["build_expert_offload", "expert_copies"]
