"""GPU presets against first principles and the datasheets they cite.

First principles: a tensor core retires whole MMA tiles per clock, so a GPU's dense BF16 peak is
sm_count x clock x a per-SM FLOP/clk that is a power of two and fixed per chip generation; each
generation's rate follows from its predecessor's by the factor its whitepaper states (A100 is the
one anchor: 108 SM x 1.41 GHz x 2048 FLOP/clk = 312 TFLOP/s, NVIDIA A100 whitepaper, 2020). FP8 runs
at twice the BF16 rate where it exists; FP4 at twice FP8 on Blackwell and three times FP8 on
Blackwell Ultra (its FP4 rate is 1.5x Blackwell's, its BF16/FP8 rates are unchanged). The FP32 vector
peak implies a boost clock no lower than the tensor clock. Every number in a preset cites a source.
"""

from __future__ import annotations

import math
import re
from pathlib import Path

import pytest
from typer.testing import CliRunner

from simulator.cli import app
from simulator.config.loader import resolve_component
from simulator.core import registry as reg

ROOT = Path(__file__).resolve().parents[1]
GPU_DIR = ROOT / "hw_models" / "presets" / "gpu"
GPU_PRESETS = reg.HARDWARE.get("gpu").preset_names()
PRESET_FILES = sorted(p.name for p in GPU_DIR.glob("*.yaml"))

# Dense BF16 FLOP/clk/SM of each preset relative to A100's, with the reason. A preset missing here
# fails the completeness test, so a new GPU has to state where its per-SM rate comes from.
RATE_VS_A100 = {
    "A100-40GB": 1.0, "A100-80GB": 1.0,  # GA100: 4 third-gen tensor cores x 256 FMA/clk
    "A10": 0.5, "A40": 0.5, "A6000": 0.5,  # GA102: third-gen tensor cores at half GA100's FP16 rate (GA102 whitepaper)
    "L4": 0.5, "L40S": 0.5,  # Ada keeps GA102's FP16 rate per SM and adds FP8 (Ada whitepaper)
    "RTX-4090": 0.25,  # GeForce Ada: FP16/BF16 with FP32 accumulate at half rate (Ada whitepaper table)
    "H100-SXM": 2.0, "H100-PCIe": 2.0, "H200": 2.0,  # H100 whitepaper: 2x A100's dense FP16 per SM per clock
    "B200": 4.0, "GB200": 4.0, "B300": 4.0, "GB300": 4.0,  # estimate: fifth-gen tensor core 2x Hopper's
}
A100_BF16_FLOP_PER_CLK_SM = 2048  # NVIDIA A100 whitepaper (2020): 1024 dense FP16 FMA/clk/SM
BLACKWELL_ULTRA = {"B300": "B200", "GB300": "GB200"}  # each Ultra part and its Blackwell sibling
FP8_ARCHITECTURES = {"ada", "hopper", "blackwell"}
BLOCK_SCALED = ("fp4", "nvfp4", "mxfp4", "mxfp8")
# Golden datasheet figures (dense BF16 FLOP/s, HBM/GDDR B/s, SMs) of the GPUs hwsim is checked on.
DATASHEET = {
    "H100-SXM": (989.4e12, 3.35e12, 132),  # NVIDIA H100 datasheet (2023), SXM column
    "B200": (2.25e15, 8e12, 148),  # NVIDIA HGX B200 datasheet, per GPU
    "GB200": (2.5e15, 8e12, 148),  # NVIDIA GB200 NVL72 datasheet, per GPU
    "B300": (2.25e15, 8e12, 148),  # NVIDIA HGX B300 datasheet, per GPU (SM count an estimate)
    "GB300": (2.5e15, 8e12, 148),  # NVIDIA GB300 NVL72 datasheet, per GPU (SM count an estimate)
    "L40S": (362.05e12, 864e9, 142),  # NVIDIA L40S datasheet (2023)
    "A10": (125e12, 600e9, 72),  # NVIDIA A10 datasheet (2021)
}


def gpu(preset: str):
    return resolve_component({"kind": "gpu", "preset": preset}, reg.HARDWARE, "hardware.device").config


def bf16_flop_per_clk_sm(preset: str) -> float:
    g = gpu(preset)
    return g.tensor_flops_per_s["bf16"] / (g.sm_count * g.clock_hz)


# -- the preset list -------------------------------------------------------------------------------

def test_hwsim_presets_gpu_lists_b300_and_gb300_beside_the_gpus_hwsim_is_checked_on():
    out = CliRunner().invoke(app, ["presets", "gpu"])
    assert out.exit_code == 0, out.output
    listed = {name.strip() for name in out.output.split(":", 1)[1].split(",")}
    assert {"B300", "GB300", "B200", "GB200", "H100-SXM", "L40S"} <= listed


def test_every_gpu_preset_states_its_per_sm_tensor_rate_relative_to_a100():
    assert set(GPU_PRESETS) == set(RATE_VS_A100)


# -- dense BF16 peak = SMs x clock x per-SM rate ---------------------------------------------------

@pytest.mark.parametrize("preset", GPU_PRESETS)
def test_the_dense_bf16_peak_is_sms_times_clock_times_a_power_of_two_flop_per_clock(preset):
    rate = bf16_flop_per_clk_sm(preset)
    nearest = 2 ** round(math.log2(rate))
    assert rate == pytest.approx(nearest, rel=0.02)


@pytest.mark.parametrize("preset", GPU_PRESETS)
def test_the_per_sm_bf16_rate_follows_from_a100s_by_the_whitepaper_factor_of_its_generation(preset):
    assert bf16_flop_per_clk_sm(preset) == pytest.approx(
        RATE_VS_A100[preset] * bf16_flop_per_clk_sm("A100-80GB"), rel=0.02)


def test_a100_does_2048_dense_bf16_flop_per_clock_per_sm_as_its_whitepaper_states():
    assert bf16_flop_per_clk_sm("A100-80GB") == pytest.approx(A100_BF16_FLOP_PER_CLK_SM, rel=0.01)
    assert bf16_flop_per_clk_sm("A100-40GB") == pytest.approx(A100_BF16_FLOP_PER_CLK_SM, rel=0.01)


@pytest.mark.parametrize("preset", GPU_PRESETS)
def test_the_fp32_vector_peak_implies_a_boost_clock_at_or_up_to_ten_percent_above_the_tensor_clock(preset):
    g = gpu(preset)
    lanes = 64 if preset.startswith("A100") else 128  # GA100 has 64 FP32 lanes per SM, later SMs 128
    boost_hz = g.vector_flops_per_s / (g.sm_count * lanes * 2)
    assert 0.98 * g.clock_hz <= boost_hz <= 1.10 * g.clock_hz


@pytest.mark.parametrize("preset", sorted(DATASHEET))
def test_the_checked_gpus_match_their_datasheet_peak_bandwidth_and_sm_count(preset):
    bf16, bw, sms = DATASHEET[preset]
    g = gpu(preset)
    assert g.tensor_flops_per_s["bf16"] == pytest.approx(bf16, rel=1e-3)
    assert g.memory_bw_bytes_per_s == pytest.approx(bw, rel=1e-3)
    assert g.sm_count == sms


# -- peaks per dtype -------------------------------------------------------------------------------

@pytest.mark.parametrize("preset", GPU_PRESETS)
def test_fp16_and_bf16_share_one_tensor_peak(preset):
    p = gpu(preset).tensor_flops_per_s
    assert p["fp16"] == p["bf16"]


@pytest.mark.parametrize("preset", GPU_PRESETS)
def test_fp8_exists_from_ada_on_and_runs_at_twice_the_bf16_rate(preset):
    g = gpu(preset)
    p = g.tensor_flops_per_s
    assert ("fp8" in p) == (g.architecture in FP8_ARCHITECTURES)
    if "fp8" in p:
        assert p["fp8"] == pytest.approx(2 * p["bf16"], rel=0.02)


def test_a100_has_no_fp8_while_h100_and_l40s_do():
    assert "fp8" not in gpu("A100-80GB").tensor_flops_per_s
    assert "fp8" not in gpu("A100-40GB").tensor_flops_per_s
    assert "fp8" in gpu("H100-SXM").tensor_flops_per_s and "fp8" in gpu("L40S").tensor_flops_per_s


@pytest.mark.parametrize("preset", GPU_PRESETS)
def test_block_scaled_and_fp4_dtypes_exist_only_on_blackwell_and_share_the_fp4_or_fp8_rate(preset):
    g = gpu(preset)
    p = g.tensor_flops_per_s
    if g.architecture != "blackwell":
        assert not set(BLOCK_SCALED) & set(p)
        return
    assert p["fp4"] == p["nvfp4"] == p["mxfp4"]
    assert p["mxfp8"] == p["fp8"]


@pytest.mark.parametrize("preset", [p for p in GPU_PRESETS
                                    if gpu(p).architecture == "blackwell" and p not in BLACKWELL_ULTRA])
def test_blackwell_fp4_runs_at_twice_the_fp8_rate(preset):
    p = gpu(preset).tensor_flops_per_s
    assert p["fp4"] == pytest.approx(2 * p["fp8"], rel=0.01)


@pytest.mark.parametrize("ultra", sorted(BLACKWELL_ULTRA))
def test_blackwell_ultra_raises_fp4_by_half_and_keeps_its_siblings_bf16_fp8_and_tf32(ultra):
    u, b = gpu(ultra).tensor_flops_per_s, gpu(BLACKWELL_ULTRA[ultra]).tensor_flops_per_s
    assert u["nvfp4"] == pytest.approx(1.5 * b["nvfp4"], rel=0.01)
    assert u["fp4"] == pytest.approx(3 * u["fp8"], rel=0.01)
    assert (u["bf16"], u["fp8"], u["tf32"]) == (b["bf16"], b["fp8"], b["tf32"])


@pytest.mark.parametrize("ultra", sorted(BLACKWELL_ULTRA))
def test_blackwell_ultra_cuts_fp64_and_int8_to_under_a_tenth_of_its_siblings(ultra):
    u, b = gpu(ultra).tensor_flops_per_s, gpu(BLACKWELL_ULTRA[ultra]).tensor_flops_per_s
    assert 0 < u["fp64"] < b["fp64"] / 10
    assert 0 < u["int8"] < b["int8"] / 10


def test_gb300_nvfp4_is_15_pflops_dense_and_b300_is_one_and_a_half_times_b200s():
    assert gpu("GB300").tensor_flops_per_s["nvfp4"] == pytest.approx(15e15)
    assert gpu("B300").tensor_flops_per_s["nvfp4"] == pytest.approx(1.5 * 9e15)


# -- memory ----------------------------------------------------------------------------------------

@pytest.mark.parametrize("ultra", sorted(BLACKWELL_ULTRA))
def test_blackwell_ultra_has_at_least_the_memory_of_every_blackwell_part_at_the_same_8_tb_per_s(ultra):
    u = gpu(ultra)
    for sibling in ("B200", "GB200"):
        assert u.memory_bytes > gpu(sibling).memory_bytes
    assert 288e9 <= u.memory_bytes <= 288 * 2**30  # 288 GB, decimal or binary
    assert u.memory_bw_bytes_per_s == gpu("B200").memory_bw_bytes_per_s == 8e12


def test_hbm_bandwidth_grows_from_a100_to_h100_to_h200_to_blackwell():
    bws = [gpu(p).memory_bw_bytes_per_s for p in ("A100-80GB", "H100-SXM", "H200", "B200", "B300")]
    assert bws == sorted(bws) and bws[0] < bws[-1]


# -- every number cites a source -------------------------------------------------------------------

FIELD = re.compile(r"^\s*[A-Za-z_][\w-]*\s*:\s*(?P<value>[^#\s][^#]*?)?\s*(?P<comment>#.*)?$")


@pytest.mark.parametrize("name", PRESET_FILES)
def test_every_number_in_every_gpu_preset_file_carries_a_source_comment(name):
    uncited = []
    for line in (GPU_DIR / name).read_text(encoding="utf-8").splitlines():
        if not line.strip() or line.lstrip().startswith("#") or line.startswith("name:"):
            continue
        m = FIELD.match(line)
        assert m, f"{name}: unparsed line {line!r}"
        if m["value"] is None:  # a block key such as tensor_flops_per_s:
            continue
        if not (m["comment"] or "").startswith("# source:"):
            uncited.append(line)
    assert not uncited, f"{name}: values without '# source:': {uncited}"


def test_the_source_check_flags_a_number_without_a_comment():
    bad = "name: X\nsm_count: 132\nclock_hz: 1.8GHz  # source: y\n"
    flagged = [ln for ln in bad.splitlines()[1:] if not (FIELD.match(ln)["comment"] or "").startswith("# source:")]
    assert flagged == ["sm_count: 132"]


@pytest.mark.parametrize("preset", sorted(BLACKWELL_ULTRA))
def test_the_blackwell_ultra_presets_mark_their_estimates(preset):
    text = (GPU_DIR / f"{preset}.yaml").read_text(encoding="utf-8")
    for field in ("sm_count", "l2_bytes", "hbm_latency_cycles", "mma_sync_peak_fraction", "price", "int8"):
        line = next(ln for ln in text.splitlines() if ln.lstrip().startswith(f"{field}:"))
        assert "estimate" in line, line
