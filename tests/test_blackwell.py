"""Blackwell: the B200 and GB200 presets, NVLink5, the block-scaled dtypes and the architecture enum.

First principles: roofline times of a compute-bound GEMM scale with the datasheet tensor peaks and
of a memory-bound one with the HBM bandwidths; NVFP4/MXFP4/MXFP8 widths follow from their block
scales (OCP MX v1.0; NVIDIA's NVFP4: one e4m3 scale per 16 elements).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from hw_models.gpu import ARCHITECTURES, DTYPE_BYTES
from hw_models.timing.roofline import RooflineBackend, RooflineConfig
from policies.quantization.scheme import format_bytes
from simulator.calibration.fit import GPU_DTYPE_BYTES
from simulator.cli import app
from simulator.config.loader import load_scenario, resolve_component
from simulator.core import registry as reg
from simulator.core.errors import CapacityError, ConfigError
from simulator.runner import Simulation, memory_plan
from workloads.llm import Op

ROOT = Path(__file__).resolve().parents[1]
QUICKSTART = ROOT / "scenarios" / "quickstart.yaml"
GPU_PRESETS = reg.HARDWARE.get("gpu").preset_names()


def gpu(preset: str, **overrides):
    return resolve_component({"kind": "gpu", "preset": preset, **overrides}, reg.HARDWARE, "hardware.device").config


def roofline(preset: str) -> RooflineBackend:
    return RooflineBackend(RooflineConfig(launch_overhead=False), gpu(preset))


def scheme(**block):
    c = resolve_component({"kind": "scheme", **block}, reg.QUANTIZATION, "policies.quantization")
    return c.cls(c.config)


def scenario(device: str, quant: dict | None = None, model: str = "Llama-3.1-8B"):
    raw = {"hardware": {"device": {"kind": "gpu", "preset": device}, "timing": {"kind": "roofline"}},
           "model": {"preset": model},
           "workload": {"kind": "synthetic", "num_requests": 10, "arrival": {"rate": "5/s"},
                        "prompt_tokens": {"dist": "fixed", "value": 256},
                        "output_tokens": {"dist": "fixed", "value": 16}}}
    if quant is not None:
        raw["policies"] = {"quantization": quant}
    return load_scenario(raw)


NVFP4 = {"kind": "scheme", "name": "W4A4-nvfp4", "weights": {"dtype": "nvfp4"}, "activations": {"dtype": "nvfp4"}}


# -- the architecture enum -------------------------------------------------------------------------

def test_an_unknown_architecture_is_a_config_error_naming_the_field_and_the_known_ones():
    with pytest.raises(ConfigError) as err:
        gpu("H200", architecture="rubin")
    msg = str(err.value)
    assert "hardware.device.architecture" in msg and "'blackwell'" in msg and "rubin" in msg


@pytest.mark.parametrize("preset", GPU_PRESETS)
def test_every_gpu_preset_names_a_known_architecture(preset):
    assert gpu(preset).architecture in ARCHITECTURES


def test_the_enum_holds_the_generations_from_volta_to_blackwell():
    assert {"volta", "turing", "ampere", "ada", "hopper", "blackwell"} == set(ARCHITECTURES)
    assert gpu("B200").architecture == gpu("GB200").architecture == "blackwell"


# -- presets ---------------------------------------------------------------------------------------

def test_b200_has_148_sms_8_tb_per_s_and_about_180_of_its_192_gib_of_hbm():
    b = gpu("B200")
    assert b.sm_count == 148 and b.memory_bw_bytes_per_s == 8e12
    assert 178 * 2**30 <= b.memory_bytes <= 180 * 2**30  # 8 stacks of 24 GiB, 180 GB enabled


def test_the_b200_clock_is_the_dense_bf16_peak_over_148_sms_of_8192_flop_per_clock():
    for preset in ("B200", "GB200"):
        d = gpu(preset)
        assert d.tensor_flops_per_s["bf16"] / (d.sm_count * 8192 * d.clock_hz) == pytest.approx(1.0, abs=0.01)


@pytest.mark.parametrize("preset", ["B200", "GB200"])
def test_blackwell_peaks_double_per_halving_of_precision(preset):
    p = gpu(preset).tensor_flops_per_s
    assert p["fp16"] == p["bf16"] and p["fp8"] == 2 * p["bf16"] == p["mxfp8"] == p["int8"]
    assert p["fp4"] == p["nvfp4"] == p["mxfp4"] == 2 * p["fp8"]


def test_gb200_is_a_faster_clocked_b200_with_more_memory():
    b, g = gpu("B200"), gpu("GB200")
    assert g.sm_count == b.sm_count and g.clock_hz > b.clock_hz and g.memory_bytes > b.memory_bytes
    assert g.tensor_flops_per_s["bf16"] / b.tensor_flops_per_s["bf16"] == pytest.approx(2.5 / 2.25)


def test_nvlink5_doubles_nvlink4_per_direction_and_is_the_blackwell_default():
    def link(name):
        return resolve_component({"kind": "link", "preset": name}, reg.HARDWARE, "link").config

    assert link("NVLink5").bw_bytes_per_s == 2 * link("NVLink4").bw_bytes_per_s == 900e9
    assert gpu("B200").default_interconnect == gpu("GB200").default_interconnect == "NVLink5"


@pytest.mark.parametrize("name", ["B200.yaml", "GB200.yaml", "../link/NVLink5.yaml"])
def test_every_number_in_the_blackwell_presets_cites_a_source(name):
    path = ROOT / "hw_models" / "presets" / "gpu" / name
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.strip() and not line.lstrip().startswith("#") and not line.rstrip().endswith(":") \
                and not line.startswith("name:"):
            assert "# source:" in line, line


# -- dtypes ----------------------------------------------------------------------------------------

def test_block_scaled_widths_include_one_scale_per_block():
    assert format_bytes("nvfp4") == DTYPE_BYTES["nvfp4"] == 0.5 + 1 / 16 == 0.5625
    assert format_bytes("mxfp4") == DTYPE_BYTES["mxfp4"] == 0.5 + 1 / 32 == 0.53125
    assert format_bytes("mxfp8") == DTYPE_BYTES["mxfp8"] == 1 + 1 / 32 == 1.03125
    assert format_bytes("fp4") == DTYPE_BYTES["fp4"] == 0.5
    for dtype in ("nvfp4", "mxfp4", "mxfp8"):
        assert GPU_DTYPE_BYTES[dtype] == DTYPE_BYTES[dtype]


def test_fp4_is_refused_on_h200_with_the_clear_error_and_accepted_on_b200():
    with pytest.raises(CapacityError, match="H200.*has no fp4 tensor-core path"):
        gpu("H200").tensor_peak("fp4")
    assert gpu("B200").tensor_peak("fp4") == 9e15 and gpu("B200").tensor_peak("nvfp4") == 9e15


def test_an_nvfp4_scheme_is_refused_on_h200_naming_gpu_and_dtype_and_runs_on_b200():
    with pytest.raises(CapacityError) as err:
        Simulation(scenario("H200", NVFP4))
    assert "NVIDIA H200" in str(err.value) and "no nvfp4 tensor-core path" in str(err.value)
    assert err.value.where == "policies.quantization"
    Simulation(scenario("B200", NVFP4))


def test_nvfp4_weights_take_0_5625_bytes_each_scales_included():
    s = scheme(weights={"dtype": "nvfp4", "group_size": 128}, activations={"dtype": "nvfp4"})  # group is the format's
    m = resolve_component({"kind": "transformer", "preset": "Llama-3.1-70B"}, reg.MODELS, "model").config
    linear = m.num_layers * (m.attn_params_per_layer() + m.mlp_params_per_layer())  # the LM head stays bf16
    assert s.weight_bytes(m) == pytest.approx(linear * 0.5625 + (m.num_params() - linear) * 2.0)
    assert s.linear("qkv_proj", "bf16", 2.0).tensor_dtype == "nvfp4"
    assert s.linear("qkv_proj", "bf16", 2.0).a_bytes == 0.5625


def test_fp4_weights_cannot_feed_an_int4_gemm_nor_int4_weights_an_fp4_one():
    with pytest.raises(ConfigError, match="cannot feed a int4"):
        scheme(weights={"dtype": "nvfp4"}, activations={"dtype": "int4"})
    with pytest.raises(ConfigError, match="cannot feed a nvfp4"):
        scheme(weights={"dtype": "int4"}, activations={"dtype": "nvfp4"})
    scheme(weights={"dtype": "nvfp4"}, activations={"dtype": "fp8_e4m3"})  # W4A8, fp4 widened to fp8


def test_an_mxfp8_kv_cache_stores_1_03125_bytes_per_element():
    assert scheme(kv={"dtype": "mxfp8"}).kv_bytes_per_element(2.0, 128) == 1.03125


# -- roofline: datasheet ratios --------------------------------------------------------------------

def test_b200_bf16_roofline_beats_h200_by_the_datasheet_peak_ratio_on_a_compute_bound_gemm():
    op = Op("gemm", "big", 1, m=16384, n=16384, k=16384)
    h, b = roofline("H200").op_s(op), roofline("B200").op_s(op)
    assert b < h and h / b == pytest.approx(2.25e15 / 989.4e12, rel=1e-9)


def test_b200_beats_h200_by_the_bandwidth_ratio_on_a_memory_bound_gemv():
    op = Op("gemm", "gemv", 1, m=1, n=8192, k=8192)
    assert roofline("H200").op_s(op) / roofline("B200").op_s(op) == pytest.approx(8.0 / 4.8, rel=1e-3)


def test_an_nvfp4_gemm_is_four_times_faster_than_bf16_when_compute_bound():
    d = dict(m=32768, n=32768, k=32768)
    bf16 = roofline("B200").op_s(Op("gemm", "g", 1, **d))
    fp4 = roofline("B200").op_s(Op("gemm", "g", 1, dtype="nvfp4", dtype_bytes=0.5625, **d))
    assert bf16 / fp4 == pytest.approx(4.0, rel=1e-9)


def test_b200_holds_its_extra_38_gib_of_hbm_as_kv_cache_for_the_same_model():
    b, h = memory_plan(scenario("B200", model="Qwen3-8B")), memory_plan(scenario("H200", model="Qwen3-8B"))
    assert b.weight_bytes == h.weight_bytes and b.kv_bytes_per_token == h.kv_bytes_per_token == 144 * 1024
    assert b.kv_bytes - h.kv_bytes == pytest.approx((179 - 141) * 2**30 * 0.9, rel=0.01)  # 0.9: memory utilisation
    assert b.kv_blocks > h.kv_blocks


# -- end to end through the CLI --------------------------------------------------------------------

@pytest.mark.parametrize("device,model", [("B200", "Qwen3-8B"), ("GB200", "Gemma-2-9B"), ("H200", "Llama-3.2-3B")])
def test_hwsim_run_serves_a_new_model_on_a_new_gpu_end_to_end(tmp_path, device, model):
    raw = yaml.safe_load(QUICKSTART.read_text(encoding="utf-8"))
    raw["hardware"]["device"] = {"kind": "gpu", "preset": device}
    raw["model"] = {"kind": "transformer", "preset": model}
    path = tmp_path / "scenario.yaml"
    path.write_text(yaml.safe_dump(raw, sort_keys=False), encoding="utf-8")
    out = tmp_path / "res"
    result = CliRunner().invoke(app, ["run", str(path), "--set", "workload.num_requests=20", "--set",
                                      "run.warmup_requests=0", "--out", str(out), "-q",
                                      "--no-report"])
    assert result.exit_code == 0, result.output
    summary = json.loads((out / "summary.json").read_text(encoding="utf-8"))
    assert summary["requests_finished"] == 20
    resolved = yaml.safe_load((out / "scenario.resolved.yaml").read_text(encoding="utf-8"))
    assert resolved["hardware"]["device"]["architecture"] in ("blackwell", "hopper")
