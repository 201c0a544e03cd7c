"""Decoder-only transformer architectures read from HF-style ``config.json`` files.

Models: dense, GQA/MQA and mixture-of-experts decoders — layer count, hidden size, heads and KV
    heads, head dimension (an explicit ``head_dim`` wider or narrower than hidden / heads, as in
    Qwen3, Gemma and Llama-3.2), MLP width (gated or not), experts per token, vocabulary, norms,
    parallel attention+MLP blocks (phi), tied embeddings (the LM head shares the input embedding,
    so its weights count once); multi-head latent attention (DeepSeek-V2/V3: its projections'
    parameters, and a KV cache of one latent plus rotary key per token and layer, whole on every
    tensor-parallel GPU). HF repo ids (``meta-llama/Llama-3.1-8B-Instruct``,
    ``google/gemma-2-9b-it``, ...) map to the shipped presets (:func:`preset_for_hf_id`).
Ignores: sliding-window (local) attention: ``sliding_window_tokens`` and ``sliding_window_layers``
    are read and kept on the config (Mistral v0.1, Gemma-2's alternate layers, Gemma-3's five
    local layers in six) but attention time and KV memory treat every layer as full attention unless
    ``attention`` is set (``workloads.attention_variants``: windows, sinks, budgets, hybrids with
    ``linear`` state-space layers, which Qwen3-Next's config selects by itself);
    Qwen3's QK-norm (two head_dim-wide RMSNorms per layer); Gemma's embedding scaling by
    sqrt(hidden), attention-logit and final-logit soft-capping and its extra post-attention /
    post-MLP norms (counted as two norms per layer like the others); biases' bytes (Qwen2's QKV
    biases, OPT, phi-2: under 0.1 % of the weights); rotary tables and rope scaling (context
    length is ``max_position``); vision towers of multimodal checkpoints (Gemma-3: the text
    decoder only); MLA's two latent RMSNorms (2,048 weights per layer) and DeepSeek-V3's MTP module
    (the 671B count excludes it, as the report does); ``quantization_config`` (the scheme is chosen
    in the scenario, e.g. ``W8A8-fp8-block``).
Sources: the models' published ``config.json`` files (shipped in ``workloads/models/``, each
    naming its Hugging Face repo in ``_source``); DeepSeek-AI, "DeepSeek-V2" (2024) section 2.1
    for the MLA projections; Gemma-3's text decoder from the ``text_config``
    of its config with the Gemma3TextConfig defaults written out.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, model_validator

from simulator.config.quantities import StrictConfig
from simulator.core.errors import ConfigError
from simulator.core.registry import register_model
from workloads.attention_variants import AttentionVariant, check_variant, kv_elems, layer_kinds
from workloads.linear_attention import LinearLayerConfig
from workloads.moe import RoutingConfig
from workloads.vision import VisionEncoderConfig

DTYPE_BYTES = {"fp32": 4.0, "bf16": 2.0, "fp16": 2.0, "fp8": 1.0, "int8": 1.0}


class TransformerConfig(StrictConfig):
    name: str
    family: str = Field(description="llama, mistral, mixtral, qwen, phi, opt, ...")
    num_layers: int = Field(gt=0)
    hidden_size: int = Field(gt=0)
    num_heads: int = Field(gt=0)
    num_kv_heads: int = Field(gt=0)
    head_dim: int = Field(gt=0)
    intermediate_size: int = Field(gt=0, description="width of one MLP projection")
    gated_mlp: bool = True
    vocab_size: int = Field(gt=0)
    max_position: int = Field(gt=0)
    num_experts: int = Field(default=1, ge=1, description="routed experts per MoE layer (1: a dense MLP)")
    experts_per_token: int = Field(default=1, ge=1, description="top-k: routed experts each token runs")
    moe_intermediate_size: int | None = Field(
        default=None, gt=0, description="width of one routed expert's MLP projection (default: intermediate_size)")
    num_shared_experts: int = Field(default=0, ge=0, description="experts every token runs besides its top-k "
                                                                  "(DeepSeek-V3: 1)")
    shared_expert_intermediate_size: int | None = Field(
        default=None, gt=0, description="width of the shared expert(s) together (default: num_shared_experts x "
                                        "moe_intermediate_size)")
    first_dense_layers: int = Field(default=0, ge=0, description="leading layers with a dense MLP of "
                                                                  "intermediate_size (DeepSeek first_k_dense_replace)")
    routing: RoutingConfig = Field(default_factory=RoutingConfig,
                                   description="MoE expert popularity and capacity: {dist: uniform|zipf|histogram, "
                                               "exponent, weights, capacity_factor, placement}")
    norm: Literal["rmsnorm", "layernorm"] = "rmsnorm"
    parallel_attn_mlp: bool = False
    tie_embeddings: bool = False
    dtype: Literal["fp32", "bf16", "fp16", "fp8", "int8"] = "bf16"
    sliding_window_tokens: int | None = Field(
        default=None, gt=0, description="window of the local (sliding-window) attention layers, tokens; recorded "
                                        "only: attention and KV treat every layer as full attention")
    sliding_window_layers: list[int] = Field(
        default_factory=list, description="indices of the layers using the sliding window (recorded only)")
    # Multi-head latent attention (DeepSeek-V2/V3): K and V come from one latent of kv_lora_rank per token,
    # cached with the decoupled rotary key (qk_rope_head_dim) and shared by all heads.
    q_lora_rank: int | None = Field(default=None, gt=0, description="MLA: rank of the query down-projection "
                                                                    "(None: a plain q projection)")
    kv_lora_rank: int | None = Field(default=None, gt=0, description="MLA: width of the cached KV latent "
                                                                     "(None: no MLA)")
    qk_nope_head_dim: int = Field(default=0, ge=0, description="MLA: per-head query/key width without rotary")
    qk_rope_head_dim: int = Field(default=0, ge=0, description="MLA: per-head rotary query width, and the "
                                                               "width of the one rotary key cached per token")
    v_head_dim: int = Field(default=0, ge=0, description="MLA: per-head value width")
    attention: AttentionVariant | None = Field(
        default=None, description="attention variants per layer and head (workloads.attention_variants): "
                                  "layer_pattern, sliding window, sinks, streaming heads, KV budgets, top-k, "
                                  "block-sparse prefill, cross-layer KV sharing; None: the model's own "
                                  "(sliding_window_layers are then recorded only)")
    linear: LinearLayerConfig | None = Field(
        default=None, description="the linear-attention / state-space layers (S in attention.layer_pattern; "
                                  "workloads.linear_attention)")
    vision: VisionEncoderConfig | None = Field(
        default=None, description="a ViT encoder whose image tokens join every prompt (workloads.vision): "
                                  "{preset: clip-vit-l-14-336 | qwen2-vl-vit, images_per_request, image_size_px, ...}")

    @model_validator(mode="after")
    def _check(self) -> TransformerConfig:
        if self.num_heads % self.num_kv_heads:
            raise ValueError(f"num_heads {self.num_heads} is not a multiple of num_kv_heads {self.num_kv_heads}")
        if self.experts_per_token > self.num_experts:
            raise ValueError(f"experts_per_token (top-k) {self.experts_per_token} exceeds num_experts "
                             f"{self.num_experts}")
        if self.routing.dist == "histogram" and len(self.routing.weights) != self.num_experts:
            raise ValueError(f"routing.weights has {len(self.routing.weights)} entries for {self.num_experts} experts")
        if self.first_dense_layers > self.num_layers:
            raise ValueError(f"first_dense_layers {self.first_dense_layers} exceeds num_layers {self.num_layers}")
        if self.sliding_window_layers and self.sliding_window_tokens is None:
            raise ValueError("sliding_window_layers is set but sliding_window_tokens is not")
        bad = [i for i in self.sliding_window_layers if not 0 <= i < self.num_layers]
        if bad:
            raise ValueError(f"sliding_window_layers {bad} outside layers 0..{self.num_layers - 1}")
        if self.kv_lora_rank and not (self.qk_nope_head_dim and self.qk_rope_head_dim and self.v_head_dim):
            raise ValueError("kv_lora_rank (MLA) needs qk_nope_head_dim, qk_rope_head_dim and v_head_dim > 0")
        if self.attention is not None or self.linear is not None:
            if self.kv_lora_rank:
                raise ValueError("attention variants and linear layers are not combined with MLA")
            check_variant(self)
        return self

    # -- derived sizes (per whole model, unsharded) -------------------------------------
    @property
    def dtype_bytes(self) -> float:
        return DTYPE_BYTES[self.dtype]

    @property
    def q_size(self) -> int:
        return self.num_heads * self.head_dim

    @property
    def kv_size(self) -> int:
        return self.num_kv_heads * self.head_dim

    def attn_params_per_layer(self) -> int:
        if self.kv_lora_rank:
            return self.mla_params_per_layer()
        return self.hidden_size * (self.q_size + 2 * self.kv_size) + self.q_size * self.hidden_size

    @property
    def is_mla(self) -> bool:
        return bool(self.kv_lora_rank)

    @property
    def mla_latent(self) -> int:
        """MLA: elements cached per token per layer (the KV latent and the shared rotary key)."""
        return (self.kv_lora_rank or 0) + self.qk_rope_head_dim

    def mla_params_per_layer(self) -> int:
        """MLA projections of one layer (DeepSeek-V2 paper, section 2.1): q down (hidden -> q_lora_rank)
        and up (-> heads x (nope + rope)) or one plain q projection, kv down (hidden -> kv_lora_rank +
        rope), kv up (kv_lora_rank -> heads x (nope + v)), output (heads x v -> hidden)."""
        h, nh, qk = self.hidden_size, self.num_heads, self.qk_nope_head_dim + self.qk_rope_head_dim
        q = h * self.q_lora_rank + self.q_lora_rank * nh * qk if self.q_lora_rank else h * nh * qk
        kv = h * self.mla_latent + (self.kv_lora_rank or 0) * nh * (self.qk_nope_head_dim + self.v_head_dim)
        return q + kv + nh * self.v_head_dim * h

    def kv_elems_per_token(self, tp: int = 1) -> int:
        """K/V elements one GPU of a ``tp``-way tensor-parallel replica stores per token over all
        layers: K and V of its KV heads (replicated when fewer than ``tp``), or, with MLA, the whole
        latent, which every GPU holds because all its heads read it."""
        if self.kv_lora_rank:
            return self.num_layers * self.mla_latent
        if self.attention is not None or self.linear is not None:  # the K/V that grow with the context
            return int(round(kv_elems(self, tp)[0]))
        return 2 * self.num_layers * max(1, self.num_kv_heads // tp) * self.head_dim

    def kv_bounded_bytes(self, tp: int = 1, elem_bytes: float | None = None) -> float:
        """Bytes one running sequence holds at most whatever its length, on one of ``tp`` GPUs: the
        K/V of windows and token budgets at their cap (``elem_bytes`` per element, default the model
        dtype), the state-space layers' states (0 without attention variants)."""
        if self.attention is None and self.linear is None:
            return 0.0
        b = self.dtype_bytes if elem_bytes is None else elem_bytes
        states = layer_kinds(self).count("S") * self.linear.state_elems(tp) * self.linear.state_dtype_bytes \
            if self.linear is not None else 0.0
        return kv_elems(self, tp)[1] * b + states

    @property
    def is_moe(self) -> bool:
        return self.num_experts > 1

    @property
    def expert_intermediate(self) -> int:
        """Width of one routed expert's projection."""
        return self.moe_intermediate_size or self.intermediate_size

    @property
    def shared_intermediate(self) -> int:
        """Width of the shared expert(s) of a MoE layer together (0: none)."""
        return self.shared_expert_intermediate_size or self.num_shared_experts * self.expert_intermediate

    @property
    def moe_layers(self) -> int:
        return self.num_layers - self.first_dense_layers if self.is_moe else 0

    def _mlp_params(self, width: int) -> int:
        return (3 if self.gated_mlp else 2) * self.hidden_size * width

    def mlp_params_per_layer(self) -> int:
        """MLP parameters of one layer averaged over the layers (dense leading layers included)."""
        if not self.is_moe:
            return self._mlp_params(self.intermediate_size)
        moe = self._mlp_params(self.expert_intermediate) * self.num_experts + \
            self._mlp_params(self.shared_intermediate) + self.hidden_size * self.num_experts
        dense = self._mlp_params(self.intermediate_size)
        return (moe * self.moe_layers + dense * self.first_dense_layers) // self.num_layers

    def active_params(self) -> int:
        """Parameters one token runs through (top-k and shared experts; every other weight)."""
        if not self.is_moe:
            return self.num_params()
        idle = self._mlp_params(self.expert_intermediate) * (self.num_experts - self.experts_per_token)
        return self.num_params() - idle * self.moe_layers

    def embedding_params(self) -> int:
        return self.vocab_size * self.hidden_size * (1 if self.tie_embeddings else 2)

    def num_params(self) -> int:
        norms = self.num_layers * 2 * self.hidden_size + self.hidden_size
        n_state = layer_kinds(self).count("S") if self.linear is not None else 0
        mixers = (self.num_layers - n_state) * self.attn_params_per_layer() + \
            (n_state * self.linear.params(self.hidden_size) if n_state else 0)
        vision = self.vision.params(self.hidden_size) if self.vision is not None else 0
        return mixers + self.num_layers * self.mlp_params_per_layer() + self.embedding_params() + norms + vision

    def weight_bytes(self) -> float:
        return self.num_params() * self.dtype_bytes

    def kv_bytes_per_token(self) -> float:
        """K and V of one token over all layers (unsharded; MLA: the latent and rotary key)."""
        if self.kv_lora_rank:
            return float(self.num_layers * self.mla_latent * self.dtype_bytes)
        if self.attention is not None or self.linear is not None:  # the K/V that grow with the context
            return kv_elems(self, 1)[0] * self.dtype_bytes
        return 2.0 * self.num_layers * self.kv_size * self.dtype_bytes


def _get(cfg: dict[str, Any], *keys: str, default: Any = None) -> Any:
    for k in keys:
        if k in cfg and cfg[k] is not None:
            return cfg[k]
    if default is not None:
        return default
    raise KeyError(f"config.json lacks {' / '.join(keys)}")


# Families whose MLP is gated (SwiGLU: gate, up and down projections) whatever ``hidden_act`` says.
_GATED_FAMILIES = frozenset({"llama", "mistral", "mixtral", "qwen", "qwen2", "qwen2_moe", "qwen3", "gemma",
                             "gemma2", "gemma3", "gemma3_text", "internlm", "internlm2", "baichuan"})
# Families whose HF config class leaves ``tie_word_embeddings`` at PretrainedConfig's default (True):
# their published config.json files omit the key but the LM head shares the input embedding.
_TIED_BY_DEFAULT = frozenset({"opt", "falcon", "refinedweb", "refinedwebmodel", "gpt2", "gemma", "gemma2", "gemma3",
                              "gemma3_text"})


def _kv_heads(cfg: dict[str, Any], mtype: str, heads: int) -> int:
    if mtype in ("falcon", "refinedweb", "refinedwebmodel"):
        # HF FalconAttention: new_decoder_architecture -> num_kv_heads; else multi_query -> 1; else MHA.
        if cfg.get("new_decoder_architecture", mtype == "refinedweb"):
            return int(_get(cfg, "num_kv_heads", "n_head_kv", default=heads))
        if cfg.get("multi_query", True):
            return 1
        return heads
    return int(_get(cfg, "num_key_value_heads", "multi_query_group_num", "num_kv_heads", default=heads))


def _sliding_window(cfg: dict[str, Any], mtype: str, layers: int) -> tuple[int | None, list[int]]:
    """The sliding window (tokens) and the indices of the layers using it, as HF's modelling code
    reads them: ``use_sliding_window: false`` (Qwen2/Qwen3) turns the window off; ``layer_types``
    names each layer; otherwise Gemma-2 alternates (even layers local), Gemma-3 makes every layer
    but each ``sliding_window_pattern``-th local, Qwen2/3 window the layers from
    ``max_window_layers`` on, and the rest (Mistral v0.1) window every layer."""
    window = cfg.get("sliding_window")
    if not window or cfg.get("use_sliding_window") is False:
        return None, []
    if isinstance(cfg.get("layer_types"), list):
        local = [i for i, t in enumerate(cfg["layer_types"]) if t == "sliding_attention"]
    elif mtype == "gemma2":
        local = [i for i in range(layers) if i % 2 == 0]
    elif mtype in ("gemma3", "gemma3_text"):
        pattern = int(cfg.get("sliding_window_pattern", 6))
        local = [i for i in range(layers) if (i + 1) % pattern]
    elif mtype in ("qwen2", "qwen3", "qwen2_moe") and "max_window_layers" in cfg:
        local = list(range(int(cfg["max_window_layers"]), layers))
    else:
        local = list(range(layers))
    return int(window), local


def from_hf(cfg: dict[str, Any], name: str = "") -> dict[str, Any]:
    """Normalise an HF ``config.json`` mapping to :class:`TransformerConfig` fields."""
    if isinstance(cfg.get("text_config"), dict) and "hidden_size" not in cfg:  # multimodal: the text decoder
        cfg = {"torch_dtype": cfg.get("torch_dtype"), **cfg["text_config"]}
    mtype = str(cfg.get("model_type", "llama")).lower()
    hidden = int(_get(cfg, "hidden_size", "n_embd", "n_embed", "d_model"))
    heads = int(_get(cfg, "num_attention_heads", "n_head"))
    out: dict[str, Any] = {
        "name": name or str(cfg.get("_name_or_path", mtype)),
        "family": mtype,
        "num_layers": int(_get(cfg, "num_hidden_layers", "n_layer")),
        "hidden_size": hidden,
        "num_heads": heads,
        "num_kv_heads": _kv_heads(cfg, mtype, heads),
        "head_dim": int(_get(cfg, "head_dim", "kv_channels", default=hidden // heads)),
        "vocab_size": int(_get(cfg, "vocab_size")),
        "max_position": int(_get(cfg, "max_position_embeddings", "seq_length", "n_positions", default=2048)),
        "tie_embeddings": bool(cfg.get("tie_word_embeddings", mtype in _TIED_BY_DEFAULT)),
    }
    if mtype == "qwen":  # Qwen-1 stores twice the per-projection width (w1 and w2 halves of one GEMM)
        out["intermediate_size"] = int(_get(cfg, "intermediate_size")) // 2
        out["gated_mlp"] = True
    elif mtype == "opt":
        # word_embed_proj_dim != hidden_size (opt-350m) adds project_in/out matrices, not modelled here.
        out.update(intermediate_size=int(_get(cfg, "ffn_dim")), gated_mlp=False, norm="layernorm")
    elif mtype in ("phi", "phi-msft"):
        out.update(intermediate_size=int(_get(cfg, "intermediate_size", "n_inner", default=4 * hidden)),
                   gated_mlp=False, norm="layernorm", parallel_attn_mlp=True)
    elif mtype in ("falcon", "refinedweb", "refinedwebmodel"):
        # Non-gated GELU MLP, 4*hidden wide unless ffn_hidden_size says otherwise; attention and MLP
        # read the same input when parallel_attn (HF default True).
        out.update(intermediate_size=int(_get(cfg, "ffn_hidden_size", default=4 * hidden)), gated_mlp=False,
                   norm="layernorm", parallel_attn_mlp=bool(cfg.get("parallel_attn", True)))
    else:
        out["intermediate_size"] = int(_get(cfg, "intermediate_size"))
        out["gated_mlp"] = mtype in _GATED_FAMILIES or \
            str(cfg.get("hidden_act", "silu")) in ("silu", "swiglu", "gelu_pytorch_tanh")
    experts = cfg.get("num_local_experts") or cfg.get("n_routed_experts") or cfg.get("num_experts")
    if experts and int(experts) > 1:  # Mixtral / gpt-oss, DeepSeek-V2/V3, Qwen-MoE
        out["num_experts"] = int(experts)
        out["experts_per_token"] = int(_get(cfg, "num_experts_per_tok", "experts_per_token", default=2))
        if cfg.get("moe_intermediate_size"):
            out["moe_intermediate_size"] = int(cfg["moe_intermediate_size"])
        if cfg.get("n_shared_experts"):
            out["num_shared_experts"] = int(cfg["n_shared_experts"])
        if cfg.get("shared_expert_intermediate_size"):
            out["shared_expert_intermediate_size"] = int(cfg["shared_expert_intermediate_size"])
            out["num_shared_experts"] = max(1, out.get("num_shared_experts", 1))
        if cfg.get("first_k_dense_replace"):
            out["first_dense_layers"] = int(cfg["first_k_dense_replace"])
    dtype = str(cfg.get("torch_dtype") or "bfloat16")
    out["dtype"] = {"float16": "fp16", "bfloat16": "bf16", "float32": "fp32"}.get(dtype, "bf16")
    if mtype in ("deepseek_v2", "deepseek_v3") and cfg.get("kv_lora_rank"):  # MLA (MoE keys read above)
        out.update(q_lora_rank=int(cfg["q_lora_rank"]) if cfg.get("q_lora_rank") else None,
                   kv_lora_rank=int(cfg["kv_lora_rank"]), qk_nope_head_dim=int(cfg["qk_nope_head_dim"]),
                   qk_rope_head_dim=int(cfg["qk_rope_head_dim"]), v_head_dim=int(cfg["v_head_dim"]),
                   head_dim=int(cfg["v_head_dim"]))  # head_dim: the width each head's output has (O projection)
    if mtype == "qwen3_next" or cfg.get("linear_num_value_heads"):  # gated delta net layers, attention every n-th
        every = int(cfg.get("full_attention_interval", 4))
        pattern = "".join("F" if (i + 1) % every == 0 else "S" for i in range(out["num_layers"]))
        if isinstance(cfg.get("layer_types"), list):
            pattern = "".join("F" if t == "full_attention" else "S" for t in cfg["layer_types"])
        out["attention"] = {"layer_pattern": pattern}
        out["linear"] = {"kind": "gated_delta_net", "num_heads": int(cfg["linear_num_value_heads"]),
                         "head_dim": int(cfg["linear_value_head_dim"]), "state_dim": int(cfg["linear_key_head_dim"]),
                         "num_groups": int(cfg["linear_num_key_heads"]),
                         "conv_kernel": int(cfg.get("linear_conv_kernel_dim", 4)), "chunk_size": 64}
    window, local = _sliding_window(cfg, mtype, out["num_layers"])
    if window is not None and local:
        out.update(sliding_window_tokens=window, sliding_window_layers=local)
    return out


def read_hf_config(path: Path) -> dict[str, Any]:
    try:
        cfg = json.loads(Path(path).read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise ConfigError(f"malformed JSON: {exc.msg}", where=f"{path}:{exc.lineno}") from None
    if not isinstance(cfg, dict):
        raise ConfigError("config.json must hold a mapping", where=str(path))
    try:
        return from_hf(cfg, name=Path(path).stem)
    except KeyError as exc:
        raise ConfigError(str(exc.args[0]), where=str(path)) from None


MODELS_DIR = Path(__file__).resolve().parent.parent / "models"
# Name tokens that mark a fine-tune or a checkpoint format of the same architecture.
_VARIANT_TOKENS = frozenset({"instruct", "it", "chat", "hf", "base", "pt", "fp8", "fp4", "nvfp4", "dynamic", "awq",
                             "gptq", "int4", "int8", "w4a16", "w8a8", "w8a16", "bnb", "4bit"})


def _norm(name: str) -> str:
    return name.lower().replace("_", "-")


def preset_for_hf_id(repo_id: str) -> str | None:
    """The shipped preset of a Hugging Face repo id (``Qwen/Qwen2.5-72B-Instruct`` -> ``Qwen2.5-72B``),
    or None. The organisation, a leading ``Meta-``, and variant tokens (``-Instruct``, ``-it``,
    ``-chat``, ``-hf``, ``-FP8``, ``-AWQ``, ...) are dropped and the rest matched case-insensitively;
    a version suffix (``-v0.1``) is dropped last if nothing matched with it."""
    stems = {_norm(p.stem): p.stem for p in MODELS_DIR.glob("*.json")}
    repo = repo_id.strip().rstrip("/").rsplit("/", 1)[-1]
    tokens = [t for t in re.split(r"[-_]", repo.lower()) if t and t not in _VARIANT_TOKENS]
    quant = re.compile(r"^(quantized\.\w+|fp8\w*|w\d+a\d+\w*)$")  # e.g. quantized.w8a8, FP8-dynamic
    tokens = [t for t in tokens if not quant.match(t)]
    if tokens[:1] == ["meta"]:
        tokens = tokens[1:]
    candidates = ["-".join(tokens)]
    if len(tokens) > 1 and re.fullmatch(r"v\d+(\.\d+)*", tokens[-1]):
        candidates.append("-".join(tokens[:-1]))
    for cand in candidates:
        if cand in stems:
            return stems[cand]
    return None


@register_model("transformer", config=TransformerConfig, presets="../models", preset_reader=read_hf_config)
class Transformer:
    """A decoder-only transformer read from an HF-style config.json (dense, GQA/MQA, MoE)."""
    def __init__(self, config: TransformerConfig) -> None:
        self.config = config
