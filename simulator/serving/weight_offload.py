"""Build a replica's weight offload (``policies.weight_offload``) from a resolved scenario.

The mechanism is :class:`workloads.weight_offload.WeightOffload` (what the GPU keeps, how long an
iteration takes with the rest streamed); the placement comes from the ``policies.weight_offload``
registry; the PCIe link, DRAM and CPU from the host preset; the drive's read time from the SSD preset
at the configured (``stream``) or derived (``flash``) request size and queue depth.
"""

from __future__ import annotations

from simulator.config.loader import resolve_component
from simulator.core import registry as reg
from simulator.core.errors import ConfigError
from workloads.weight_offload import FlashRead, WeightOffload

WHERE = "policies.weight_offload"


def _block(c, kind: str) -> dict:
    return {"kind": kind, "preset": c} if isinstance(c, str) else {"kind": kind, **c}


def build_weight_offload(scenario, pool, quant=None) -> WeightOffload | None:
    """The weight offload of one replica of ``pool`` (None when every weight is on the GPU)."""
    block = scenario.spec.policies.weight_offload
    if block is None:
        return None
    from policies.weight_offload import WEIGHT_OFFLOADS

    model = scenario.model.config
    if model.is_moe:
        raise ConfigError(f"weight offload streams dense layers; {model.name} is a mixture of experts (use "
                          f"policies.expert_offload)", where=WHERE)
    if pool.pipeline_parallel > 1:
        raise ConfigError("weight offload streams every layer through each GPU: pipeline_parallel must be 1",
                          where=WHERE)
    tp = pool.tensor_parallel
    comp = resolve_component(block, WEIGHT_OFFLOADS, WHERE, base_dir=scenario.base_dir)
    cfg = comp.config
    sparse = getattr(comp.cls, "sparse", False)
    host_c = resolve_component(_block(cfg.host, "host"), reg.HARDWARE, f"{WHERE}.host")
    host = host_c.config
    ssd_c = resolve_component(_block(cfg.ssd, "ssd"), reg.HARDWARE, f"{WHERE}.ssd")
    ssd = ssd_c.cls(ssd_c.config)
    qd = cfg.queue_depth

    def disk_read_s(nbytes: float, request: float) -> float:
        return ssd.read_s(float(nbytes), float(request), qd) if nbytes > 0 else 0.0

    scale = quant.weight_bytes(model) / model.weight_bytes() if quant is not None else 1.0
    b = model.dtype_bytes * scale / tp  # each GPU holds (and streams) 1 / tp of every weight
    L = model.num_layers
    attn, mlp = model.attn_params_per_layer() * b, model.mlp_params_per_layer() * b
    layer = attn + mlp + 2 * model.hidden_size * b  # the layer's two norms
    other = model.weight_bytes() * scale / tp - L * layer
    flash = None
    if sparse and tp > 1:
        raise ConfigError("flash reads whole neurons on one device: tensor_parallel must be 1", where=WHERE)
    if sparse:
        mats = 3 if model.gated_mlp else 2
        flash = FlashRead(ffn_layer_bytes=mlp, attn_layer_bytes=layer - mlp, neuron_bytes=mats * model.hidden_size * b,
                          row_bytes=model.hidden_size * b, matrices=mats, density=cfg.ffn_density,
                          recall=cfg.predictor_recall, precision=cfg.predictor_precision,
                          new_fraction=cfg.new_fraction(), window_tokens=cfg.window_tokens, bundling=cfg.bundling,
                          predictor_bytes=cfg.predictor_rank * (model.hidden_size + model.intermediate_size) * b)
    kv_host = not sparse and cfg.kv in ("host", "disk")
    attn_host = not sparse and cfg.attention == "host"
    kv_disk = not sparse and cfg.kv == "disk"
    disk = {}
    if kv_disk:
        write = ssd.throughput_bytes_per_s(float(cfg.io_size), qd, write=True)
        if cfg.disk_io == "direct":
            read = ssd.throughput_bytes_per_s(float(cfg.io_size), qd)
        else:  # page-cache writes are written back in large requests, at most as fast as the copy threads
            read = fs_read_rate(ssd, float(cfg.fs_readahead_bytes), cfg.fs_copy_threads,
                                host.pageable_copy_bw_bytes_per_s)
            write = min(write, cfg.fs_copy_threads * host.pageable_copy_bw_bytes_per_s)
        d = ssd.config
        disk = dict(kv_on_disk=True, kv_disk_read_rate=read, kv_disk_write_rate=write,
                    attention_in_storage=cfg.attention == "storage",
                    storage_internal_bw=d.internal_read_bw, storage_flops=d.compute_flops_per_s,
                    storage_s=ssd.in_storage_s,
                    storage_read_fraction=cfg.storage_read_fraction, drive_link_rate=d.host_rate, p2p=cfg.p2p,
                    kv_bytes_per_row=2 * model.kv_size * model.dtype_bytes / tp)
    return WeightOffload(
        num_layers=L, layer_bytes=layer, other_bytes=other, gpu_fraction=cfg.gpu_fraction,
        disk_fraction=(1.0 - cfg.gpu_fraction) if sparse else cfg.disk_fraction,
        pcie_rate=float("inf") if cfg.unified_memory else host.copy_rate(),
        copy_overhead_s=0.0 if cfg.unified_memory else host.transfer_overhead_s, disk_read_s=disk_read_s,
        io_size=0.0 if sparse else float(cfg.io_size), overlap=cfg.overlap, num_gpu_batches=cfg.num_gpu_batches,
        host_dram_bytes=host.dram_bytes, kv_on_host=kv_host, attention_on_host=attn_host,
        host_attention_bw=host.dram_bw_bytes_per_s * getattr(cfg, "host_memory_efficiency", 1.0),
        host_flops=host.cpu_flops_per_s, kv_bytes_per_token=model.kv_elems_per_token(tp) * model.dtype_bytes,
        attn_flops_per_kv=4.0 * model.num_heads * model.head_dim * L / tp,
        q_bytes_per_row=model.q_size * model.dtype_bytes / tp, buffer_layers=getattr(cfg, "buffer_layers", None),
        flash=flash, disk_capacity_bytes=ssd.config.capacity_bytes, **disk)


def fs_read_rate(ssd, window: float, threads: int, copy_bw: float) -> float:
    """Bytes/s of a page-cache read path: ``threads`` copy threads, each with one ``window`` read outstanding
    (the drive's response at queue depth = threads, Little's law) and copying it out at ``copy_bw`` before
    faulting the next."""
    return threads * window / (ssd.response_s(window, threads) + window / copy_bw)


__all__ = ["build_weight_offload"]
