"""Energy figures of a serving run from its batch segments (pure function of recorded data).

Each batch segment carries the dynamic joules per device the step timer charged for it
(:mod:`hw_models.energy`: FLOPs x J/FLOP + bytes x J/byte, after power-cap throttling); every
device also draws its idle power for the whole simulated time. Totals: dynamic over all segments
x devices per replica + idle W x devices x simulated time.
"""

from __future__ import annotations

from typing import Any

import numpy as np


def energy_figures(batches: dict[str, np.ndarray], replica_facts: list[dict[str, Any]], sim_time_s: float,
                   out_tokens: int, requests_finished: int) -> dict[str, Any]:
    """Summary fields: energy_j (total), energy_dynamic_j, energy_idle_j, energy_per_output_token_j,
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
    total = dynamic + idle_j
    dur = (batches["end_ps"] - batches["start_ps"]).astype(np.float64) * 1e-12
    seg_w = np.divide(dyn, dur, out=np.zeros_like(dyn), where=dur > 0) + (idle[rep] if dyn.size else 0.0)
    out: dict[str, Any] = {}
    pools = [r.get("pool") for r in replica_facts]
    if len(set(pools)) > 1:  # heterogeneous deployments: each pool's share (dynamic + idle)
        per = dyn_r * devices + idle * devices * sim_time_s
        out["energy_by_pool_j"] = {p: float(sum(e for e, q in zip(per, pools) if q == p)) for p in dict.fromkeys(pools)}
    return out | {
        "energy_j": total,
        "energy_dynamic_j": dynamic,
        "energy_idle_j": idle_j,
        "energy_per_output_token_j": total / out_tokens if out_tokens else float("nan"),
        "energy_per_request_j": total / requests_finished if requests_finished else float("nan"),
        "power_mean_w": total / sim_time_s if sim_time_s > 0 else 0.0,
        "power_peak_w_per_device": float(seg_w.max()) if seg_w.size else 0.0,
    }


def draft_idle_w(replica: Any) -> float:
    """Idle watts per device of ``replica`` that a draft model on a device of its own adds (its idle
    power spread over the replica's tp devices, as its dynamic joules are); 0 otherwise."""
    spec = getattr(replica, "spec", None)
    if spec is None or not spec.draft_own_device or spec.draft_timer is None or spec.draft_timer.energy is None:
        return 0.0
    return spec.draft_timer.energy.idle_w * spec.draft_j_share
