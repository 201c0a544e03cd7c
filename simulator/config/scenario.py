"""The scenario file's top-level structure.

Component blocks (``{kind: ..., preset: ..., <overrides>}``) are kept as plain mappings here and
resolved against their plug-in's strict config by :mod:`simulator.config.loader`.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, model_validator

from simulator.config.quantities import Bytes, PositiveSeconds, Seconds, StrictConfig

Block = dict[str, Any]


class HardwareSection(StrictConfig):
    device: Block = Field(description="{kind: gpu, preset: H100-SXM, <overrides>}")
    interconnect: Block | None = Field(
        default=None, description="link between the GPUs of one replica; default: the device's own")
    timing: Block = Field(default_factory=lambda: {"kind": "tile"},
                          description="timing backend: {kind: tile} (default), roofline, detailed, profiled, constant")
    network: Block | None = Field(default=None, description="inter-node link per GPU for replicas wider than a node "
                                                            "(MoE all-to-all), e.g. {kind: link, preset: IB-NDR}")
    gpus_per_node: int = Field(default=8, ge=1, description="GPUs joined by the interconnect (with network)")


class PoolSection(StrictConfig):
    """A group of identical replicas. ``role`` prefill/decode pools disaggregate serving: a request
    is prefilled in a prefill pool, its KV cache moved over ``cluster.kv_transfer``, then decoded
    in a decode pool."""

    name: str
    role: Literal["both", "prefill", "decode"] = "both"
    replicas: int = Field(default=1, ge=1)
    tensor_parallel: int = Field(default=1, ge=1)
    expert_parallel: int = Field(default=1, ge=1, description="MoE experts split over this many of the "
                                                               "tensor-parallel GPUs (divides tensor_parallel)")
    attention_data_parallel: int = Field(default=1, ge=1, description="attention in this many data-parallel "
                                                                       "groups of tensor_parallel / N GPUs, each "
                                                                       "with its own requests (MoE models)")
    pipeline_parallel: int = Field(default=1, ge=1, description="stages per replica (layers split evenly)")
    context_parallel: int = Field(default=1, ge=1, description="each sequence split over this many groups of "
                                                                "tensor_parallel / N GPUs (ring attention)")
    device: Block | None = Field(default=None, description="default: hardware.device")
    interconnect: Block | None = Field(default=None, description="default: hardware.interconnect")
    scheduler: Block | None = Field(default=None, description="default: policies.scheduler")


class KvTransferSection(StrictConfig):
    link: Block = Field(description="link between prefill and decode replicas, e.g. {kind: link, preset: IB-HDR}")


class ClusterSection(StrictConfig):
    replicas: int = Field(default=1, ge=1, description="replicas of the single pool (when pools is not given)")
    tensor_parallel: int = Field(default=1, ge=1)
    expert_parallel: int = Field(default=1, ge=1, description="MoE experts split over this many of the "
                                                               "tensor-parallel GPUs (divides tensor_parallel)")
    attention_data_parallel: int = Field(default=1, ge=1, description="attention in this many data-parallel "
                                                                       "groups of tensor_parallel / N GPUs, each "
                                                                       "with its own requests (MoE models)")
    pipeline_parallel: int = Field(default=1, ge=1, description="stages per replica (layers split evenly)")
    context_parallel: int = Field(default=1, ge=1, description="each sequence split over this many groups of "
                                                                "tensor_parallel / N GPUs (ring attention)")
    router: Block = Field(default_factory=lambda: {"kind": "round_robin"},
                          description="routes arrivals over replicas of role both/prefill")
    pools: list[PoolSection] | None = Field(default=None, description="heterogeneous or disaggregated pools")
    decode_router: Block = Field(default_factory=lambda: {"kind": "least_outstanding"},
                                 description="routes prefilled requests over decode replicas")
    kv_transfer: KvTransferSection | None = None
    controller: Block | None = Field(default=None, description="cluster controller: {kind: llumnix | module:Class, "
                                                            "interval: 100ms, ...}; default: none (routing only)")

    @model_validator(mode="after")
    def _pools(self) -> ClusterSection:
        if self.pools is None:
            return self
        if self.replicas != 1 or self.tensor_parallel != 1 or self.pipeline_parallel != 1 or \
                self.expert_parallel != 1 or self.attention_data_parallel != 1 or self.context_parallel != 1:
            raise ValueError("with pools, give replicas and parallelism per pool, not in cluster")
        names = [p.name for p in self.pools]
        if len(set(names)) != len(names):
            raise ValueError(f"pool names must be unique, got {names}")
        roles = {p.role for p in self.pools}
        if ("prefill" in roles) != ("decode" in roles):
            raise ValueError("a prefill pool needs a decode pool and vice versa")
        if "prefill" in roles and self.kv_transfer is None:
            raise ValueError("disaggregated pools need cluster.kv_transfer.link")
        return self


class OverlapSection(StrictConfig):
    """Concurrent kernels inside one iteration (policies/overlap.py): none (back to back), nanoflow
    (nano-batches over compute / memory / network SM partitions) or tokenweave (two token halves, the
    all-reduce + add + RMSNorm of one on a few SMs while the other computes)."""

    kind: Literal["none", "nanoflow", "tokenweave"] = "none"
    nano_batches: list[int] | None = Field(default=None, description="nanoflow: nano-batch counts to try "
                                                                     "(default [2, 4])")
    memory_shares: list[float] | None = Field(default=None, description="nanoflow: SM shares of the memory-bound "
                                                                        "stream to try (default [0.1, 0.25, 0.4])")
    network_sms: list[int] | None = Field(default=None, description="nanoflow: SMs of the all-reduce stream to "
                                                                     "try (default [8, 16])")
    comm_sms: list[int] | None = Field(default=None, description="tokenweave: SMs of the all-reduce + norm "
                                                                 "stream to try (default [4, 8, 16])")

    @model_validator(mode="after")
    def _fields(self) -> OverlapSection:
        own = {"nanoflow": ("nano_batches", "memory_shares", "network_sms"), "tokenweave": ("comm_sms",)}
        mine = own.get(self.kind, ())
        for field in ("nano_batches", "memory_shares", "network_sms", "comm_sms"):
            val = getattr(self, field)
            if val is None:
                continue
            if field not in mine:
                raise ValueError(f"{field} does not apply to overlap kind {self.kind}")
            if not val:
                raise ValueError(f"{field} must list at least one value")
        if any(n < 2 for n in self.nano_batches or ()):
            raise ValueError(f"nano_batches must be >= 2, got {self.nano_batches}")
        if any(not 0 < s < 1 for s in self.memory_shares or ()):
            raise ValueError(f"memory_shares must be in (0, 1), got {self.memory_shares}")
        if any(n < 1 for n in (self.network_sms or []) + (self.comm_sms or [])):
            raise ValueError("network_sms and comm_sms must be >= 1 SM")
        # defaults of the kind (estimates: a small search grid, as NanoFlow's auto-search tries a few splits)
        defaults = {"nanoflow": {"nano_batches": [2, 4], "memory_shares": [0.1, 0.25, 0.4], "network_sms": [8, 16]},
                    "tokenweave": {"comm_sms": [4, 8, 16]}}.get(self.kind, {})
        for field, val in defaults.items():
            if getattr(self, field) is None:
                object.__setattr__(self, field, val)
        return self


class EngineSection(StrictConfig):
    gpu_memory_utilization: float = Field(default=0.9, gt=0, le=1,
                                          description="share of device memory the engine may use")
    activation_reserve: Bytes = Field(default="1GiB",
                                      description="memory kept for activations and workspace")
    max_model_len: int | None = Field(default=None, ge=1,
                                      description="longest sequence; default: the model's own")
    framework: str | dict[str, Any] | None = Field(default=None,
                                  description="serving-framework profile: vllm, sglang, trtllm, optionally with a "
                                              "version (vllm-0.12, sglang-0.5.6); sets the default scheduler, "
                                              "kernel fusion, CUDA graphs, all-reduce and attention kernels, host "
                                              "time per step and KV sizing (explicit fields win); or a block "
                                              "{preset: sglang-0.5, host: {per_seq_s: 40us}} overriding the "
                                              "profile's fields")
    memory_rule: Literal["total", "free_after_weights"] = Field(
        default="total", description="total: KV = utilization x memory - weights - reserve (vLLM, SGLang); "
                                     "free_after_weights: KV = utilization x (memory - weights - reserve) (TRT-LLM)")
    overlap: OverlapSection = Field(default_factory=OverlapSection,
                                    description="kernels of one iteration run concurrently on SM partitions: "
                                                "{kind: none|nanoflow|tokenweave, ...}")


class PoliciesSection(StrictConfig):
    scheduler: Block = Field(default_factory=lambda: {"kind": "vllm"})
    quantization: Block | None = Field(
        default=None, description="{kind: scheme, preset: W4A16-marlin, <overrides>}; default: unquantized")
    kv_cache: Block | None = Field(
        default=None, description="KV mechanism/policy: {kind: paged|prefix|swap|vattention, ...}; default: paged")
    expert_offload: Block | None = Field(
        default=None, description="MoE routed experts in host memory or on SSD with a GPU expert cache: {kind: "
                                  "lfu|lru, cache_experts: N | cache_bytes: SIZE, tier: host|ssd, prefetch: "
                                  "{accuracy: A}}; default: every expert on the GPU")
    speculation: Block | None = Field(
        default=None, description="speculative decoding: {kind: draft_model|draft_heads|ngram, "
                                  "num_speculative_tokens: k, acceptance: {alpha: A} | {rates: [...]}, "
                                  "length: {kind: fixed|smartspec}}; default: one token per decode step")
    weight_offload: Block | None = Field(
        default=None, description="dense layer weights streamed from host DRAM / SSD each iteration: {kind: "
                                  "stream, gpu_fraction: F, disk_fraction: F, num_gpu_batches: K, kv: gpu|host, "
                                  "attention: gpu|host} or {kind: flash, gpu_fraction: F, ffn_density: D, ...}; "
                                  "default: every weight on the GPU")


class SloSection(StrictConfig):
    ttft: PositiveSeconds | None = None
    tpot: PositiveSeconds | None = None
    attainment: float = Field(default=0.9, gt=0, le=1,
                              description="share of requests that must meet the SLOs")


class RunSection(StrictConfig):
    warmup_requests: int = Field(default=0, ge=0,
                                 description="first N requests (by arrival) left out of metrics")
    warmup: Seconds = Field(default="0s", description="requests arriving before this are left out")
    cooldown_requests: int = Field(default=0, ge=0,
                                   description="last N requests (by arrival) left out of metrics")
    max_time: PositiveSeconds | None = Field(
        default=None, description="stop the simulation at this simulated time")
    metrics: Literal["auto", "exact", "streaming"] = Field(
        default="auto", description="exact: every request and inter-token gap kept, exact percentiles; streaming: "
                                    "bounded memory, percentiles from log-bucket sketches (0.5 % relative error), "
                                    "per-request tables written to disk in chunks; auto: streaming above 50,000 "
                                    "requests")


class OutputsSection(StrictConfig):
    report: bool = True
    chrome_trace: bool | Literal["auto"] = Field(
        default="auto", description="trace.json (Perfetto / chrome://tracing); auto: written for runs of at most "
                                    "5,000 requests")
    events: bool = True
    requests: bool = True


class ScenarioFile(StrictConfig):
    name: str = "scenario"
    description: str = ""
    seed: int = 0
    hardware: HardwareSection
    model: Block = Field(description="{kind: transformer, preset: Llama-3-8B, dtype: bf16}")
    cluster: ClusterSection = Field(default_factory=ClusterSection)
    engine: EngineSection = Field(default_factory=EngineSection)
    workload: Block
    policies: PoliciesSection = Field(default_factory=PoliciesSection)
    slo: SloSection = Field(default_factory=SloSection)
    run: RunSection = Field(default_factory=RunSection)
    outputs: OutputsSection = Field(default_factory=OutputsSection)
