"""Vision encoders (ViT) in front of an LLM: image tokens that feed the prefill.

Models: each image of ``image_size_px`` square is cut into (image / patch)^2 patches, embedded by one
    GEMM (3 x patch^2 -> width), run through ``num_layers`` pre-norm transformer blocks with full
    (bidirectional, non-causal) attention over the image's patches -- ``encoder_attention``, timed
    as a prefill attention whose pairs are patches^2 per image -- and an MLP (GELU, or gated), then
    projected to the LLM's width by the projector (``spatial_merge`` x ``spatial_merge`` patches
    merged into one token first, as Qwen2-VL does; 1 for LLaVA's per-patch tokens), a
    ``projector_layers``-deep MLP. The LLM sees ``tokens_per_image`` tokens per image; the serving
    loop adds ``images_per_request`` x that many tokens to every prompt (the workload's prompt
    lengths are text tokens) and encodes a request's images in the iteration that runs its first
    prefill chunk. Heads and MLP width split over the tensor-parallel GPUs like the LLM's.
    With ``class_token`` (CLIP) the encoder runs on the patches plus one class token per image
    (577 for CLIP ViT-L/14-336); the LLM sees only the patch features (LLaVA's ``select_feature:
    patch`` drops the class token).
Ignores: position embeddings and the pre-layernorm's bytes (small), dynamic resolution and image tiling (every
    image at ``image_size_px``), video frames, caching of encoder outputs between requests, a
    separate encoder replica (the encoder runs on the LLM's GPUs, between its iterations' kernels).
Sources: Radford et al., "CLIP" (2021) and the openai/clip-vit-large-patch14-336 config.json
    (24 layers, width 1024, 16 heads, MLP 4096, patch 14, 336 px); Liu et al., "Improved Baselines
    with Visual Instruction Tuning" (LLaVA-1.5, 2023): 576 image tokens through a two-layer MLP
    projector; Wang et al., "Qwen2-VL" (2024) and its vision_config (depth 32, width 1280, 16 heads,
    MLP ratio 4, patch 14, 2 x 2 spatial merge).
"""

from __future__ import annotations

from typing import Any

from pydantic import Field, model_validator

from simulator.config.quantities import StrictConfig

PRESETS: dict[str, dict[str, Any]] = {
    # openai/clip-vit-large-patch14-336 vision_config; LLaVA-1.5 projector (mlp2x_gelu)
    "clip-vit-l-14-336": dict(num_layers=24, hidden_size=1024, num_heads=16, intermediate_size=4096,
                              patch_px=14, image_size_px=336, spatial_merge=1, projector_layers=2, gated_mlp=False,
                              class_token=True),
    # Qwen/Qwen2-VL-7B-Instruct vision_config (depth 32, embed_dim 1280, num_heads 16, mlp_ratio 4)
    # its merger: LayerNorm, Linear(5120 -> 5120), GELU, Linear(5120 -> LLM width) (Qwen2-VL modelling code)
    "qwen2-vl-vit": dict(num_layers=32, hidden_size=1280, num_heads=16, intermediate_size=5120, patch_px=14,
                         image_size_px=448, spatial_merge=2, projector_layers=2, gated_mlp=False,
                         projector_hidden=5120),
}


class VisionEncoderConfig(StrictConfig):
    """A ViT encoder and the images each request carries (``model.vision``)."""

    preset: str | None = Field(default=None, description=f"one of {', '.join(PRESETS)} (fields given win)")
    num_layers: int = Field(gt=0)
    hidden_size: int = Field(gt=0)
    num_heads: int = Field(gt=0)
    intermediate_size: int = Field(gt=0)
    patch_px: int = Field(gt=0, description="patch side, pixels")
    image_size_px: int = Field(gt=0, description="image side, pixels (every image resized to it)")
    spatial_merge: int = Field(default=1, gt=0, description="patches merged per side into one LLM token")
    projector_layers: int = Field(default=2, ge=1, description="depth of the MLP projector")
    projector_hidden: int | None = Field(default=None, gt=0, description="width of the projector's hidden layers "
                                         "(default: the LLM's width, as LLaVA's mlp2x_gelu)")
    gated_mlp: bool = False
    class_token: bool = Field(default=False, description="one class token per image in the encoder's sequence "
                                                         "(CLIP); not passed to the LLM")
    images_per_request: int = Field(default=1, ge=0, description="images in every request's prompt")

    @model_validator(mode="before")
    @classmethod
    def _preset(cls, data: Any) -> Any:
        if isinstance(data, dict) and data.get("preset") is not None:
            name = data["preset"]
            if name not in PRESETS:
                raise ValueError(f"unknown vision preset {name!r}; known: {', '.join(PRESETS)}")
            return {**PRESETS[name], **data}
        return data

    @model_validator(mode="after")
    def _check(self) -> VisionEncoderConfig:
        if self.image_size_px % self.patch_px:
            raise ValueError(f"image_size_px {self.image_size_px} is not a multiple of patch_px {self.patch_px}")
        side = self.image_size_px // self.patch_px
        if side % self.spatial_merge:
            raise ValueError(f"{side} patches per side do not merge by spatial_merge {self.spatial_merge}")
        if self.hidden_size % self.num_heads:
            raise ValueError(f"hidden_size {self.hidden_size} is not a multiple of num_heads {self.num_heads}")
        return self

    @property
    def patches_per_image(self) -> int:
        return (self.image_size_px // self.patch_px) ** 2

    @property
    def encoder_tokens_per_image(self) -> int:
        """The encoder's sequence per image: its patches, plus the class token if it has one."""
        return self.patches_per_image + int(self.class_token)

    @property
    def tokens_per_image(self) -> int:
        return self.patches_per_image // self.spatial_merge ** 2

    @property
    def tokens_per_request(self) -> int:
        return self.images_per_request * self.tokens_per_image

    def projector_widths(self, llm_hidden: int) -> list[int]:
        """Widths through the projector: merged patch features, hidden layers, the LLM's width."""
        hid = self.projector_hidden or llm_hidden
        return [self.hidden_size * self.spatial_merge ** 2] + [hid] * (self.projector_layers - 1) + [llm_hidden]

    def params(self, llm_hidden: int) -> int:
        h, f = self.hidden_size, self.intermediate_size
        layer = 4 * h * h + (3 if self.gated_mlp else 2) * h * f
        widths = self.projector_widths(llm_hidden)
        proj = sum(a * b for a, b in zip(widths, widths[1:]))
        return 3 * self.patch_px ** 2 * h + self.num_layers * layer + proj


def encoder_ops(images: int, vision: VisionEncoderConfig, llm_hidden: int, dtype: str, dtype_bytes: float,
                tp: int = 1) -> list:
    """The kernels encoding ``images`` images on one of ``tp`` GPUs (``workloads.llm.Op`` list)."""
    from workloads.llm import ATTN_PREFILL, ELEMENTWISE, GEMM, Op

    if images <= 0:
        return []
    v, b, d = vision, dtype_bytes, dtype
    P = v.encoder_tokens_per_image
    T = images * P
    h = v.hidden_size
    heads = max(1, v.num_heads // tp)
    hd = h // v.num_heads
    f = -(-v.intermediate_size // tp)
    L = v.num_layers
    act = int(T * h * b)
    up = 2 * f if v.gated_mlp else f
    ops = [Op(GEMM, "vit_patch_embed", 1, m=images * v.patches_per_image, n=h, k=3 * v.patch_px ** 2, dtype=d,
              dtype_bytes=b),
           Op(ELEMENTWISE, "vit_norm", 2 * L, bytes=2 * act, dtype=d, dtype_bytes=b),
           Op(GEMM, "vit_qkv", L, m=T, n=3 * heads * hd, k=h, dtype=d, dtype_bytes=b),
           Op(ATTN_PREFILL, "encoder_attention", L, seqs=images, q_tokens=T, kv_tokens=T, pairs=images * P * P,
              heads=heads, kv_heads=heads, head_dim=hd, dtype=d, dtype_bytes=b),
           Op(GEMM, "vit_o_proj", L, m=T, n=h, k=heads * hd, dtype=d, dtype_bytes=b),
           Op(ELEMENTWISE, "vit_residual_add", 2 * L, bytes=3 * act, dtype=d, dtype_bytes=b),
           Op(GEMM, "vit_mlp_up", L, m=T, n=up, k=h, dtype=d, dtype_bytes=b),
           Op(ELEMENTWISE, "vit_mlp_act", L, bytes=int(T * (up + f) * b), dtype=d, dtype_bytes=b),
           Op(GEMM, "vit_mlp_down", L, m=T, n=h, k=f, dtype=d, dtype_bytes=b)]
    if tp > 1:
        ops.append(Op("allreduce", "vit_allreduce", 2 * L, bytes=act, workers=tp, dtype=d, dtype_bytes=b))
    tokens = images * v.tokens_per_image
    widths = v.projector_widths(llm_hidden)
    for i, (k, n) in enumerate(zip(widths, widths[1:])):
        ops.append(Op(GEMM, f"vit_projector{i}", 1, m=tokens, n=n, k=k, dtype=d, dtype_bytes=b))
    return ops
