"""Decoder-only transformer architectures read from HF-style ``config.json`` files.

Models: dense, GQA/MQA and mixture-of-experts decoders — layer count, hidden size, heads and KV
    heads, head dimension, MLP width (gated or not), experts per token, vocabulary, norms,
    parallel attention+MLP blocks (phi), tied embeddings.
Ignores: sliding-window attention masks (Mistral; treated as full attention), biases' bytes,
    rotary tables.
Sources: the models' published ``config.json`` files (shipped in ``workloads/models/``).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, model_validator

from simulator.config.quantities import StrictConfig
from simulator.core.errors import ConfigError
from simulator.core.registry import register_model

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
    num_experts: int = Field(default=1, ge=1)
    experts_per_token: int = Field(default=1, ge=1)
    norm: Literal["rmsnorm", "layernorm"] = "rmsnorm"
    parallel_attn_mlp: bool = False
    tie_embeddings: bool = False
    dtype: Literal["fp32", "bf16", "fp16", "fp8", "int8"] = "bf16"

    @model_validator(mode="after")
    def _check(self) -> TransformerConfig:
        if self.num_heads % self.num_kv_heads:
            raise ValueError(f"num_heads {self.num_heads} is not a multiple of num_kv_heads {self.num_kv_heads}")
        if self.experts_per_token > self.num_experts:
            raise ValueError("experts_per_token exceeds num_experts")
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
        return self.hidden_size * (self.q_size + 2 * self.kv_size) + self.q_size * self.hidden_size

    def mlp_params_per_layer(self) -> int:
        per_expert = (3 if self.gated_mlp else 2) * self.hidden_size * self.intermediate_size
        router = self.hidden_size * self.num_experts if self.num_experts > 1 else 0
        return per_expert * self.num_experts + router

    def embedding_params(self) -> int:
        return self.vocab_size * self.hidden_size * (1 if self.tie_embeddings else 2)

    def num_params(self) -> int:
        norms = self.num_layers * 2 * self.hidden_size + self.hidden_size
        return self.num_layers * (self.attn_params_per_layer() + self.mlp_params_per_layer()) + \
            self.embedding_params() + norms

    def weight_bytes(self) -> float:
        return self.num_params() * self.dtype_bytes

    def kv_bytes_per_token(self) -> float:
        """K and V of one token over all layers (unsharded)."""
        return 2.0 * self.num_layers * self.kv_size * self.dtype_bytes


def _get(cfg: dict[str, Any], *keys: str, default: Any = None) -> Any:
    for k in keys:
        if k in cfg and cfg[k] is not None:
            return cfg[k]
    if default is not None:
        return default
    raise KeyError(f"config.json lacks {' / '.join(keys)}")


# Families whose MLP is gated (SwiGLU: gate, up and down projections) whatever ``hidden_act`` says.
_GATED_FAMILIES = frozenset({"llama", "mistral", "mixtral", "qwen", "qwen2", "qwen2_moe", "gemma", "gemma2",
                             "internlm", "internlm2", "baichuan"})
# Families whose HF config class leaves ``tie_word_embeddings`` at PretrainedConfig's default (True):
# their published config.json files omit the key but the LM head shares the input embedding.
_TIED_BY_DEFAULT = frozenset({"opt", "falcon", "refinedweb", "refinedwebmodel", "gpt2"})


def _kv_heads(cfg: dict[str, Any], mtype: str, heads: int) -> int:
    if mtype in ("falcon", "refinedweb", "refinedwebmodel"):
        # HF FalconAttention: new_decoder_architecture -> num_kv_heads; else multi_query -> 1; else MHA.
        if cfg.get("new_decoder_architecture", mtype == "refinedweb"):
            return int(_get(cfg, "num_kv_heads", "n_head_kv", default=heads))
        if cfg.get("multi_query", True):
            return 1
        return heads
    return int(_get(cfg, "num_key_value_heads", "multi_query_group_num", "num_kv_heads", default=heads))


def from_hf(cfg: dict[str, Any], name: str = "") -> dict[str, Any]:
    """Normalise an HF ``config.json`` mapping to :class:`TransformerConfig` fields."""
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
    if "num_local_experts" in cfg:
        out["num_experts"] = int(cfg["num_local_experts"])
        out["experts_per_token"] = int(_get(cfg, "num_experts_per_tok", default=2))
    dtype = str(cfg.get("torch_dtype", "bfloat16"))
    out["dtype"] = {"float16": "fp16", "bfloat16": "bf16", "float32": "fp32"}.get(dtype, "bf16")
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


@register_model("transformer", config=TransformerConfig, presets="../models", preset_reader=read_hf_config)
class Transformer:
    def __init__(self, config: TransformerConfig) -> None:
        self.config = config
