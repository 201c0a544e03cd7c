"""The model presets serving benchmarks use: Llama-3.x, Qwen3, Qwen2.5, Mistral v0.3, Gemma-2/3.

Parameter counts are checked within 3 % of the published figures (HF model cards; Gemma-3's from
the Gemma 3 technical report's table of embedding + non-embedding parameters, the text decoder
without the 417M vision encoder). ``num_params()`` leaves out biases (Qwen2's QKV), Qwen3's QK-norm
and Gemma's extra norms, all under 0.01 % of the model.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from simulator.config.loader import resolve_component
from simulator.core import registry as reg
from simulator.core.errors import ConfigError
from workloads.architectures.transformer import TransformerConfig, from_hf, preset_for_hf_id

MODELS_DIR = Path(__file__).resolve().parents[1] / "workloads" / "models"

# preset -> published parameter count (HF model card / repo page unless noted)
PUBLISHED = {
    "Llama-3.1-8B": 8.03e9,
    "Llama-3.1-70B": 70.6e9,
    "Llama-3.2-1B": 1.24e9,
    "Llama-3.2-3B": 3.21e9,
    "Llama-3.3-70B": 70.6e9,
    "Qwen3-0.6B": 0.6e9,  # card: 0.6B (0.44B non-embedding), tied embedding
    "Qwen3-1.7B": 1.7e9,
    "Qwen3-4B": 4.0e9,
    "Qwen3-8B": 8.2e9,
    "Qwen3-14B": 14.8e9,
    "Qwen3-32B": 32.8e9,
    "Qwen2.5-7B": 7.61e9,
    "Qwen2.5-14B": 14.7e9,
    "Qwen2.5-32B": 32.5e9,
    "Qwen2.5-72B": 72.7e9,
    "Mistral-7B-v0.3": 7.25e9,
    "Gemma-2-9B": 9.24e9,
    "Gemma-2-27B": 27.2e9,
    "Gemma-3-4B": (675 + 3_209) * 1e6,  # Gemma 3 technical report (2025), Table 1: embedding + non-embedding
    "Gemma-3-12B": (1_012 + 10_759) * 1e6,
    "Gemma-3-27B": (1_416 + 25_600) * 1e6,
}
NEW = sorted(set(PUBLISHED) - {"Llama-3.1-8B", "Llama-3.1-70B"})


def model(preset: str, **overrides) -> TransformerConfig:
    return resolve_component({"kind": "transformer", "preset": preset, **overrides}, reg.MODELS, "model").config


def raw(preset: str) -> dict:
    return json.loads((MODELS_DIR / f"{preset}.json").read_text(encoding="utf-8"))


@pytest.mark.parametrize("preset", sorted(PUBLISHED))
def test_every_benchmark_model_has_its_published_parameter_count_within_3_percent(preset):
    n, published = model(preset).num_params(), PUBLISHED[preset]
    assert abs(n - published) / published <= 0.03, f"{preset}: {n / 1e9:.3f}B vs published {published / 1e9}B"


@pytest.mark.parametrize("preset", NEW)
def test_every_new_preset_is_accepted_by_name_and_names_its_hugging_face_source(preset):
    assert model(preset).name == preset
    org, _, repo = raw(preset)["_source"].partition("/")
    assert org and repo


@pytest.mark.parametrize("preset", NEW)
def test_every_new_preset_is_bf16_as_served(preset):
    assert model(preset).dtype == "bf16"


# -- KV bytes per token from first principles: 2 (K and V) x layers x KV heads x head_dim x 2 B ----

@pytest.mark.parametrize("preset,layers,kv_heads,head_dim", [
    ("Llama-3.2-1B", 16, 8, 64), ("Llama-3.2-3B", 28, 8, 128), ("Llama-3.3-70B", 80, 8, 128),
    ("Qwen3-0.6B", 28, 8, 128), ("Qwen3-8B", 36, 8, 128), ("Qwen3-32B", 64, 8, 128),
    ("Qwen2.5-7B", 28, 4, 128), ("Qwen2.5-72B", 80, 8, 128), ("Mistral-7B-v0.3", 32, 8, 128),
    ("Gemma-2-9B", 42, 8, 256), ("Gemma-2-27B", 46, 16, 128), ("Gemma-3-4B", 34, 4, 256),
    ("Gemma-3-12B", 48, 8, 256), ("Gemma-3-27B", 62, 16, 128),
])
def test_kv_bytes_per_token_are_two_tensors_per_layer_of_kv_heads_times_head_dim_in_bf16(preset, layers, kv_heads,
                                                                                          head_dim):
    assert model(preset).kv_bytes_per_token() == 2 * layers * kv_heads * head_dim * 2


def test_qwen3_8b_keeps_144_kib_of_kv_per_token_and_gemma_2_9b_336_kib():
    assert model("Qwen3-8B").kv_bytes_per_token() == 144 * 1024
    assert model("Gemma-2-9B").kv_bytes_per_token() == 336 * 1024


# -- what matters for timing and memory -------------------------------------------------------------

def test_an_explicit_head_dim_wider_than_hidden_over_heads_sets_the_attention_width():
    q = model("Qwen3-0.6B")  # hidden 1024, 16 heads of 128: the query is twice as wide as the residual
    assert q.head_dim == 128 and q.q_size == 2048 != q.hidden_size
    g = model("Gemma-2-9B")  # 3584 / 16 = 224, but the heads are 256 wide
    assert g.head_dim == 256 and g.q_size == 4096
    assert q.attn_params_per_layer() == 1024 * (2048 + 2 * 1024) + 2048 * 1024


def test_a_tied_embedding_counts_its_weights_once():
    tied = model("Qwen3-4B")
    untied = model("Qwen3-4B", tie_embeddings=False)
    assert tied.tie_embeddings and not model("Qwen3-8B").tie_embeddings
    assert untied.num_params() - tied.num_params() == 151936 * 2560


@pytest.mark.parametrize("preset", ["Gemma-2-9B", "Gemma-2-27B", "Gemma-3-4B", "Gemma-3-12B", "Gemma-3-27B",
                                    "Llama-3.2-1B", "Llama-3.2-3B", "Qwen3-0.6B", "Qwen3-1.7B", "Qwen3-4B"])
def test_small_llamas_small_qwen3s_and_all_gemmas_tie_the_lm_head(preset):
    assert model(preset).tie_embeddings


@pytest.mark.parametrize("preset", ["Qwen3-8B", "Gemma-2-9B", "Gemma-3-27B", "Qwen2.5-72B"])
def test_qwen_and_gemma_use_a_gated_mlp_with_rmsnorm(preset):
    cfg = model(preset)
    assert cfg.gated_mlp and cfg.norm == "rmsnorm" and not cfg.parallel_attn_mlp


def test_the_llama_3_1_to_3_3_files_carry_128k_context_and_llama3_rope_scaling():
    for preset, factor in (("Llama-3.1-8B", 8.0), ("Llama-3.1-70B", 8.0), ("Llama-3.3-70B", 8.0),
                           ("Llama-3.2-1B", 32.0), ("Llama-3.2-3B", 32.0)):
        cfg = raw(preset)
        assert cfg["max_position_embeddings"] == 131072 and model(preset).max_position == 131072
        assert cfg["rope_scaling"] == {"factor": factor, "high_freq_factor": 4.0, "low_freq_factor": 1.0,
                                       "original_max_position_embeddings": 8192, "rope_type": "llama3"}
        assert cfg["rope_theta"] == 500000.0 and cfg["vocab_size"] == 128256


def test_llama_3_3_70b_has_the_architecture_of_llama_3_1_70b():
    a, b = model("Llama-3.3-70B"), model("Llama-3.1-70B")
    assert a.model_dump(exclude={"name"}) == b.model_dump(exclude={"name"})


def test_mistral_7b_v0_3_has_the_32768_vocabulary_and_no_sliding_window():
    v3, v1 = model("Mistral-7B-v0.3"), model("Mistral-7B")
    assert (v3.vocab_size, v1.vocab_size) == (32768, 32000)
    assert v3.sliding_window_tokens is None and v3.sliding_window_layers == []


# -- sliding windows: recorded on the config, not modelled ----------------------------------------

def test_gemma_2_records_a_4096_token_window_on_its_even_layers():
    cfg = model("Gemma-2-9B")
    assert cfg.sliding_window_tokens == 4096
    assert cfg.sliding_window_layers == list(range(0, 42, 2))


def test_gemma_3_records_a_1024_token_window_on_five_layers_of_every_six():
    cfg = model("Gemma-3-27B")
    assert cfg.sliding_window_tokens == 1024
    assert len(cfg.sliding_window_layers) == 52 and 5 not in cfg.sliding_window_layers
    assert [i for i in range(62) if i not in cfg.sliding_window_layers] == [5, 11, 17, 23, 29, 35, 41, 47, 53, 59]


def test_mistral_7b_v0_1_records_its_4096_token_window_on_every_layer():
    cfg = model("Mistral-7B")
    assert cfg.sliding_window_tokens == 4096 and cfg.sliding_window_layers == list(range(32))


@pytest.mark.parametrize("preset", ["Qwen2.5-7B", "Qwen2.5-72B", "Qwen3-32B", "Llama-3.1-8B"])
def test_qwen_with_use_sliding_window_false_and_llama_have_no_window(preset):
    cfg = model(preset)
    assert cfg.sliding_window_tokens is None and cfg.sliding_window_layers == []


def test_the_window_does_not_change_kv_bytes_yet():
    cfg = model("Gemma-2-9B")
    assert cfg.kv_bytes_per_token() == model("Gemma-2-9B", sliding_window_tokens=None,
                                             sliding_window_layers=[]).kv_bytes_per_token()


def test_a_window_layer_outside_the_model_is_a_config_error_naming_the_field():
    with pytest.raises(ConfigError, match="sliding_window_layers"):
        model("Gemma-2-9B", sliding_window_layers=[0, 42])
    with pytest.raises(ConfigError, match="sliding_window_tokens"):
        model("Qwen3-8B", sliding_window_layers=[0])


def test_layer_types_in_a_config_name_the_local_layers():
    cfg = {**raw("Gemma-3-4B"), "layer_types": ["sliding_attention", "full_attention"] * 17}
    out = from_hf(cfg, "x")
    assert out["sliding_window_layers"] == list(range(0, 34, 2))


def test_a_multimodal_config_reads_its_text_decoder():
    text = {k: v for k, v in raw("Gemma-3-12B").items() if k not in ("_source", "torch_dtype")}
    mm = {"model_type": "gemma3", "torch_dtype": "bfloat16", "text_config": text, "vision_config": {}}
    assert TransformerConfig(**from_hf(mm, "g")).num_params() == model("Gemma-3-12B").num_params()


# -- Hugging Face repo ids -------------------------------------------------------------------------

@pytest.mark.parametrize("repo_id,preset", [
    ("meta-llama/Llama-3.1-8B-Instruct", "Llama-3.1-8B"),
    ("meta-llama/Llama-3.1-70B", "Llama-3.1-70B"),
    ("meta-llama/Meta-Llama-3.1-8B-Instruct", "Llama-3.1-8B"),
    ("meta-llama/Meta-Llama-3-70B-Instruct", "Llama-3-70B"),
    ("meta-llama/Llama-3.3-70B-Instruct", "Llama-3.3-70B"),
    ("meta-llama/Llama-3.2-1B-Instruct", "Llama-3.2-1B"),
    ("nvidia/Llama-3.1-8B-Instruct-FP8", "Llama-3.1-8B"),
    ("neuralmagic/Meta-Llama-3.1-70B-Instruct-FP8-dynamic", "Llama-3.1-70B"),
    ("Qwen/Qwen3-32B", "Qwen3-32B"),
    ("Qwen/Qwen3-8B-FP8", "Qwen3-8B"),
    ("Qwen/Qwen2.5-72B-Instruct", "Qwen2.5-72B"),
    ("Qwen/Qwen2.5-7B-Instruct-AWQ", "Qwen2.5-7B"),
    ("mistralai/Mistral-7B-Instruct-v0.3", "Mistral-7B-v0.3"),
    ("mistralai/Mistral-7B-v0.1", "Mistral-7B"),
    ("mistralai/Mixtral-8x7B-Instruct-v0.1", "Mixtral-8x7B"),
    ("google/gemma-2-9b-it", "Gemma-2-9B"),
    ("google/gemma-3-27b-it", "Gemma-3-27B"),
    ("GOOGLE/GEMMA-2-27B-IT", "Gemma-2-27B"),
    ("Llama-3.2-3B", "Llama-3.2-3B"),
    ("Qwen/Qwen3-235B-A22B-FP8", "Qwen3-235B-A22B"),
    ("Qwen/Qwen3-30B-A3B", "Qwen3-30B-A3B"),
    ("openai/gpt-oss-120b", "gpt-oss-120b"),
    ("mistralai/Mixtral-8x22B-Instruct-v0.1", "Mixtral-8x22B"),
    ("deepseek-ai/DeepSeek-V3", "DeepSeek-V3"),
    ("deepseek-ai/DeepSeek-R1", "DeepSeek-R1"),
])
def test_a_hugging_face_repo_id_resolves_to_the_shipped_preset(repo_id, preset):
    assert preset_for_hf_id(repo_id) == preset
    assert model(preset_for_hf_id(repo_id)).name == preset


@pytest.mark.parametrize("repo_id", ["moonshotai/Kimi-K2.5", "zhipuai/GLM-5", "meta-llama/Llama-4-Scout",
                                     "", "google/gemma-3-1b-it"])
def test_an_unknown_repo_id_resolves_to_none(repo_id):
    assert preset_for_hf_id(repo_id) is None


@pytest.mark.parametrize("path", sorted(MODELS_DIR.glob("*.json")), ids=lambda p: p.stem)
def test_every_shipped_file_is_found_again_from_its_own_source_repo_id(path):
    assert preset_for_hf_id(json.loads(path.read_text(encoding="utf-8"))["_source"]) == path.stem


# Published totals: Qwen3 model card (235B total / 22B activated; 30.5B / 3.3B), Mistral AI
# (Mixtral-8x22B: 141B / 39B), OpenAI gpt-oss model card (116.8B total, 5.1B active; 20.9B / 3.6B),
# whose active count leaves out the input embedding table (a gather, not a matmul), which
# active_params keeps: one vocab x hidden table is added to the card's figure.
@pytest.mark.parametrize("preset,total,active", [
    ("Qwen3-235B-A22B", 235e9, 22e9), ("Qwen3-30B-A3B", 30.5e9, 3.3e9), ("Mixtral-8x22B", 141e9, 39e9),
    ("gpt-oss-120b", 116.8e9, 5.1e9 + 201088 * 2880), ("gpt-oss-20b", 20.9e9, 3.6e9 + 201088 * 2880),
])
def test_moe_presets_count_the_published_total_and_active_parameters(preset, total, active):
    m = model(preset)
    assert m.num_params() == pytest.approx(total, rel=0.03)
    assert m.active_params() == pytest.approx(active, rel=0.08)
