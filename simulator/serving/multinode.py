"""A serving replica wider than one node (``hardware.network``, ``hardware.gpus_per_node``): its link
becomes :class:`hw_models.node_network.NodeNetworkLink` (the MoE all-to-all hierarchical over the node
link and the network); layouts whose other collectives would cross nodes are refused."""

from __future__ import annotations

from simulator.config.loader import resolve_component
from simulator.core import registry as reg
from simulator.core.errors import ConfigError


def node_network_link(scenario, pool, link, where: str = "hardware.network"):
    """``link`` of ``pool``'s replicas, wrapped with the scenario's network when a replica spans nodes."""
    hw = scenario.spec.hardware
    per_node = hw.gpus_per_node
    gpus = pool.tensor_parallel * pool.pipeline_parallel
    if hw.network is None or gpus <= per_node or link is None:
        return link
    if gpus % per_node:
        raise ConfigError(f"a replica of {gpus} GPUs does not fill whole nodes of {per_node} GPUs: the hierarchical "
                          f"all-to-all assumes every node holds {per_node} of its GPUs", where=where)
    if pool.pipeline_parallel > 1 or pool.context_parallel > 1:
        raise ConfigError(f"a replica of {gpus} GPUs spans nodes of {per_node}: only expert-parallel all-to-alls "
                          f"cross the network here, not pipeline or context parallelism", where=where)
    attn_tp = pool.tensor_parallel // pool.attention_data_parallel
    if attn_tp > per_node:
        raise ConfigError(f"attention's tensor-parallel groups of {attn_tp} GPUs span nodes of {per_node} "
                          f"(tensor_parallel={pool.tensor_parallel}, attention_data_parallel="
                          f"{pool.attention_data_parallel}): raise attention_data_parallel so each group fits a node",
                          where=where)
    if pool.expert_parallel > 1 and (pool.tensor_parallel // pool.expert_parallel) > per_node:
        raise ConfigError(f"experts split over {pool.tensor_parallel // pool.expert_parallel} GPUs each span nodes "
                          f"of {per_node}", where=where)
    comp = resolve_component(hw.network, reg.HARDWARE, where, default_kind="link", base_dir=scenario.base_dir)
    if comp.kind != "link":
        raise ConfigError(f"expected kind link, got {comp.kind!r}", where=where)
    from hw_models.node_network import NodeNetworkLink

    return NodeNetworkLink(link, comp.cls(comp.config), per_node)


__all__ = ["node_network_link"]
