"""Diffusion denoisers (DiT, UNet) as kernel ops: one denoising step of a batch of images.

Models: an image of ``resolution_px`` is denoised in the VAE's latent space (``latent_downsample``
    x smaller per side, ``latent_channels`` channels). Classifier-free guidance runs the conditional
    and the unconditional pass together: the step's batch is doubled. DiT: the latent is cut into
    ``patch`` x ``patch`` patches -> (side / patch)^2 tokens; each of ``num_layers`` blocks runs the
    adaLN modulation GEMM (one row per image), norm, QKV GEMM, bidirectional self-attention over the
    image's tokens (``attn_prefill`` with tokens^2 pairs per image), O projection and a GELU MLP.
    UNet (Stable-Diffusion-style, as diffusers' UNet2DConditionModel): per resolution level, ResNet
    blocks of two 3x3 convolutions (each an implicit GEMM: rows = images x pixels, columns =
    channels out, depth = 9 x channels in; a 1x1 shortcut where the channels change) and, at the
    levels with attention, transformer blocks (self-attention over the level's pixels,
    cross-attention to ``context_tokens`` text tokens of ``context_dim``, GEGLU feed-forward);
    ``layers_per_block`` ResNet (+ attention) blocks going down with a stride-2 downsampling
    convolution after each level but the last, a middle block (ResNet, transformer, ResNet),
    ``layers_per_block + 1`` blocks going up whose inputs concatenate the skips saved going down,
    with an upsampling convolution after each level but the top; conv_in and conv_out.
Ignores: the text encoder and the VAE decoder (once per image, outside the denoising loop), the
    timestep embedding MLP and each ResNet's time projection (one row per image), group norms
    (folded into the elementwise ops' bytes), the scheduler's update of the latent (one elementwise
    op per step, tiny).
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
    mid_attention: bool = Field(default=True, description="a transformer block in the UNet's middle block")
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
        if self.kind == "unet":
            if not self.channels or min(self.channels) <= 0:
                raise ValueError(f"channels {self.channels}: give one positive width per level")
            bad = [c for c, a in zip(self.channels, self.attention_levels) if a and c % self.num_heads]
            if bad:
                raise ValueError(f"channels {bad} at attention levels are not a multiple of num_heads {self.num_heads}")
        elif self.hidden_size % self.num_heads:
            raise ValueError(f"hidden_size {self.hidden_size} is not a multiple of num_heads {self.num_heads}")
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
        halvings = len(self.channels) - 1
        if side % (1 << halvings):
            raise ValueError(f"latent side {side} (resolution {resolution_px} px / {self.latent_downsample}) cannot "
                             f"be halved {halvings} times for the UNet's {len(self.channels)} levels")
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
    return _unet_ops(cfg, B, cfg.latent_side(resolution_px))


def _unet_ops(cfg: DenoiserConfig, B: int, side: int) -> list:
    """The UNet as diffusers' ``UNet2DConditionModel`` builds it: conv_in; per level going down
    ``layers_per_block`` ResNet blocks (+ a transformer each at the attention levels) and a stride-2
    downsampling convolution (not after the last); a middle block (ResNet, transformer, ResNet); per
    level going up ``layers_per_block + 1`` ResNet blocks whose input concatenates the skip saved on
    the way down (+ transformers) and a nearest-upsample + convolution (not after the top); conv_out."""
    from workloads.llm import ATTN_PREFILL, ELEMENTWISE, GEMM, Op

    b, d, ch, H = 2.0, cfg.dtype, cfg.channels, cfg.num_heads
    n_lvl = len(ch)
    px = [(side >> lvl) ** 2 for lvl in range(n_lvl)]
    shapes: dict[tuple, int] = {}  # (name, m, n, k) -> layers of that shape

    def gemm(name: str, m: int, n: int, k: int) -> None:
        shapes[(name, m, n, k)] = shapes.get((name, m, n, k), 0) + 1

    def resnet(lvl: int, cin: int, cout: int) -> None:
        m = B * px[lvl]
        gemm(f"unet_conv_l{lvl}_{cin}_{cout}", m, cout, 9 * cin)
        gemm(f"unet_conv_l{lvl}_{cout}_{cout}", m, cout, 9 * cout)
        if cin != cout:
            gemm(f"unet_shortcut_l{lvl}_{cin}_{cout}", m, cout, cin)
        norms[lvl] = norms.get(lvl, 0.0) + B * px[lvl] * (cin + cout) * 2 * b  # two group norms + SiLU

    norms: dict[int, float] = {}
    attn = {lvl: 0 for lvl in range(n_lvl)}
    gemm("unet_conv_in", B * px[0], ch[0], 9 * cfg.latent_channels)
    skips, h = [ch[0]], ch[0]
    for lvl in range(n_lvl):
        for _ in range(cfg.layers_per_block):
            resnet(lvl, h, ch[lvl])
            h = ch[lvl]
            attn[lvl] += cfg.attention_levels[lvl]
            skips.append(h)
        if lvl < n_lvl - 1:
            gemm(f"unet_downsample_l{lvl}", B * px[lvl + 1], h, 9 * h)
            skips.append(h)
    last = n_lvl - 1
    resnet(last, h, h)
    resnet(last, h, h)
    mid_attn = int(cfg.mid_attention)
    for lvl in reversed(range(n_lvl)):
        for _ in range(cfg.layers_per_block + 1):
            resnet(lvl, h + skips.pop(), ch[lvl])
            h = ch[lvl]
            attn[lvl] += cfg.attention_levels[lvl]
        if lvl > 0:
            gemm(f"unet_upsample_l{lvl - 1}", B * px[lvl - 1], h, 9 * h)
    gemm("unet_conv_out", B * px[0], cfg.latent_channels, 9 * ch[0])
    ops: list = [Op(GEMM, name, n, m=m, n=nn, k=k, dtype=d, dtype_bytes=b) for (name, m, nn, k), n in shapes.items()]
    ops += [Op(ELEMENTWISE, f"unet_norm_act_l{lvl}", 1, bytes=int(v), dtype=d, dtype_bytes=b)
            for lvl, v in norms.items()]
    blocks = [(lvl, n, f"l{lvl}") for lvl, n in attn.items() if n] + ([(last, mid_attn, "mid")] if mid_attn else [])
    for lvl, n, tag in blocks:  # transformer blocks: self-attention, cross-attention to the text, GEGLU
        c, p = ch[lvl], px[lvl]
        ops += [Op(GEMM, f"unet_proj_{tag}", 2 * n, m=B * p, n=c, k=c, dtype=d, dtype_bytes=b),
                Op(GEMM, f"unet_qkv_{tag}", n, m=B * p, n=3 * c, k=c, dtype=d, dtype_bytes=b),
                Op(ATTN_PREFILL, f"unet_self_attention_{tag}", n, seqs=B, q_tokens=B * p, kv_tokens=B * p,
                   pairs=B * p * p, heads=H, kv_heads=H, head_dim=c // H, dtype=d, dtype_bytes=b),
                Op(GEMM, f"unet_cross_q_o_{tag}", 2 * n, m=B * p, n=c, k=c, dtype=d, dtype_bytes=b),
                Op(GEMM, f"unet_cross_kv_{tag}", n, m=B * cfg.context_tokens, n=2 * c, k=cfg.context_dim,
                   dtype=d, dtype_bytes=b),
                Op(ATTN_PREFILL, f"unet_cross_attention_{tag}", n, seqs=B, q_tokens=B * p,
                   kv_tokens=B * cfg.context_tokens, pairs=B * p * cfg.context_tokens, heads=H, kv_heads=H,
                   head_dim=c // H, dtype=d, dtype_bytes=b),
                Op(GEMM, f"unet_ff_up_{tag}", n, m=B * p, n=8 * c, k=c, dtype=d, dtype_bytes=b),
                Op(GEMM, f"unet_ff_down_{tag}", n, m=B * p, n=c, k=4 * c, dtype=d, dtype_bytes=b),
                Op(GEMM, f"unet_o_proj_{tag}", n, m=B * p, n=c, k=c, dtype=d, dtype_bytes=b)]
    return ops


def step_flops(cfg: DenoiserConfig, images: int, resolution_px: int, guidance: bool = True) -> float:
    return sum(op.flops() for op in step_ops(cfg, images, resolution_px, guidance))


def weight_bytes(cfg: DenoiserConfig) -> float:
    """Bytes of the lowered weight layers (every GEMM's n x k, once per layer), 2 bytes each (fp16 /
    bf16): DiT-XL/2's 675 M parameters less its timestep and class embeddings (668.9 M), SD-1.5's
    859.5 M less its time embedding (831.2 M); biases and norms ignored."""
    lvl = 1 << (len(cfg.channels) - 1) if cfg.kind == "unet" else cfg.patch
    res = cfg.latent_downsample * lvl  # the smallest resolution the model takes: weights do not depend on it
    return 2.0 * sum(op.count * op.n * op.k for op in step_ops(cfg, 1, res, guidance=False) if op.kind == "gemm")


def activation_bytes(cfg: DenoiserConfig, images: int, resolution_px: int, guidance: bool = True) -> float:
    """Peak activation bytes of one denoising step of ``images`` images (doubled under guidance): the
    largest single op's inputs and outputs (a GEMM's m x k and m x n; an attention's Q, K, V and O,
    fused so the score matrix is never stored; an elementwise op's bytes) plus, for the UNet, every
    skip tensor saved on the way down and held until the up path reads it. Ignores the allocator's
    fragmentation and the framework's workspace (an engine's activation reserve covers them)."""
    if images <= 0:
        return 0.0
    B, b = images * (2 if guidance else 1), 2.0
    peak = 0.0
    for op in step_ops(cfg, images, resolution_px, guidance):
        if op.kind == "gemm":
            ws = (op.m * op.k + op.m * op.n) * b
        elif op.kind == "attn_prefill":
            ws = (2 * op.q_tokens + 2 * op.kv_tokens) * op.heads * op.head_dim * b
        else:
            ws = float(op.bytes)
        peak = max(peak, ws)
    if cfg.kind == "unet":
        side = cfg.latent_side(resolution_px)
        skips = side * side * cfg.channels[0]  # conv_in's output
        for lvl, c in enumerate(cfg.channels):
            px = (side >> lvl) ** 2
            skips += cfg.layers_per_block * px * c
            if lvl < len(cfg.channels) - 1:
                skips += ((side >> (lvl + 1)) ** 2) * c  # the downsampled tensor
        peak += B * skips * b
    return peak
