"""The shipped HF ``config.json`` presets in ``workloads/models/`` parse into the right architectures.

Parameter counts are checked against the published sizes within 2 %. ``num_params()`` counts weights
only: embedding, LM head unless tied, attention and MLP matrices, MoE routers and norm scales. It
leaves out biases (OPT, phi-2 and Qwen's QKV carry some; all under 0.1 % of the model), OPT's learned
position embeddings (2050 x hidden, under 0.1 %) and counts two norms per layer where phi-2 has one.
The published figures are the sizes on the model cards / HF repo pages, some of them rounded (e.g.
"180B" for Falcon), which is the rest of the 2 % allowance.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from simulator.config.loader import resolve_component
from simulator.core import registry as reg
from simulator.core.errors import ConfigError
from workloads.architectures.transformer import TransformerConfig

MODELS_DIR = Path(__file__).resolve().parents[1] / "workloads" / "models"
SHARED = Path(__file__).resolve().parents[2] / "shared"
VIDUR_COMPUTE = SHARED / "validation" / "vidur_a100" / "compute"

PRESETS = [
    "Llama-2-7B", "Llama-2-13B", "Llama-2-70B", "Llama-3-8B", "Llama-3-70B", "Llama-3.1-8B",
    "Llama-3.1-70B", "Mistral-7B", "Mixtral-8x7B", "CodeLlama-34B", "Qwen-72B", "phi-2", "OPT-13B",
    "OPT-6.7B", "OPT-30B", "Falcon-180B",
]

TOLERANCE = 0.02


def model(preset: str, **overrides) -> TransformerConfig:
    return resolve_component({"kind": "transformer", "preset": preset, **overrides}, reg.MODELS, "model").config


def assert_params(preset: str, published: float) -> None:
    n = model(preset).num_params()
    assert abs(n - published) / published <= TOLERANCE, f"{preset}: {n / 1e9:.3f}B vs published {published / 1e9}B"


# -- parameter counts ------------------------------------------------------------------------------

def test_llama_2_7b_has_6_7_billion_parameters():
    assert_params("Llama-2-7B", 6.74e9)  # HF repo: 6.74B


def test_llama_2_13b_has_13_billion_parameters():
    assert_params("Llama-2-13B", 13.0e9)  # HF repo: 13.0B


def test_llama_2_70b_has_69_billion_parameters():
    assert_params("Llama-2-70B", 69.0e9)  # HF repo: 69.0B


def test_llama_3_8b_has_8_billion_parameters():
    assert_params("Llama-3-8B", 8.03e9)  # HF repo: 8.03B


def test_llama_3_70b_has_70_6_billion_parameters():
    assert_params("Llama-3-70B", 70.6e9)  # HF repo: 70.6B


def test_llama_3_1_has_the_same_sizes_as_llama_3():
    assert model("Llama-3.1-8B").num_params() == model("Llama-3-8B").num_params()
    assert model("Llama-3.1-70B").num_params() == model("Llama-3-70B").num_params()


def test_mistral_7b_has_7_2_billion_parameters():
    assert_params("Mistral-7B", 7.24e9)  # HF repo: 7.24B


def test_mixtral_8x7b_has_46_7_billion_parameters():
    assert_params("Mixtral-8x7B", 46.7e9)  # Mistral's announcement: 46.7B total, 12.9B active


def test_codellama_34b_has_33_7_billion_parameters():
    assert_params("CodeLlama-34B", 33.7e9)  # HF repo: 33.7B


def test_qwen_72b_has_72_billion_parameters():
    # Model card: "72B"; the repo's size is about 72.3B (embedding and LM head untied, 152064 x 8192 each).
    assert_params("Qwen-72B", 72.3e9)


def test_phi_2_has_2_8_billion_parameters():
    assert_params("phi-2", 2.78e9)  # HF repo: 2.78B (the card rounds to 2.7B)


def test_opt_13b_has_13_billion_parameters():
    # OPT paper: "13B"; computed 12.84B with the tied LM head (biases and position table excluded).
    assert_params("OPT-13B", 12.9e9)


def test_opt_6_7b_and_30b_have_their_nominal_sizes():
    assert_params("OPT-6.7B", 6.7e9)
    assert_params("OPT-30B", 30.0e9)


def test_falcon_180b_has_180_billion_parameters():
    # Model card: "180B parameters". The LM head is tied (FalconConfig's default): computed 178.6B.
    assert_params("Falcon-180B", 180e9)


# -- KV cache --------------------------------------------------------------------------------------

def test_llama_3_8b_stores_128_kib_of_kv_per_token_in_bf16():
    cfg = model("Llama-3-8B", dtype="bf16")
    assert cfg.kv_bytes_per_token() == 2 * 32 * 8 * 128 * 2 == 131072


def test_llama_2_7b_stores_512_kib_of_kv_per_token_in_bf16():
    cfg = model("Llama-2-7B", dtype="bf16")
    assert cfg.kv_bytes_per_token() == 2 * 32 * 32 * 128 * 2 == 524288


# -- family-specific parsing -----------------------------------------------------------------------

@pytest.mark.parametrize("preset", ["Llama-2-7B", "Llama-3-70B", "Mistral-7B", "Mixtral-8x7B", "CodeLlama-34B",
                                    "Qwen-72B"])
def test_llama_mistral_mixtral_and_qwen_use_a_gated_mlp_with_rmsnorm(preset):
    cfg = model(preset)
    assert cfg.gated_mlp and cfg.norm == "rmsnorm" and not cfg.parallel_attn_mlp


@pytest.mark.parametrize("preset", ["phi-2", "OPT-13B", "OPT-6.7B", "OPT-30B", "Falcon-180B"])
def test_opt_phi_and_falcon_use_a_plain_mlp_with_layernorm(preset):
    cfg = model(preset)
    assert not cfg.gated_mlp and cfg.norm == "layernorm"


def test_qwen_72b_halves_the_stored_intermediate_size():
    cfg = model("Qwen-72B")
    assert cfg.intermediate_size == 49152 // 2 and cfg.head_dim == 128 and cfg.num_kv_heads == 64


def test_mixtral_routes_each_token_to_2_of_8_experts():
    cfg = model("Mixtral-8x7B")
    assert (cfg.num_experts, cfg.experts_per_token) == (8, 2)


def test_falcon_180b_maps_num_kv_heads_and_a_parallel_4x_mlp():
    cfg = model("Falcon-180B")
    assert (cfg.num_layers, cfg.hidden_size, cfg.num_heads, cfg.num_kv_heads) == (80, 14848, 232, 8)
    assert cfg.head_dim == 64 and cfg.intermediate_size == 4 * 14848 and cfg.vocab_size == 65024
    assert cfg.parallel_attn_mlp and cfg.tie_embeddings


def test_phi_2_runs_attention_and_mlp_in_parallel_with_80_wide_heads():
    cfg = model("phi-2")
    assert cfg.parallel_attn_mlp and cfg.head_dim == 80 and not cfg.tie_embeddings


def test_opt_ties_its_lm_head_to_the_input_embedding():
    for preset in ("OPT-6.7B", "OPT-13B", "OPT-30B"):
        raw = json.loads((MODELS_DIR / f"{preset}.json").read_text())
        assert raw["word_embed_proj_dim"] == raw["hidden_size"]  # no project_in/out matrices
        assert model(preset).tie_embeddings


def test_llama_3_1_extends_the_context_to_128k_tokens():
    assert model("Llama-3.1-8B").max_position == 131072
    assert model("Llama-3-8B").max_position == 8192


# -- the files themselves --------------------------------------------------------------------------

def test_every_preset_name_resolves():
    names = reg.MODELS.get("transformer").preset_names()
    assert set(PRESETS) <= set(names)
    for preset in PRESETS:
        assert model(preset).name == preset


@pytest.mark.parametrize("preset", PRESETS)
def test_every_model_file_names_its_hugging_face_source(preset):
    raw = json.loads((MODELS_DIR / f"{preset}.json").read_text())
    org, _, repo = raw["_source"].partition("/")
    assert org and repo and raw["model_type"] in ("llama", "mistral", "mixtral", "qwen", "phi", "opt", "falcon")


def test_a_malformed_config_json_gives_a_config_error_naming_the_file(tmp_path):
    bad = tmp_path / "config.json"
    bad.write_text('{"model_type": "llama", "hidden_size": 4096,\n  "num_hidden_layers": }\n')
    with pytest.raises(ConfigError) as info:
        model(str(bad))
    assert str(bad) in str(info.value)


def test_a_config_json_missing_a_key_gives_a_config_error_naming_the_file_and_key(tmp_path):
    incomplete = tmp_path / "config.json"
    incomplete.write_text(json.dumps({"model_type": "llama", "hidden_size": 4096, "num_attention_heads": 32,
                                      "num_hidden_layers": 32, "intermediate_size": 11008}))
    with pytest.raises(ConfigError) as info:
        model(str(incomplete))
    assert str(incomplete) in str(info.value) and "vocab_size" in str(info.value)


# -- against Vidur's A100 profiles -----------------------------------------------------------------

VIDUR_MODELS = {
    "meta-llama__Llama-2-7b-hf": "Llama-2-7B",
    "meta-llama__Llama-2-70b-hf": "Llama-2-70B",
    "meta-llama__Meta-Llama-3-8B": "Llama-3-8B",
    "meta-llama__Meta-Llama-3-70B": "Llama-3-70B",
    "codellama__CodeLlama-34b-Instruct-hf": "CodeLlama-34B",  # same architecture as CodeLlama-34b-hf
    "Qwen__Qwen-72B": "Qwen-72B",
    "microsoft__phi-2": "phi-2",
}


def vidur_architecture(stem: str) -> dict[str, str]:
    if not VIDUR_COMPUTE.is_dir():
        pytest.skip(f"Vidur A100 profiles not found at {VIDUR_COMPUTE} (shared/ is not beside the checkout)")
    path = VIDUR_COMPUTE / f"{stem}.mlp.csv"
    if not path.exists():
        pytest.skip(f"{path.name} is not in {VIDUR_COMPUTE}")
    cols = ("n_head", "n_kv_head", "n_embd", "n_expanded_embd", "use_gated_mlp")
    with path.open(newline="") as fh:
        archs = {tuple(row[c] for c in cols) for row in csv.DictReader(fh)}
    assert len(archs) == 1, f"{path.name} mixes architectures: {archs}"
    return dict(zip(cols, archs.pop()))


@pytest.mark.parametrize("stem", sorted(VIDUR_MODELS))
def test_architecture_matches_the_model_vidur_profiled(stem):
    # Vocabulary is not compared: Vidur pads Llama-2's 32000 to 32768.
    arch = vidur_architecture(stem)
    cfg = model(VIDUR_MODELS[stem])
    assert int(arch["n_head"]) == cfg.num_heads
    assert int(arch["n_kv_head"]) == cfg.num_kv_heads
    assert int(arch["n_embd"]) == cfg.hidden_size
    assert int(arch["n_expanded_embd"]) == cfg.intermediate_size
    assert (arch["use_gated_mlp"] == "True") == cfg.gated_mlp
