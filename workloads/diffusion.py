"""Diffusion denoisers (DiT, UNet) as kernel ops: one denoising step of a batch of images.

Models: an image of ``resolution_px`` is denoised in the VAE's latent space (``latent_downsample``
    x smaller per side, ``latent_channels`` channels). Classifier-free guidance runs the conditional
    and the unconditional pass together: the step's batch is doubled. DiT: the latent is cut into
    ``patch`` x ``patch`` patches -> (side / patch)^2 tokens; each of ``num_layers`` blocks runs the
    adaLN modulation GEMM (one row per image), norm, QKV GEMM, bidirectional self-attention over the
    image's tokens (``attn_prefill`` with tokens^2 pairs per image), O projection and a GELU MLP.
    UNet (Stable-Diffusion-style): per resolution level, ResNet blocks of two 3x3 convolutions (each
    an implicit GEMM: rows = images x pixels, columns = channels out, depth = 9 x channels in) and,
    at the levels with attention, transformer blocks (self-attention over the level's pixels,
    cross-attention to ``context_tokens`` text tokens of ``context_dim``, GEGLU feed-forward);
    ``layers_per_block`` ResNet (+ attention) blocks going down, one more going up, a middle block.
Ignores: the text encoder and the VAE decoder (once per image, outside the denoising loop), the
    timestep embedding MLP, group norms (folded into the elementwise ops' bytes), skip-connection
    concatenations, down/up-sampling convolutions, the scheduler's update of the latent (one
    elementwise op per step, tiny).
Sources: Peebles & Xie, "Scalable Diffusion Models with Transformers" (DiT, ICCV 2023): DiT-XL/2 =
    28 layers, width 1152, 16 heads, patch 2 on a 32 x 32 x 4 latent at 256 px, 118.6 GFLOP per
    forward pass; Rombach et al., "High-Resolution Image Synthesis with Latent Diffusion Models"
    (2022) and the Stable Diffusion v1.5 UNet config (channels 320/640/1280/1280, 2 layers per
    block, attention on the first three levels, 8 heads, text context 77 x 768, about 860 M
    parameters); Ho & Salimans, "Classifier-Free Diffusion Guidance" (2022).
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, model_validator

from simulator.config.quantities import StrictConfig

PRESETS: dict[str, dict[str, Any]] = {
    "DiT-XL/2": dict(kind="dit", num_layers=28, hidden_size=1152, num_heads=16, patch=2, latent_channels=4),
    "SD-1.5-UNet": dict(kind="unet", channels=[320, 640, 1280, 1280], attention_levels=[True, True, True, False],
                        layers_per_block=2, num_heads=8, context_tokens=77, context_dim=768, latent_channels=4),
}


class DenoiserConfig(StrictConfig):
    preset: str | None = Field(default=None, description=f"one of {', '.join(PRESETS)} (fields given win)")
    kind: Literal["dit", "unet"] = "dit"
    latent_downsample: int = Field(default=8, gt=0, description="VAE downsampling per side")
    latent_channels: int = Field(default=4, gt=0)
    # DiT
    num_layers: int = Field(default=28, gt=0)
    hidden_size: int = Field(default=1152, gt=0)
    num_heads: int = Field(default=16, gt=0)
    patch: int = Field(default=2, gt=0)
    # UNet
    channels: list[int] = Field(default_factory=lambda: [320, 640, 1280, 1280])
    attention_levels: list[bool] = Field(default_factory=lambda: [True, True, True, False])
    layers_per_block: int = Field(default=2, gt=0)
    context_tokens: int = Field(default=77, ge=0)
    context_dim: int = Field(default=768, gt=0)
    dtype: Literal["bf16", "fp16"] = "fp16"

    @model_validator(mode="before")
    @classmethod
    def _preset(cls, data: Any) -> Any:
        if isinstance(data, dict) and data.get("preset") is not None:
            if data["preset"] not in PRESETS:
                raise ValueError(f"unknown denoiser preset {data['preset']!r}; known: {', '.join(PRESETS)}")
            return {**PRESETS[data["preset"]], **data}
        return data

    @model_validator(mode="after")
    def _check(self) -> DenoiserConfig:
        if len(self.attention_levels) != len(self.channels):
            raise ValueError(f"attention_levels has {len(self.attention_levels)} entries for "
                             f"{len(self.channels)} channel levels")
        return self

    def latent_side(self, resolution_px: int) -> int:
        if resolution_px % self.latent_downsample:
            raise ValueError(f"resolution {resolution_px} px is not a multiple of the VAE's "
                             f"{self.latent_downsample}")
        return resolution_px // self.latent_downsample

    def tokens(self, resolution_px: int) -> int:
        """DiT tokens per image (UNet: latent pixels at full resolution)."""
        side = self.latent_side(resolution_px)
        if self.kind == "dit":
            if side % self.patch:
                raise ValueError(f"latent side {side} is not a multiple of patch {self.patch}")
            return (side // self.patch) ** 2
        return side * side


def step_ops(cfg: DenoiserConfig, images: int, resolution_px: int, guidance: bool = True) -> list:
    """Kernel ops of one denoising step of ``images`` images (doubled under classifier-free guidance)."""
    from workloads.llm import ATTN_PREFILL, ELEMENTWISE, GEMM, Op

    if images <= 0:
        return []
    B = images * (2 if guidance else 1)
    b, d = 2.0, cfg.dtype
    if cfg.kind == "dit":
        T = cfg.tokens(resolution_px)
        h, L, H = cfg.hidden_size, cfg.num_layers, cfg.num_heads
        act = int(B * T * h * b)
        return [Op(GEMM, "dit_patch_embed", 1, m=B * T, n=h, k=cfg.patch ** 2 * cfg.latent_channels, dtype=d,
                   dtype_bytes=b),
                Op(GEMM, "dit_adaln", L, m=B, n=6 * h, k=h, dtype=d, dtype_bytes=b),
                Op(ELEMENTWISE, "dit_norm_modulate", 2 * L, bytes=3 * act, dtype=d, dtype_bytes=b),
                Op(GEMM, "dit_qkv", L, m=B * T, n=3 * h, k=h, dtype=d, dtype_bytes=b),
                Op(ATTN_PREFILL, "dit_attention", L, seqs=B, q_tokens=B * T, kv_tokens=B * T, pairs=B * T * T,
                   heads=H, kv_heads=H, head_dim=h // H, dtype=d, dtype_bytes=b),
                Op(GEMM, "dit_o_proj", L, m=B * T, n=h, k=h, dtype=d, dtype_bytes=b),
                Op(ELEMENTWISE, "dit_gate_residual", 2 * L, bytes=3 * act, dtype=d, dtype_bytes=b),
                Op(GEMM, "dit_mlp_up", L, m=B * T, n=4 * h, k=h, dtype=d, dtype_bytes=b),
                Op(ELEMENTWISE, "dit_mlp_act", L, bytes=int(B * T * 8 * h * b), dtype=d, dtype_bytes=b),
                Op(GEMM, "dit_mlp_down", L, m=B * T, n=h, k=4 * h, dtype=d, dtype_bytes=b),
                Op(GEMM, "dit_final", 1, m=B * T, n=2 * cfg.patch ** 2 * cfg.latent_channels, k=h, dtype=d,
                   dtype_bytes=b)]
    side = cfg.latent_side(resolution_px)
    ops: list = []
    prev = cfg.latent_channels
    for lvl, (c, attn) in enumerate(zip(cfg.channels, cfg.attention_levels)):
        px = (side >> lvl) ** 2
        blocks = cfg.layers_per_block * 2 + 1  # down blocks, up blocks (one more)
        ops.append(Op(GEMM, f"unet_conv_l{lvl}", 2 * blocks, m=B * px, n=c, k=9 * c, dtype=d, dtype_bytes=b))
        ops.append(Op(ELEMENTWISE, f"unet_norm_act_l{lvl}", 2 * blocks, bytes=int(2 * B * px * c * b), dtype=d,
                      dtype_bytes=b))
        if prev != c:
            ops.append(Op(GEMM, f"unet_conv_in_l{lvl}", 1, m=B * px, n=c, k=9 * prev, dtype=d, dtype_bytes=b))
        prev = c
        if attn:
            H = cfg.num_heads
            ops += [Op(GEMM, f"unet_proj_l{lvl}", 2 * blocks, m=B * px, n=c, k=c, dtype=d, dtype_bytes=b),
                    Op(GEMM, f"unet_qkv_l{lvl}", blocks, m=B * px, n=3 * c, k=c, dtype=d, dtype_bytes=b),
                    Op(ATTN_PREFILL, f"unet_self_attention_l{lvl}", blocks, seqs=B, q_tokens=B * px, kv_tokens=B * px,
                       pairs=B * px * px, heads=H, kv_heads=H, head_dim=c // H, dtype=d, dtype_bytes=b),
                    Op(GEMM, f"unet_cross_q_o_l{lvl}", 2 * blocks, m=B * px, n=c, k=c, dtype=d, dtype_bytes=b),
                    Op(GEMM, f"unet_cross_kv_l{lvl}", blocks, m=B * cfg.context_tokens, n=2 * c, k=cfg.context_dim,
                       dtype=d, dtype_bytes=b),
                    Op(ATTN_PREFILL, f"unet_cross_attention_l{lvl}", blocks, seqs=B, q_tokens=B * px,
                       kv_tokens=B * cfg.context_tokens, pairs=B * px * cfg.context_tokens, heads=H, kv_heads=H,
                       head_dim=c // H, dtype=d, dtype_bytes=b),
                    Op(GEMM, f"unet_ff_up_l{lvl}", blocks, m=B * px, n=8 * c, k=c, dtype=d, dtype_bytes=b),
                    Op(GEMM, f"unet_ff_down_l{lvl}", blocks, m=B * px, n=c, k=4 * c, dtype=d, dtype_bytes=b),
                    Op(GEMM, f"unet_o_proj_l{lvl}", blocks, m=B * px, n=c, k=c, dtype=d, dtype_bytes=b)]
    # middle block at the lowest resolution: two ResNet blocks (4 convs)
    c, px = cfg.channels[-1], (side >> (len(cfg.channels) - 1)) ** 2
    ops.append(Op(GEMM, "unet_conv_mid", 4, m=B * px, n=c, k=9 * c, dtype=d, dtype_bytes=b))
    return ops


def step_flops(cfg: DenoiserConfig, images: int, resolution_px: int, guidance: bool = True) -> float:
    return sum(op.flops() for op in step_ops(cfg, images, resolution_px, guidance))
