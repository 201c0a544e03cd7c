"""NCCL send/recv model (hw_models.collectives.send_recv_s) and the link's p2p efficiency.

First principles: a large copy takes size / (link rate x p2p efficiency); a small one takes the
rendezvous floor; time never falls as the message grows; the p2p efficiency changes copies only.
"""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

import simulator.core.registry as reg
from hw_models.collectives import Fabric, NcclParams, allreduce_s, p2p_bw, send_recv_s
from hw_models.link import Link, LinkConfig
from simulator.config.errors import ConfigError
from simulator.config.loader import resolve_component


def preset(name: str):
    return resolve_component({"kind": "link", "preset": name}, reg.HARDWARE, "link").config


@pytest.mark.parametrize("name", ["NVLink3", "NVLink-bridge-A100", "PCIe4", "IB-HDR"])
def test_large_copy_runs_at_link_rate_times_p2p_efficiency(name):
    link = preset(name)
    eff = link.p2p_efficiency if link.p2p_efficiency is not None else link.efficiency
    size = 1e11  # latency (<= 5 us) and floor are < 2e-5 of the time (>= 0.33 s)
    assert send_recv_s(size, Fabric.of(link)) == pytest.approx(size / (link.bw_bytes_per_s * eff), rel=1e-4)


def test_small_copy_takes_the_rendezvous_floor():
    link = preset("NVLink-bridge-A100")
    params = NcclParams(p2p_floor_s=17e-6)
    for size in (1.0, 2048.0, 64e3, 1e6):  # wire time (2 us + 1 MB / 300 GB/s = 5.3 us) < floor
        assert send_recv_s(size, Fabric.of(link), params) == 17e-6
    # beyond the floor: link latency + bytes at the p2p rate (Simple protocol above 16 KB)
    size = 16e6
    assert send_recv_s(size, Fabric.of(link), params) == pytest.approx(link.latency_s + size / 300e9)
    assert send_recv_s(0.0, Fabric.of(link), params) == 0.0


@settings(max_examples=200, deadline=None)
@given(a=st.floats(1.0, 1e10), b=st.floats(1.0, 1e10), name=st.sampled_from(["NVLink3", "NVLink-bridge-A100", "PCIe4"]))
def test_send_time_never_falls_as_the_message_grows(a, b, name):
    fab = Fabric.of(preset(name))
    lo, hi = sorted((a, b))
    assert send_recv_s(lo, fab) <= send_recv_s(hi, fab)


def test_direct_bridge_copies_faster_than_through_nvswitch_at_the_same_rating():
    bridge, switch = preset("NVLink-bridge-A100"), preset("NVLink3")
    assert bridge.bw_bytes_per_s == switch.bw_bytes_per_s
    assert send_recv_s(64e6, Fabric.of(bridge)) < 0.85 * send_recv_s(64e6, Fabric.of(switch))
    assert p2p_bw(switch) == switch.bw_bytes_per_s * switch.efficiency  # unset: the collective share


def test_p2p_efficiency_changes_copies_only_not_all_reduce():
    base = preset("NVLink-bridge-A100")
    other = base.model_copy(update={"p2p_efficiency": 0.5})
    for p in (2, 4):
        assert allreduce_s(64e6, p, Fabric.of(base)) == allreduce_s(64e6, p, Fabric.of(other))
    assert send_recv_s(64e6, Fabric.of(other)) > 1.9 * send_recv_s(64e6, Fabric.of(base))
    # the alpha-beta link model uses the same p2p rate
    assert Link(other).send_s(1e9) == pytest.approx(other.latency_s + 1e9 / (base.bw_bytes_per_s * 0.5))
    assert Link(base).allreduce_s(1e9, 4) == Link(other).allreduce_s(1e9, 4)


def test_copy_between_groups_uses_the_inter_link():
    fab = Fabric(preset("NVLink-bridge-A100"), 2, preset("PCIe4"))
    size = 1e9
    assert send_recv_s(size, fab, same_group=False) == pytest.approx(size / p2p_bw(preset("PCIe4")), rel=1e-3)
    assert send_recv_s(size, fab) < send_recv_s(size, fab, same_group=False) / 5


@pytest.mark.parametrize("bad", [0.0, 1.2, -0.1])
def test_p2p_efficiency_outside_0_1_is_rejected(bad):
    with pytest.raises(ValidationError, match="p2p_efficiency"):
        LinkConfig(name="x", technology="nvlink", bw_bytes_per_s="300GB/s", p2p_efficiency=bad)
    with pytest.raises(ConfigError, match="p2p_efficiency"):
        resolve_component({"kind": "link", "preset": "NVLink-bridge-A100", "p2p_efficiency": bad}, reg.HARDWARE,
                          "link")
