"""Energy figures of a serving run from its batch segments (pure function of recorded data).

Each batch segment carries the dynamic joules per device the step timer charged for it
(:mod:`hw_models.energy`: FLOPs x J/FLOP + bytes x J/byte, after power-cap throttling); every
device also draws its idle power for the whole simulated time. Totals: dynamic over all segments
x devices per replica + idle W x devices x simulated time + the joules of bytes copied between
devices, host DRAM and SSD (``transfer_joules``). Per request: each step's dynamic joules shared
among the requests in it by tokens processed (``request_energy_figures``); idle and transfer
joules stay unattributed.
"""

from __future__ import annotations

from typing import Any

import numpy as np


def energy_figures(batches: dict[str, np.ndarray], replica_facts: list[dict[str, Any]], sim_time_s: float,
                   out_tokens: int, requests_finished: int) -> dict[str, Any]:
    """Summary fields: energy_j (total = dynamic + idle + transfer), energy_dynamic_j, energy_idle_j,
    energy_transfer_j (bytes moved outside device memory: ``transfer_joules``), energy_per_output_token_j,
    energy_per_request_j, power_mean_w, power_peak_w_per_device (highest segment power of one device,
    idle included) and, with several pools, energy_by_pool_j."""
    n = len(replica_facts)
    if "energy_j" not in batches or not n:
        return {}
    devices = np.array([r.get("devices", r.get("tp", 1)) for r in replica_facts], dtype=np.float64)
    idle = np.array([r.get("idle_w") or 0.0 for r in replica_facts], dtype=np.float64)
    rep = batches["replica"]
    dyn = batches["energy_j"].astype(np.float64)
    dyn_r = np.bincount(rep, weights=dyn, minlength=n)[:n] if dyn.size else np.zeros(n)
    dynamic = float((dyn_r * devices).sum())
    idle_j = float((idle * devices).sum() * sim_time_s)
    xfer_r = np.array([r.get("transfer_j") or 0.0 for r in replica_facts], dtype=np.float64) * devices
    transfer = float(xfer_r.sum())
    total = dynamic + idle_j + transfer
    dur = (batches["end_ps"] - batches["start_ps"]).astype(np.float64) * 1e-12
    seg_w = np.divide(dyn, dur, out=np.zeros_like(dyn), where=dur > 0) + (idle[rep] if dyn.size else 0.0)
    out: dict[str, Any] = {}
    pools = [r.get("pool") for r in replica_facts]
    if len(set(pools)) > 1:  # heterogeneous deployments: each pool's share (dynamic + idle + transfer)
        per = dyn_r * devices + idle * devices * sim_time_s + xfer_r
        out["energy_by_pool_j"] = {p: float(sum(e for e, q in zip(per, pools) if q == p)) for p in dict.fromkeys(pools)}
    return out | {
        "energy_j": total,
        "energy_dynamic_j": dynamic,
        "energy_idle_j": idle_j,
        "energy_transfer_j": transfer,
        "energy_per_output_token_j": total / out_tokens if out_tokens else float("nan"),
        "energy_per_request_j": total / requests_finished if requests_finished else float("nan"),
        "power_mean_w": total / sim_time_s if sim_time_s > 0 else 0.0,
        "power_peak_w_per_device": float(seg_w.max()) if seg_w.size else 0.0,
    }


def request_energy_figures(request_j: np.ndarray, finished: np.ndarray) -> dict[str, Any]:
    """Summary fields of the joules attributed to each request (``Request.energy_j``: every step's
    dynamic energy shared among the requests in it by tokens processed, :mod:`simulator.serving.request_energy`):
    energy_attributed_j (summed over every request, finished or not: the run's dynamic energy; idle
    and transfer energy are not attributed, so attributed + idle + transfer = total) and
    energy_request_j (mean, p50, p90, p99, max over the ``finished`` requests)."""
    request_j = np.asarray(request_j, dtype=np.float64)
    x = request_j[np.asarray(finished, dtype=bool)]
    dist: dict[str, Any] = {"count": int(x.size)}
    if x.size:
        q = np.percentile(x, (50, 90, 99))
        dist |= {"mean": float(x.mean()), "p50": float(q[0]), "p90": float(q[1]), "p99": float(q[2]),
                 "max": float(x.max())}
    else:
        dist |= dict.fromkeys(("mean", "p50", "p90", "p99", "max"), float("nan"))
    return {"energy_attributed_j": float(request_j.sum()), "energy_request_j": dist}


def draft_idle_w(replica: Any) -> float:
    """Idle watts per device of ``replica`` that a draft model on a device of its own adds (its idle
    power spread over the replica's tp devices, as its dynamic joules are); 0 otherwise."""
    spec = getattr(replica, "spec", None)
    if spec is None or not spec.draft_own_device or spec.draft_timer is None or spec.draft_timer.energy is None:
        return 0.0
    return spec.draft_timer.energy.idle_w * spec.draft_j_share


def _link_j(device_bytes_j: dict[str, float], technology: str) -> float:
    """J per byte of a copy between devices over a link of ``technology``: NVLink once; over
    PCIe, InfiniBand or Ethernet the bytes cross the PCIe of both ends (the NICs' and switches'
    own energy is not modelled: a lower bound)."""
    return device_bytes_j["nvlink"] if technology in ("nvlink", "nvswitch") else 2.0 * device_bytes_j["pcie"]


def transfer_joules(sim: Any) -> np.ndarray:
    """Joules per device of each replica spent moving bytes outside device memory: KV swaps and
    offload to host DRAM (PCIe, each GPU its own shard) and SSD (the ssd tier, the drive's PCIe
    included), KV handed from prefill to decode replicas (charged to the receiving replica, whose
    link carries all its tp GPUs' bytes) and KV migrated by a cluster controller. Bytes are the
    links' ``bytes_done``; J per byte are the replica device's tiers (:mod:`hw_models.energy`).
    Per-step copies (missed experts, sparse KV values, a weight-offload stream) are in the step's
    own joules (``StepTimer._fetch_j``)."""
    from hw_models.energy import PJ, TIER_PJ_PER_BIT, energy_model

    n = len(sim.cluster.replicas)
    out = np.zeros(n)
    default = {t: 8 * v * PJ for t, v in TIER_PJ_PER_BIT.items()}
    ctl = getattr(sim.cluster, "controller", None)
    kv_tech = sim.scenario.kv_link.config.technology if sim.scenario.kv_link is not None else None
    ctl_tech = _controller_link_technology(sim, ctl) if ctl is not None else "pcie"
    for rt in sim.pools:
        dev = rt.pool.device.config
        bj = energy_model(dev).byte_j if getattr(dev, "tdp_w", None) else default
        tp = rt.pool.tensor_parallel
        for i in rt.replicas:
            rep = sim.cluster.replicas[i]
            off = getattr(rep.kvm, "offload", None)
            j = 0.0
            if off is not None:
                for name, tier in (("d2h", "pcie"), ("h2d", "pcie"), ("ssd_w", "ssd"), ("ssd_r", "ssd")):
                    link = getattr(off, name, None)
                    if link is not None:
                        j += link.bytes_done * bj[tier]
            kv_link = sim.cluster.kv_links.get(i)
            if kv_link is not None and kv_tech is not None:
                j += kv_link.bytes_done / tp * _link_j(bj, kv_tech)
            if ctl is not None and i in ctl.links:
                j += ctl.links[i].bytes_done * _link_j(bj, ctl_tech)
            out[i] = j
    return out


def _controller_link_technology(sim: Any, ctl: Any) -> str:
    """The technology of a cluster controller's migration link (its policy's ``link`` preset)."""
    from simulator.config.loader import resolve_component
    from simulator.core import registry as reg

    name = getattr(getattr(ctl.policy, "config", None), "link", None)
    if name is None:
        return "pcie"
    return resolve_component({"kind": "link", "preset": name}, reg.HARDWARE, "cluster.controller.link",
                             base_dir=sim.scenario.base_dir).config.technology
