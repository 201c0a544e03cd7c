"""A training scenario (``type: training``): hardware, model, batch, precision, optimizer, layout.

The hardware, timing and model blocks are the serving scenario's ``{kind, preset, <overrides>}``
blocks, resolved by the same registries; the rest is validated here, strictly, and every layout
rule a real framework enforces is one line naming the field: the layout's GPU product, the
micro-batches dividing the global batch, the stages (and virtual stages) dividing the layers.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, ValidationError, model_validator

from simulator.config.errors import config_error
from simulator.config.loader import apply_overrides, read_mapping, resolve_component
from simulator.config.quantities import Bytes, PositiveBytes, StrictConfig
from simulator.core import registry as reg
from simulator.core.errors import ConfigError

Block = dict[str, Any]


class TrainHardware(StrictConfig):
    device: Block = Field(description="{kind: gpu, preset: A100-80GB}")
    gpus_per_node: int = Field(default=8, ge=1, description="GPUs joined by the intra-node link")
    interconnect: Block | None = Field(default=None, description="intra-node link; default: the device's own")
    network: Block | None = Field(default=None, description="inter-node link per GPU, e.g. {kind: link, preset: "
                                                             "IB-HDR}; needed when the job spans nodes")
    host: Block = Field(default_factory=lambda: {"kind": "host", "preset": "DGX-A100-host"},
                        description="host DRAM and the PCIe link (activation offload, checkpoints)")
    ssd: Block = Field(default_factory=lambda: {"kind": "ssd", "preset": "DC-NVMe-PCIe4"},
                       description="node-local SSD the checkpoint is written to")
    timing: Block = Field(default_factory=lambda: {"kind": "tile"}, description="timing backend")


class TrainingSection(StrictConfig):
    gpus: int = Field(ge=1, description="GPUs of the job")
    global_batch: int = Field(ge=1, description="sequences per optimizer step")
    micro_batch: int = Field(default=1, ge=1, description="sequences per micro-batch")
    seq_len: int = Field(ge=1, description="tokens per sequence")
    precision: Literal["bf16", "fp8"] = Field(default="bf16", description="GEMM precision (fp8 keeps bf16 weights "
                                                                           "and fp32 master weights)")
    grad_dtype: Literal["bf16", "fp32"] = Field(default="bf16", description="gradient buffer precision")
    optimizer: Literal["adam", "sgd"] = "adam"
    recompute: Literal["none", "selective", "full"] = "none"
    flash_attention: bool = Field(default=True, description="attention stores no scores (FlashAttention)")
    offload_activations: bool = Field(default=False, description="stash activations in host DRAM over PCIe "
                                                                 "between a micro-batch's forward and backward")
    memory_reserve: Bytes = Field(default="1GiB", description="CUDA context, NCCL buffers, allocator slack "
                                                              "(estimate)")


class LayoutSection(StrictConfig):
    dp: int = Field(default=1, ge=1, description="data-parallel replicas")
    tp: int = Field(default=1, ge=1, description="tensor-parallel GPUs per layer")
    pp: int = Field(default=1, ge=1, description="pipeline stages")
    cp: int = Field(default=1, ge=1, description="context-parallel GPUs per sequence")
    ep: int = Field(default=1, ge=1, description="MoE experts split over this many GPUs: a divisor of tp, or a "
                                                 "multiple of tp taken from the data-parallel ranks (all-to-all)")
    virtual_stages: int = Field(default=1, ge=1, description="model chunks per stage (interleaved 1F1B)")
    sequence_parallel: bool = False
    zero: Literal[0, 1, 2, 3] = Field(default=0, description="ZeRO stage over the dp x cp GPUs")
    schedule: Literal["1f1b", "interleaved"] = "1f1b"
    grad_bucket_bytes: PositiveBytes = Field(default="40MB", description="gradient reduction bucket (Megatron DDP)")
    overlap_grad_reduce: bool = Field(default=True, description="reduce each bucket as the backward produces it")
    scatter_gather: bool = Field(default=True, description="pipeline sends 1/tp of an activation per GPU over the "
                                                           "network, all-gathered over NVLink (Megatron)")

    @model_validator(mode="after")
    def _check(self) -> LayoutSection:
        if self.schedule == "1f1b" and self.virtual_stages != 1:
            raise ValueError("virtual_stages > 1 needs schedule: interleaved")
        if self.schedule == "interleaved" and self.pp == 1:
            raise ValueError("schedule interleaved needs pp > 1")
        return self


class CheckpointSection(StrictConfig):
    every_steps: int = Field(default=0, ge=0, description="save every N steps (0: no checkpoints)")
    mode: Literal["stall", "async"] = Field(default="async", description="stall: training waits for the SSD; "
                                                                        "async: only for the copy to host DRAM")
    request_bytes: PositiveBytes = Field(default="1MiB", description="SSD write request size")
    queue_depth: int = Field(default=32, ge=1)


class TrainOutputs(StrictConfig):
    chrome_trace: bool = True
    report: bool = True


class TrainingScenario(StrictConfig):
    type: Literal["training"] = "training"
    name: str = "training"
    description: str = ""
    seed: int = 0
    hardware: TrainHardware
    model: Block
    training: TrainingSection
    layout: LayoutSection = Field(default_factory=LayoutSection)
    checkpoint: CheckpointSection = Field(default_factory=CheckpointSection)
    outputs: TrainOutputs = Field(default_factory=TrainOutputs)


@dataclass(frozen=True)
class ResolvedTraining:
    spec: TrainingScenario
    device: Any  # GpuConfig
    intra: Any  # LinkConfig
    inter: Any  # LinkConfig | None
    host: Any
    ssd: Any
    timing: Any  # Component
    model: Any  # TransformerConfig
    source: str = "<dict>"

    def dump(self) -> dict[str, Any]:
        s = self.spec.model_dump(mode="json")
        s["hardware"]["device"] = {"kind": "gpu", **self.device.model_dump(mode="json")}
        s["hardware"]["interconnect"] = {"kind": "link", **self.intra.model_dump(mode="json")}
        if self.inter is not None:
            s["hardware"]["network"] = {"kind": "link", **self.inter.model_dump(mode="json")}
        s["hardware"]["host"] = {"kind": "host", **self.host.model_dump(mode="json")}
        s["hardware"]["ssd"] = {"kind": "ssd", **self.ssd.model_dump(mode="json")}
        s["hardware"]["timing"] = self.timing.dump()
        s["model"] = {"kind": "transformer", **self.model.model_dump(mode="json")}
        return s


def check_layout(spec: TrainingScenario, model: Any) -> None:
    """The rules a framework enforces before it starts: one line each, naming the field."""
    t, lay = spec.training, spec.layout
    prod = lay.dp * lay.tp * lay.pp * lay.cp
    if prod != t.gpus:
        raise ConfigError(f"dp x tp x pp x cp = {lay.dp} x {lay.tp} x {lay.pp} x {lay.cp} = {prod}, not the "
                          f"{t.gpus} GPUs of training.gpus", where="layout")
    per_step = t.micro_batch * lay.dp
    if t.global_batch % per_step:
        raise ConfigError(f"global_batch {t.global_batch} is not a multiple of micro_batch x dp = {t.micro_batch} x "
                          f"{lay.dp} = {per_step}", where="training.global_batch")
    chunks = lay.pp * lay.virtual_stages
    if model.num_layers % chunks:
        raise ConfigError(f"the model's {model.num_layers} layers do not split evenly over pp x virtual_stages = "
                          f"{lay.pp} x {lay.virtual_stages} = {chunks} chunks", where="layout.pp")
    m = t.global_batch // per_step
    if lay.schedule == "interleaved" and m % lay.pp:
        raise ConfigError(f"the interleaved schedule needs the {m} micro-batches per replica to be a multiple of "
                          f"pp = {lay.pp}", where="layout.schedule")
    if lay.ep > 1 and not model.is_moe:
        raise ConfigError(f"ep {lay.ep} needs a mixture-of-experts model; {model.name} is dense", where="layout.ep")
    if lay.tp % lay.ep and (lay.ep % lay.tp or (lay.tp * lay.dp) % lay.ep):
        raise ConfigError(f"ep {lay.ep} must divide tp {lay.tp}, or be a multiple of it that divides tp x dp = "
                          f"{lay.tp * lay.dp} (experts over several data-parallel ranks)", where="layout.ep")
    if model.is_moe and model.num_experts % lay.ep:
        raise ConfigError(f"ep {lay.ep} does not divide the model's {model.num_experts} experts", where="layout.ep")
    if t.seq_len > model.max_position:  # as the serving engine's max_model_len
        raise ConfigError(f"seq_len {t.seq_len} exceeds the {model.max_position}-token context of {model.name} "
                          f"(raise model.max_position to train longer sequences)", where="training.seq_len")
    if t.seq_len % lay.cp:
        raise ConfigError(f"seq_len {t.seq_len} is not a multiple of cp {lay.cp}", where="training.seq_len")
    if model.num_heads % lay.tp:
        raise ConfigError(f"tp {lay.tp} does not divide the model's {model.num_heads} attention heads",
                          where="layout.tp")
    if model.num_kv_heads % lay.tp:  # Megatron-Core: num_query_groups must be divisible by the tp size
        raise ConfigError(f"tp {lay.tp} does not divide the model's {model.num_kv_heads} key-value heads (each "
                          f"tensor-parallel GPU holds whole query groups)", where="layout.tp")


def load_training(source: str | Path | dict, overrides: list[str] | tuple[str, ...] = ()) -> ResolvedTraining:
    if isinstance(source, dict):
        raw, name, base_dir = source, "<dict>", Path(".")
    else:
        path = Path(source)
        raw, name, base_dir = read_mapping(path), str(path), path.resolve().parent
    raw = apply_overrides(raw, overrides)
    raw.pop("$schema", None)
    try:
        spec = TrainingScenario.model_validate(raw)
    except ValidationError as exc:
        raise config_error(exc, "", TrainingScenario) from None
    hw = spec.hardware
    device = resolve_component(hw.device, reg.HARDWARE, "hardware.device", base_dir=base_dir)
    if hw.interconnect is not None:
        intra = resolve_component(hw.interconnect, reg.HARDWARE, "hardware.interconnect", default_kind="link",
                                  base_dir=base_dir)
    else:
        name_ = getattr(device.config, "default_interconnect", None)
        if not name_:
            raise ConfigError("the device names no default interconnect; give hardware.interconnect",
                              where="hardware.interconnect")
        intra = resolve_component({"kind": "link", "preset": name_}, reg.HARDWARE, "hardware.interconnect")
    inter = None
    if hw.network is not None:
        inter = resolve_component(hw.network, reg.HARDWARE, "hardware.network", default_kind="link",
                                  base_dir=base_dir)
    host = resolve_component(hw.host, reg.HARDWARE, "hardware.host", default_kind="host", base_dir=base_dir)
    ssd = resolve_component(hw.ssd, reg.HARDWARE, "hardware.ssd", default_kind="ssd", base_dir=base_dir)
    timing = resolve_component(hw.timing, reg.TIMING, "hardware.timing", base_dir=base_dir)
    model = resolve_component(spec.model, reg.MODELS, "model", default_kind="transformer", base_dir=base_dir)
    for comp, kind in ((device, "gpu"), (intra, "link"), (host, "host"), (ssd, "ssd")):
        if comp.kind != kind:
            raise ConfigError(f"expected kind {kind}, got {comp.kind!r}", where=comp.where)
    if inter is not None and inter.kind != "link":
        raise ConfigError(f"expected kind link, got {inter.kind!r}", where=inter.where)
    check_layout(spec, model.config)
    if spec.training.gpus > hw.gpus_per_node and inter is None:
        raise ConfigError(f"{spec.training.gpus} GPUs span more than one node of {hw.gpus_per_node}: give "
                          f"hardware.network (e.g. {{kind: link, preset: IB-HDR}})", where="hardware.network")
    if spec.training.precision == "fp8" and not device.config.tensor_flops_per_s.get("fp8"):
        raise ConfigError(f"{device.config.name} has no fp8 tensor path", where="training.precision")
    return ResolvedTraining(spec, device.config, intra.config, inter.config if inter else None, host.config,
                            ssd.config, timing, model.config, name)
