"""A replica wider than a node: GPUs in nodes of ``gpus_per_node`` joined by the node's link (NVLink /
NVSwitch), nodes joined by a network with one NIC per GPU (rail-optimised InfiniBand / RoCE).

Models: the expert-parallel all-to-all (MoE dispatch / combine) of ``p`` GPUs over ``nodes`` nodes,
    hierarchical as DeepEP's internode kernels run it: each GPU sends its bytes spread evenly over the
    other ``p - 1`` GPUs; the share for GPUs of its own node, (g - 1) / (p - 1), goes over the node link,
    the share for the other nodes, (p - g) / (p - 1), leaves over the GPU's own NIC (to the GPU of the
    same index in each other node: every remote flow of a GPU contends for that one NIC) and is then
    forwarded over the node link to its destination GPU, which adds (g - 1) / g of the received network
    bytes to each GPU's node-link traffic (symmetric traffic: each GPU receives what it sends). The two
    stages are pipelined (chunks): the all-to-all takes both latencies (the implementation's, as inside
    one node, and the network preset's) plus the longer of the node-link bytes at the implementation's
    efficiency and the network bytes at the network preset's. The bytes are conserved: node-link share
    + network share = the bytes sent. Everything else (all-reduce, send) is the node link's.
Ignores: DeepEP's once-per-node deduplication of a token bound for several GPUs of one remote node (the
    network bytes are an upper bound for its normal kernels), NVLink forwarding in the low-latency
    kernels (they post every remote GPU's RDMA writes directly; same bytes on the NIC), traffic from
    other replicas on the network, adaptive routing.
Sources: DeepEP (DeepSeek, 2025) README: NVLink forwarding of RDMA-received tokens in the internode
    normal kernels; NVIDIA DGX H100 SuperPOD reference architecture (one 400 Gb/s NIC per GPU, rail
    topology). Link rates from the ``presets/link`` files.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True, slots=True)
class A2aSplit:
    """Bytes one GPU moves in a hierarchical all-to-all: ``node_bytes`` to GPUs of its node,
    ``network_bytes`` over its NIC, ``forwarded_bytes`` it forwards over the node link for node-mates."""

    node_bytes: float
    network_bytes: float
    forwarded_bytes: float

    @property
    def node_link_bytes(self) -> float:
        return self.node_bytes + self.forwarded_bytes


def alltoall_split(size_bytes: float, workers: int, gpus_per_node: int) -> A2aSplit:
    """How ``size_bytes`` sent by one GPU to the other ``workers - 1`` divide over node link and network."""
    g = min(gpus_per_node, workers)
    if workers <= 1 or size_bytes <= 0:
        return A2aSplit(0.0, 0.0, 0.0)
    net = size_bytes * (workers - g) / (workers - 1)
    node = size_bytes - net
    return A2aSplit(node, net, net * (g - 1) / g)


class NodeNetworkLink:
    """The node link of a replica spanning nodes, with the network for all-to-alls across them.
    Duck-types :class:`hw_models.link.Link` (``config`` is the node link's)."""

    def __init__(self, node_link: Any, network: Any, gpus_per_node: int) -> None:
        self.node_link = node_link
        self.network = network
        self.gpus_per_node = gpus_per_node
        self.config = node_link.config

    def memo_key(self) -> tuple:
        """What a timing backend's memo may key on (hw_models.timing.base): every input of its costs."""
        from hw_models.timing.base import link_memo_key

        return ("NodeNetworkLink", link_memo_key(self.node_link), link_memo_key(self.network), self.gpus_per_node)

    def nodes(self, workers: int) -> int:
        return math.ceil(workers / self.gpus_per_node)

    def allreduce_s(self, size_bytes: float, workers: int) -> float:
        return self.node_link.allreduce_s(size_bytes, workers)

    def send_s(self, size_bytes: float) -> float:
        return self.node_link.send_s(size_bytes)

    def alltoall_s(self, size_bytes: float, workers: int, efficiency: float | None = None,
                   latency_s: float | None = None) -> float:
        """Hierarchical all-to-all: the longer of the node-link and the network stage (see module doc)."""
        if self.nodes(workers) <= 1:
            return self.node_link.alltoall_s(size_bytes, workers, efficiency, latency_s)
        split = alltoall_split(size_bytes, workers, self.gpus_per_node)
        g = self.gpus_per_node
        lat = self.node_link.config.latency_s if latency_s is None else latency_s
        node_s = self.node_link.alltoall_s(split.node_link_bytes, g, efficiency, 0.0)  # its bytes only
        net = self.network.config
        net_s = split.network_bytes / (net.bw_bytes_per_s * net.efficiency)
        return lat + net.latency_s + max(node_s, net_s)


__all__ = ["A2aSplit", "NodeNetworkLink", "alltoall_split"]
