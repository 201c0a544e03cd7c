"""Which value a framework setting takes when a profile's ``versions`` block, its
``tensor_parallel`` block and the scenario's own framework block all name it: the scenario's block
wins, then the tensor-parallel block (what the framework derives from the GPU count), then the
release's block, then the profile. A tensor-parallel degree is read as the cluster reads it."""

from __future__ import annotations

import pytest

from simulator.config.framework import parse_framework
from simulator.config.loader import load_scenario
from simulator.core.errors import ConfigError


def _scenario(framework, tp=1) -> dict:
    return {"name": "fw", "seed": 0, "hardware": {"device": {"kind": "gpu", "preset": "H200"}},
            "model": {"kind": "transformer", "preset": "Llama-3.1-8B"},
            "cluster": {"tensor_parallel": tp}, "engine": {"framework": framework, "max_model_len": 4096},
            "workload": {"kind": "closed_loop", "clients": 1, "num_requests": 1,
                         "prompt_tokens": {"dist": "fixed", "value": 16},
                         "output_tokens": {"dist": "fixed", "value": 4}}}


def test_a_scenario_override_wins_over_the_release_block():
    # vllm-0.12's versions block turns host.overlap on from 0.16.0; the scenario turns it off
    assert parse_framework("vllm-0.18.0").host.overlap is True
    prof = parse_framework({"preset": "vllm-0.18.0", "host": {"overlap": False}})
    assert prof.host.overlap is False


def test_a_scenario_override_wins_over_the_tensor_parallel_block():
    sc = load_scenario(_scenario({"preset": "sglang-0.5.6.post2", "gpu_memory_utilization": 0.8,
                                  "cuda_graphs": {"max_batch": 128}}, tp=4))
    assert sc.spec.engine.gpu_memory_utilization == 0.8
    assert sc.framework.cuda_graphs.max_batch == 128
    assert sc.framework.cuda_graphs.sizes[-1] == 512  # the fields not given keep the tp-4 block's values
    plain = load_scenario(_scenario("sglang-0.5.6.post2", tp=4))
    assert plain.spec.engine.gpu_memory_utilization == 0.9 and plain.framework.cuda_graphs.max_batch == 512


def test_the_tensor_parallel_block_follows_the_degree_the_cluster_reads():
    # the cluster's lax int reads "4" as 4: the profile must be the tp-4 one, not the tp-1 one
    sc = load_scenario(_scenario("sglang-0.5.6.post2", tp="4"))
    assert sc.spec.cluster.tensor_parallel == 4
    assert sc.framework.cuda_graphs.max_batch == 512
    # a degree between two blocks takes the largest block not above it
    assert parse_framework("sglang-0.5.6.post2").for_tp(3).gpu_memory_utilization == 0.906
    assert parse_framework("sglang-0.5.6.post2").for_tp(16).gpu_memory_utilization == 0.897


@pytest.mark.parametrize("spec", ["sglang-0.5.x", "vllm-latest", {"preset": "sglang-0.4.0"}])
def test_an_unknown_release_is_one_error_naming_it(spec):
    with pytest.raises(ConfigError, match="version") as exc:
        parse_framework(spec)
    assert "\n" not in str(exc.value)


def test_a_bad_tensor_parallel_degree_is_one_error():
    with pytest.raises(ConfigError, match="tensor_parallel"):
        load_scenario(_scenario("sglang-0.5.6.post2", tp="four"))


@pytest.mark.parametrize("spec", ["vllm-0.16", "vllm-0.16.0", "vllm-0.16.0.post1"])
def test_a_release_named_without_its_trailing_zero_is_the_same_release(spec):
    # "0.16" is release 0.16.0: the 0.16.0 block applies (tuple order put (0, 16) below (0, 16, 0))
    assert parse_framework(spec).host.overlap is True


def test_a_line_named_without_its_trailing_zero_finds_its_profile():
    from simulator.config.framework import resolve_profile

    assert resolve_profile("sglang", "0.5").version == "0.5.0"
    assert resolve_profile("trtllm", "1").framework == "trtllm"
