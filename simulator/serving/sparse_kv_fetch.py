"""Build a replica's sparse KV fetch (``policies.kv_cache: {kind: shadowkv}``) from a resolved scenario:
the host preset's PCIe copy rate, the device's tensor peak, the model's KV width (checked against the
policy's ``kv_width``). The mechanism is :class:`workloads.sparse_kv_fetch.SparseKvFetch`."""

from __future__ import annotations

from simulator.config.loader import resolve_component
from simulator.core import registry as reg
from simulator.core.errors import ConfigError
from workloads.sparse_kv_fetch import SparseKvFetch

WHERE = "policies.kv_cache"


def build_sparse_kv_fetch(scenario, pool, timing_efficiency: float = 1.0) -> SparseKvFetch | None:
    comp = scenario.kv_cache
    if comp is None or comp.kind != "shadowkv":
        return None
    cfg, model, dev = comp.config, scenario.model.config, pool.device.config
    if cfg.kv_width != model.kv_size:
        raise ConfigError(f"kv_width={cfg.kv_width} but {model.name} has {model.num_kv_heads} KV heads x "
                          f"{model.head_dim} = {model.kv_size}", where=f"{WHERE}.kv_width")
    if pool.tensor_parallel * pool.pipeline_parallel > 1:
        raise ConfigError("shadowkv runs on one GPU per replica", where=WHERE)
    block = {"kind": "host", "preset": cfg.host} if isinstance(cfg.host, str) else {"kind": "host", **cfg.host}
    host = resolve_component(block, reg.HARDWARE, f"{WHERE}.host").config
    policy = comp.cls(cfg)
    return SparseKvFetch(model.num_layers, model.kv_size, model.dtype_bytes, cfg.rank, cfg.sparse_budget,
                         cfg.value_cache_hit, host.copy_rate(), host.transfer_overhead_s,
                         dev.tensor_peak(model.dtype) * timing_efficiency, policy.context_of)


__all__ = ["build_sparse_kv_fetch"]
