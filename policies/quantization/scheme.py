"""Quantization scheme: the precision of each tensor role (weights, activations, KV cache).

Models: a scheme as numbers per tensor role — weight dtype with group-wise scales (and optional
    zero points) giving the effective bits per weight, per-projection overrides (``qkv_proj``,
    ``o_proj``, ``mlp_up``, ``mlp_down``, ``moe_router``, ``lm_head``) and 2-D weight blocks
    (``block_n``); the activation dtype with optional per-group scales along K, which
    with the weight dtype picks the tensor-core path (W4A16 runs the 16-bit MMA on weights
    dequantized by CUDA cores, W8A8 the int8 or fp8 MMA, W4A8 the 8-bit MMA on int4 weights
    widened to 8 bit, W4A4 the int4 MMA; on Blackwell the block-scaled NVFP4 / MXFP4 / MXFP8
    MMAs, whose scales are part of the format: NVFP4 one e4m3 scale per 16 elements, MX one e8m0
    scale per 32, so 4.5 / 4.25 / 8.25 bits per element; on Hopper the block-scaled fp8 of DeepSeek-V3
    and the Qwen3-FP8 checkpoints, one fp32 scale per 128 x 128 weights and per 1 x 128 activations,
    whose fp32 partial sums the CUDA cores rescale and accumulate every 128 of K); the KV-cache
    dtype with its group scales and KIVI's window of recent tokens kept at full precision;
    LLM.int8()'s outlier decomposition (a share of input columns run as a separate 16-bit GEMM);
    and the CUDA-core instructions a kernel spends dequantizing each weight / K/V element. The
    scheme answers three questions: the bytes of the weights and of one token's K/V (memory plan,
    so KV capacity and batch size grow as KV bits shrink), and each GEMM's format
    (``workloads.llm.lower`` turns it into ops whose bytes, tensor dtype and dequantization the
    timing backends price).
Ignores: accuracy (an input, never computed), calibration/packing cost, per-layer-index mixed
    precision (overrides are per projection, for every layer), quantized embeddings (the input
    embedding stays at the model dtype), the per-sequence memory of the KIVI residual window in
    the KV capacity, sparsity.
Sources: Dettmers et al., "LLM.int8()" (NeurIPS 2022); Xiao et al., "SmoothQuant" (ICML 2023);
    Frantar et al., "GPTQ" (ICLR 2023); Lin et al., "AWQ" (MLSys 2024); Frantar et al., "MARLIN"
    (PPoPP 2025); Lin et al., "QServe" (2024, W4A8KV4); Liu et al., "KIVI" (ICML 2024); Liu et
    al., "COMET" (2024, W4A4KV4); NVIDIA PTX ISA (mma dtype pairs per architecture); OCP
    Microscaling Formats (MX) v1.0 (2023); NVIDIA Blackwell technical brief (2024, NVFP4); DeepSeek-AI,
    "DeepSeek-V3 Technical Report" (2024) section 3.3 and deepseek-ai/DeepGEMM (block-scaled fp8). Presets in
    ``presets/*.yaml`` cite theirs per number.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from pydantic import Field, model_validator

from simulator.config.quantities import StrictConfig
from simulator.core.errors import CapacityError
from simulator.core.registry import register_quantization

# bits of one element (block scales of the microscaled formats are in MICROSCALED); "fp8" is the
# model dtype of an fp8 checkpoint
BITS = {"fp32": 32, "bf16": 16, "fp16": 16, "fp8": 8, "fp8_e4m3": 8, "fp8_e5m2": 8, "int8": 8, "int4": 4, "nf4": 4,
        "int2": 2, "fp4": 4, "nvfp4": 4, "mxfp4": 4, "mxfp8": 8,
        # weight-only integer widths of llama.cpp's k-quants (Q3_K, Q5_K, Q6_K) and GPTQ/EXL2 3-bit: widened to
        # the activation dtype before the GEMM (CPUs with table-lookup kernels run <= 4 bits as bit-planes)
        "int3": 3, "int5": 5, "int6": 6}
# block-scaled formats: (elements per scale, bits of one scale) fixed by the format, whatever group_size says
MICROSCALED = {"nvfp4": (16, 8), "mxfp4": (32, 8), "mxfp8": (32, 8)}
# tensor-core dtype (GPU preset key) of each activation dtype; fp32 activations use TF32 MMAs
TENSOR = {"fp32": "tf32", "bf16": "bf16", "fp16": "fp16", "fp8": "fp8", "fp8_e4m3": "fp8", "fp8_e5m2": "fp8",
          "int8": "int8", "int4": "int4", "fp4": "fp4", "nvfp4": "nvfp4", "mxfp4": "mxfp4", "mxfp8": "mxfp8"}
PROJECTIONS = ("qkv_proj", "o_proj", "mlp_up", "mlp_down", "moe_router", "lm_head")
WDtype = Literal["auto", "fp32", "bf16", "fp16", "fp8_e4m3", "fp8_e5m2", "int8", "int6", "int5", "int4", "int3", "nf4",
                 "int2", "fp4", "nvfp4", "mxfp4", "mxfp8"]
ADtype = Literal["auto", "fp32", "bf16", "fp16", "fp8_e4m3", "fp8_e5m2", "int8", "int4", "fp4", "nvfp4", "mxfp4",
                 "mxfp8"]
KDtype = Literal["auto", "bf16", "fp16", "fp8_e4m3", "fp8_e5m2", "int8", "int4", "int2", "fp4", "nvfp4", "mxfp4",
                 "mxfp8"]


def is_float(dtype: str) -> bool:
    """Floating-point family (fp8, fp4 and the block-scaled float formats) versus integer."""
    return dtype.startswith(("fp", "bf", "nvfp", "mxfp"))


def format_bytes(dtype: str) -> float:
    """Stored bytes per element of ``dtype`` with the scales its format fixes (NVFP4 0.5625,
    MXFP4 0.53125, MXFP8 1.03125); other dtypes' scales depend on the scheme's group size."""
    if dtype in MICROSCALED:
        group, scale_bits = MICROSCALED[dtype]
        return effective_bits(BITS[dtype], group, scale_bits) / 8.0
    return BITS[dtype] / 8.0


def effective_bits(bits: float, group_size: int, scale_bits: int = 16, zero_point_bits: int = 0) -> float:
    """Bits per element including one scale (and zero point) per ``group_size`` elements (0: none
    counted here, i.e. per-channel scales amortised over the whole row)."""
    if group_size <= 0:
        return float(bits)
    return bits + (scale_bits + zero_point_bits) / group_size


class WeightOverride(StrictConfig):
    dtype: WDtype | None = None
    group_size: int | None = Field(default=None, ge=0)


class WeightsConfig(StrictConfig):
    dtype: WDtype = Field(default="auto", description="'auto' = the model's dtype (unquantized)")
    group_size: int = Field(default=0, ge=0, description="weights sharing one scale along K; 0 = per output channel")
    zero_point: bool = Field(default=False, description="asymmetric: a zero point per group")
    scale_bits: int = Field(default=16, gt=0, description="bits of one scale")
    zero_point_bits: int | None = Field(default=None, gt=0, description="bits of a zero point; default: weight bits")
    block_n: int = Field(default=1, ge=1, description="output channels sharing each scale: 2-D blocks of group_size "
                                                      "x block_n weights (DeepSeek / Qwen3 fp8 checkpoints: 128 x 128)")
    overrides: dict[str, WeightOverride] = Field(
        default_factory=dict, description=f"per projection ({', '.join(PROJECTIONS)}); lm_head stays at the model "
                                          "dtype unless named here")

    @model_validator(mode="after")
    def _names(self) -> WeightsConfig:
        bad = sorted(set(self.overrides) - set(PROJECTIONS))
        if bad:
            raise ValueError(f"unknown projection(s) {bad} in overrides; known: {list(PROJECTIONS)}")
        return self


class ActivationsConfig(StrictConfig):
    dtype: ADtype = Field(default="auto", description="GEMM input dtype; 'auto' = the model's dtype")
    group_size: int = Field(default=0, ge=0, description="elements of a row sharing one scale along K (0: one per "
                                                         "token or tensor); > 0 with weight blocks of the same K: a "
                                                         "block-scaled GEMM whose fp32 partial sums the CUDA cores "
                                                         "rescale and add at every group boundary")
    scale_bits: int = Field(default=32, gt=0, description="bits of one activation scale (group_size > 0)")


class KvConfig(StrictConfig):
    dtype: KDtype = Field(default="auto", description="KV-cache dtype; 'auto' = the model's dtype")
    group_size: int = Field(default=0, ge=0, description="elements per scale; 0 = one per head vector (head_dim)")
    zero_point: bool = False
    scale_bits: int = Field(default=16, gt=0)
    residual_tokens: int = Field(default=0, ge=0, description="recent tokens per sequence kept at full precision "
                                                              "(KIVI's residual window)")


class OutliersConfig(StrictConfig):
    method: Literal["none", "llm_int8"] = "none"
    fraction: float = Field(default=0.0, ge=0, lt=1, description="share of input columns run in 16 bit (llm_int8)")


class DequantConfig(StrictConfig):
    weight_ops_per_element: float = Field(default=1.5, ge=0, description="CUDA-core instructions per weight element "
                                                                          "each time a CTA loads it")
    overlap: bool = Field(default=True, description="dequantization overlaps the MMAs (pipelined, as Marlin)")
    kv_ops_per_element: float = Field(default=1.0, ge=0, description="CUDA-core instructions per K/V element read")


class SchemeConfig(StrictConfig):
    name: str = Field(default="custom", description="label, e.g. W4A16")
    weights: WeightsConfig = Field(default_factory=WeightsConfig)
    activations: ActivationsConfig = Field(default_factory=ActivationsConfig)
    kv: KvConfig = Field(default_factory=KvConfig)
    outliers: OutliersConfig = Field(default_factory=OutliersConfig)
    dequant: DequantConfig = Field(default_factory=DequantConfig)

    @model_validator(mode="after")
    def _pairs(self) -> SchemeConfig:
        a = self.activations.dtype
        if a in ("auto", "fp32", "bf16", "fp16"):
            if self.outliers.method != "none":
                raise ValueError("outliers.method llm_int8 needs int8 activations")
            return self
        for name, w in [("weights", self.weights.dtype)] + [(f"weights.overrides.{k}", o.dtype)
                                                             for k, o in self.weights.overrides.items() if o.dtype]:
            if w == "auto" or BITS[w] > BITS[a] or (is_float(w) != is_float(a) and BITS[w] == BITS[a]):
                raise ValueError(f"{name}.dtype {w} cannot feed a {a} tensor-core GEMM (weights need <= {BITS[a]} "
                                 f"bits of the same family as the activations)")
        if self.outliers.method == "llm_int8" and a != "int8":
            raise ValueError("outliers.method llm_int8 needs activations.dtype int8")
        return self


@dataclass(frozen=True, slots=True)
class LinearFormat:
    """How one GEMM runs: what ``workloads.llm`` reads (duck-typed)."""

    tensor_dtype: str
    a_bytes: float
    w_bytes: float
    deq_ops: float
    deq_overlap: bool
    act_quant: bool
    outlier_fraction: float
    scale_block_k: int = 0  # K elements per scale block of a block-scaled GEMM (promotion on the CUDA cores)
    w_dtype: str = ""  # the weights' storage dtype when it differs from the model's (e.g. mxfp4, int4)


@dataclass(frozen=True, slots=True)
class KvFormat:
    bytes: float
    residual: int
    deq_ops: float


@register_quantization("scheme", config=SchemeConfig, presets="presets")
class QuantizationScheme:
    """Precision per tensor role; see the module docstring."""

    def __init__(self, config: SchemeConfig) -> None:
        self.config = config
        self._linear: dict[tuple, LinearFormat | None] = {}

    # -- weights -----------------------------------------------------------------------------
    def weight_dtype(self, name: str, model_dtype: str) -> tuple[str, int]:
        w = self.config.weights
        o = w.overrides.get(name)
        dtype = (o.dtype if o and o.dtype else None) or (w.dtype if name != "lm_head" else "auto")
        group = o.group_size if o and o.group_size is not None else w.group_size
        return (model_dtype if dtype == "auto" else dtype), group

    def weight_bytes_per_element(self, name: str, model_dtype: str) -> float:
        dtype, group = self.weight_dtype(name, model_dtype)
        bits = BITS[dtype]
        if dtype in MICROSCALED:
            return format_bytes(dtype)
        if bits >= 16:
            return bits / 8.0
        w = self.config.weights
        zp = (w.zero_point_bits or bits) if w.zero_point else 0
        return effective_bits(bits, group * w.block_n, w.scale_bits, zp) / 8.0

    def weight_bytes(self, model) -> float:
        """Bytes of all weights of ``model`` (unsharded): each projection at its format, the input
        embedding and norms at the model dtype."""
        d, b = model.dtype, model.dtype_bytes
        h, q = model.hidden_size, model.q_size
        L, E = model.num_layers, model.num_experts
        g = 2 if model.gated_mlp else 1
        moe = model.moe_layers
        dense = L - moe
        # MLP widths summed per layer: dense layers, and each MoE layer's routed plus shared experts
        widths = dense * model.intermediate_size + moe * (E * model.expert_intermediate + model.shared_intermediate)
        params = {"qkv_proj": L * (model.attn_params_per_layer() - q * h), "o_proj": L * q * h,
                  "mlp_up": g * h * widths, "mlp_down": h * widths, "moe_router": moe * h * E,
                  "lm_head": 0 if model.tie_embeddings else model.vocab_size * h}
        total = sum(n * self.weight_bytes_per_element(k, d) for k, n in params.items())
        rest = model.num_params() - sum(params.values())  # embedding (tied: shared with the LM head), norms
        return total + rest * b

    # -- activations / GEMMs ----------------------------------------------------------------------
    def linear(self, name: str, model_dtype: str, model_bytes: float) -> LinearFormat | None:
        """The format of GEMM ``name``; None when it runs unquantized."""
        key = (name, model_dtype, model_bytes)
        if key in self._linear:
            return self._linear[key]
        c = self.config
        w_dtype, _ = self.weight_dtype(name, model_dtype)
        a = c.activations.dtype
        a_dtype = model_dtype if a == "auto" else a
        if BITS[w_dtype] > BITS[a_dtype] or (name == "lm_head" and w_dtype == model_dtype):
            a_dtype = model_dtype  # an unquantized LM head runs in 16 bit under low-bit activations
        fmt = None
        if w_dtype != model_dtype or a_dtype != model_dtype:
            a_bytes = format_bytes(a_dtype)
            ag = c.activations.group_size if a_dtype != model_dtype else 0
            if ag and a_dtype not in MICROSCALED:  # per-group activation scales travel with the input
                a_bytes = effective_bits(BITS[a_dtype], ag, c.activations.scale_bits) / 8.0
            w_bytes = self.weight_bytes_per_element(name, model_dtype)
            weight_only = BITS[w_dtype] < BITS[a_dtype]  # weights widened on CUDA cores before the MMA
            fmt = LinearFormat(
                tensor_dtype=TENSOR[a_dtype], a_bytes=a_bytes, w_bytes=w_bytes,
                deq_ops=c.dequant.weight_ops_per_element if weight_only else 0.0, deq_overlap=c.dequant.overlap,
                act_quant=a_dtype != model_dtype,
                outlier_fraction=c.outliers.fraction if c.outliers.method == "llm_int8" else 0.0,
                scale_block_k=ag if ag and not weight_only else 0,
                w_dtype=w_dtype if w_dtype != model_dtype else "")
        self._linear[key] = fmt
        return fmt

    def tensor_dtypes(self, model_dtype: str) -> set[str]:
        out = set()
        for name in PROJECTIONS:
            fmt = self.linear(name, model_dtype, BITS[model_dtype] / 8.0)
            out.add(fmt.tensor_dtype if fmt else TENSOR.get(model_dtype, model_dtype))
        return out

    def check_device(self, dev, model_dtype: str, where: str = "policies.quantization") -> None:
        """A clear error when ``dev`` has no tensor-core path for a dtype the scheme needs."""
        for td in sorted(self.tensor_dtypes(model_dtype)):
            if not dev.tensor_flops_per_s.get(td):
                have = ", ".join(k for k, v in dev.tensor_flops_per_s.items() if v)
                raise CapacityError(
                    f"{dev.name} ({dev.architecture}) has no {td} tensor-core path, which scheme "
                    f"{self.config.name!r} (weights {self.config.weights.dtype}, activations "
                    f"{self.config.activations.dtype}) needs; it supports {have}", where=where)

    # -- KV cache ---------------------------------------------------------------------------------
    def kv_format(self, model_bytes: float, head_dim: int = 128) -> KvFormat | None:
        kv = self.config.kv
        if kv.dtype == "auto" or format_bytes(kv.dtype) == model_bytes:
            return None
        return KvFormat(self.kv_bytes_per_element(model_bytes, head_dim), kv.residual_tokens,
                        self.config.dequant.kv_ops_per_element)

    def kv_bytes_per_element(self, model_bytes: float, head_dim: int = 128) -> float:
        """Stored bytes per K/V element, scales (and zero points) included."""
        kv = self.config.kv
        if kv.dtype == "auto":
            return model_bytes
        bits = BITS[kv.dtype]
        if kv.dtype in MICROSCALED:
            return format_bytes(kv.dtype)
        if bits >= 16:
            return bits / 8.0
        group = kv.group_size or head_dim
        return effective_bits(bits, group, kv.scale_bits, kv.scale_bits if kv.zero_point else 0) / 8.0
