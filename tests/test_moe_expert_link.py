"""Expert offload and KV swaps on one host link: a step's expert copies run on the replica's
host-to-device link (the one its KV swap-ins use), so copies in flight at once share its bytes.
First principles: two transfers on one link take at least the sum of their bytes over its bandwidth;
with no swaps the expert path is exactly what the step timer's stall gives."""

from __future__ import annotations

import simpy

from simulator.config.loader import load_scenario, resolve_component
from simulator.core import registry as reg
from simulator.runner import run_scenario
from simulator.serving.expert_offload import expert_copies
from simulator.serving.kv_offload import KvOffload
from workloads.expert_offload import ExpertOffload
from workloads.moe import RoutingConfig


def _host():
    comp = resolve_component({"kind": "host", "preset": "DGX-A100-host"}, reg.HARDWARE, "host")
    return comp.cls(comp.config)


def _experts(host) -> ExpertOffload:
    from policies.expert_caches.lfu import LfuExpertCache

    c = host.config
    return ExpertOffload(8, 2, 32, 32, RoutingConfig(), 3.5e8, 2, LfuExpertCache.resident, c.copy_rate(),
                         c.transfer_overhead_s)


def test_expert_copies_and_a_swap_in_on_one_link_take_at_least_their_bytes_over_its_bandwidth():
    env = simpy.Environment()
    host = _host()
    kv = KvOffload(env, kv_bytes_per_token=1e5, host=host, swap_space_bytes=1e12)
    eo = _experts(host)
    swap_bytes = 2e9
    expert_bytes = eo.copy_bytes(4)
    assert expert_bytes > 0
    swap = kv._copy(kv.h2d, swap_bytes)  # a swap-in on the host-to-device link
    experts = expert_copies(kv, eo, 4, step_ps=10**15)  # a step long enough for the copies alone
    assert experts is not None
    env.run()
    assert swap.processed and experts.processed
    bw = host.config.copy_rate()
    both_s = (swap_bytes + expert_bytes) / bw
    assert env.now / 1e12 >= both_s * (1 - 1e-9)  # the later of the two is done no earlier
    # the experts alone would be done long before: sharing delayed them
    alone_s = host.config.transfer_overhead_s + expert_bytes / bw
    assert kv.h2d.bytes_done == swap_bytes + expert_bytes
    assert both_s > alone_s


def test_no_link_or_nothing_to_copy_puts_nothing_on_the_link():
    env = simpy.Environment()
    host = _host()
    eo = _experts(host)
    assert expert_copies(None, eo, 4, 10**15) is None
    assert expert_copies(KvOffload(env, 1e5), eo, 4, 10**15) is None  # no host: no link
    kv = KvOffload(env, 1e5, host=host, swap_space_bytes=1e9)
    assert expert_copies(kv, None, 4, 10**15) is None
    assert expert_copies(kv, eo, 4, step_ps=1) is None  # copies that do not fit the step: the stall stays


def _scenario(kv_cache: dict | None):
    spec = {
        "hardware": {"device": {"kind": "gpu", "preset": "H200"}, "timing": {"kind": "roofline"}},
        "model": {"kind": "transformer", "preset": "Mixtral-8x7B", "routing": {"dist": "zipf", "exponent": 0.8}},
        "engine": {"max_model_len": 2048},
        "workload": {"kind": "synthetic", "num_requests": 16, "arrival": {"process": "fixed", "rate": "1000/s"},
                     "prompt_tokens": {"dist": "fixed", "value": 64}, "output_tokens": {"dist": "fixed", "value": 16}},
        "policies": {"scheduler": {"kind": "vllm", "max_num_seqs": 8},
                     "expert_offload": {"kind": "lfu", "cache_experts": 2}},
        "outputs": {"report": False, "chrome_trace": False, "events": False, "requests": False},
    }
    if kv_cache is not None:
        spec["policies"]["kv_cache"] = kv_cache
    return load_scenario(spec)


def test_with_no_swaps_the_expert_path_is_unchanged():
    plain = run_scenario(_scenario(None)).summary  # no host link for KV: the step timer's stall alone
    linked = run_scenario(_scenario({"kind": "swap", "swap_space": "64GiB"})).summary  # the link, never swapped on
    assert linked["tpot_s"] == plain["tpot_s"] and linked["ttft_s"] == plain["ttft_s"]
    assert linked["sim_time_s"] == plain["sim_time_s"]


def test_the_expert_copies_run_on_the_replicas_host_link_when_it_has_one():
    from simulator.runner import Simulation

    sim = Simulation(_scenario({"kind": "swap", "swap_space": "64GiB"}))
    rep = sim.cluster.replicas[0]
    assert rep.expert_link and not rep.steady  # every iteration puts its copies on the link
    sim.run()
    assert rep.offload.h2d.bytes_done > 0 and rep.offload.swap_ins == 0
