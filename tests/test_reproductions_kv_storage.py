"""Reproductions of KV-cache / memory-tier / storage papers: direction and a justified band
(figures and assumptions in docs/reproductions.md, section "KV cache, memory tiers, storage")."""

from __future__ import annotations

from pathlib import Path

import pytest

from simulator.core.errors import ConfigError
from simulator.studies.run import load_study, run_study

CACHEGEN = Path(__file__).resolve().parents[1] / "scenarios" / "papers" / "cachegen_llama2_7b.yaml"


def test_cachegen_streams_context_faster_than_quantized_kv_and_than_recomputing_it(tmp_path):
    # Paper: 3.5-4.3x less bandwidth than 8-bit KV and 3.2-3.7x (papers.md: 2.7-3x) lower
    # context-loading delay. The bandwidth saving is the input ratio; the delay gain vs 8-bit KV
    # must come out just under it (decoding and latency cost a little): band [2.5, 4.3]. Against
    # recomputing an 8K prefix on an A100 at a 3 GB/s link the gain must exceed 1 (band [1.5, 6]).
    r = run_study(CACHEGEN, [], tmp_path, quiet=True)
    assert (tmp_path / "summary.json").exists()
    assert 3.5 <= r["bandwidth_saving_vs_quantized"] <= 4.3
    assert 2.5 <= r["delay_gain_vs_quantized"] <= 4.3
    assert 1.5 <= r["delay_gain_vs_recompute"] <= 6.0
    assert r["cachegen_s"] < r["fetch_quantized_s"] < r["fetch_fp16_s"]


def test_cachegen_loses_its_edge_over_recompute_on_a_slow_link():
    slow = run_study(CACHEGEN, ["link_bw=0.5GB/s"], None, quiet=True)
    assert slow["delay_gain_vs_recompute"] < 1.0  # recompute wins when the network is slow


def test_an_unknown_study_is_a_config_error():
    with pytest.raises(ConfigError, match="unknown study"):
        load_study({"type": "study", "study": "nope"})
