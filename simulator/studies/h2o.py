"""H2O study: keep heavy-hitter + recent tokens within a KV budget, vs full KV and FlexGen offloading.

Models: every system is a policy of the FlexGen pipeline (:mod:`simulator.studies.flexgen`) on the
    same GPU/host, each at the largest batch its memory allows (``best_policy`` also tries weight
    placements and zig-zag block sizes where the system has them):
    ``deepspeed`` (ZeRO-Inference-like: weights streamed from DRAM with prefetch, full KV on the GPU,
    one GPU batch), ``accelerate`` (HF Accelerate-like: the same without overlapping the transfer
    with compute), ``flexgen`` (zig-zag blocks, full KV in DRAM, attention on the CPU), ``h2o``
    (FlexGen + a KV budget: only ``kv_budget`` of each sequence's KV is stored and read per decode
    step, so KV may now fit on the GPU, letting attention run there; the better of KV on GPU and
    KV in DRAM is kept). The in-memory comparison (weights and KV on the GPU: batch, throughput and
    latency at an equal batch) runs on the serving engine instead, with the ``h2o`` KV-cache policy:
    scenarios/papers/h2o_opt6.7b_t4_serving.yaml. This study keeps only what the engine cannot run:
    weights streamed from host DRAM.
Ignores: accuracy (the budget is an input: H2O reports quality held at 20%), the cost of
    accumulating attention scores and evicting (a small elementwise pass per step), prefill
    attention being computed in full before eviction (it is, and its KV is dropped afterwards).
Sources: Zhang et al., "H2O: Heavy-Hitter Oracle for Efficient Generative Inference of Large
    Language Models" (NeurIPS 2023): 20% budget, up to 29x throughput vs DeepSpeed ZeRO-Inference
    and HF Accelerate, up to 3x vs FlexGen on OPT-6.7B/30B, up to 1.9x lower latency; FlexGen
    (Sheng et al., ICML 2023) for the offloading baseline.
"""

from __future__ import annotations

from typing import Any

from pydantic import Field

from simulator.config.quantities import StrictConfig
from simulator.studies.flexgen import Component, best_policy, resolve_hw
from simulator.studies.flexgen import Config as FlexConfig


class Config(StrictConfig):
    models: list[str] = Field(default_factory=lambda: ["OPT-6.7B", "OPT-30B"])
    gpu: Component = "L4"
    host: Component = "DGX-A100-host"
    prompt_tokens: int = Field(default=512, gt=0)
    gen_tokens: int = Field(default=32, gt=0)
    kv_budget: float = Field(default=0.2, gt=0, le=1, description="share of KV kept (input; quality not modelled)")
    max_gpu_batch: int = Field(default=256, gt=0, description="largest GPU batch tried")
    gpu_compute_efficiency: float = Field(default=0.6, gt=0, le=1)
    gpu_memory_efficiency: float = Field(default=0.8, gt=0, le=1)
    cpu_memory_efficiency: float = Field(default=0.5, gt=0, le=1)


def _systems(cfg: Config, model: str) -> dict[str, tuple[Any, Any]]:
    base = FlexConfig(model=model, gpu=cfg.gpu, host=cfg.host, ssd=None, prompt_tokens=cfg.prompt_tokens,
                      gen_tokens=cfg.gen_tokens, gpu_compute_efficiency=cfg.gpu_compute_efficiency,
                      gpu_memory_efficiency=cfg.gpu_memory_efficiency,
                      cpu_memory_efficiency=cfg.cpu_memory_efficiency)
    hw = resolve_hw(base)
    cap = cfg.max_gpu_batch
    full_gpu = dict(kv_where="gpu", attn_on="gpu")
    out: dict[str, tuple[Any, Any]] = {
        "deepspeed": best_policy(base.model_copy(update=full_gpu), hw, blocks=(1,), cap=cap),
        "accelerate": best_policy(base.model_copy(update={**full_gpu, "overlap": False}), hw, blocks=(1,), cap=cap),
        "flexgen": best_policy(base.model_copy(update=dict(kv_where="cpu", attn_on="cpu")), hw, cap=cap),
    }
    h_gpu = best_policy(base.model_copy(update={**full_gpu, "kv_fraction": cfg.kv_budget}), hw, cap=cap)
    h_cpu = best_policy(base.model_copy(update=dict(kv_where="cpu", attn_on="cpu", kv_fraction=cfg.kv_budget)),
                        hw, cap=cap)
    cands = [p for p in (h_gpu, h_cpu) if p[1] is not None]
    out["h2o"] = max(cands, key=lambda p: p[1]["throughput_tok_s"]) if cands else (None, None)
    return out


def _tag(model: str) -> str:
    return model.lower().replace("-", "_").replace(".", "_")


def run(cfg: Config) -> dict:
    res: dict[str, Any] = {"kv_budget": cfg.kv_budget}
    for model in cfg.models:
        t = _tag(model)
        systems = _systems(cfg, model)
        tput = {}
        for name, (_pol, r) in systems.items():
            tput[name] = r["throughput_tok_s"] if r else 0.0
            res[f"{t}_{name}_tok_s"] = tput[name]
            res[f"{t}_{name}_batch"] = r["block_size"] if r else 0
        for base in ("deepspeed", "accelerate", "flexgen"):
            res[f"{t}_h2o_vs_{base}"] = tput["h2o"] / tput[base] if tput[base] else float("inf")
    return res
