"""Layer graphs of the CNNs used in tiny-ML papers, built from their published layer tables.

Models: MobileNetV2 with width multiplier and input resolution (the torchvision/Keras reference:
    channels rounded by ``make_divisible(c * width, 8)``, expansion ``round(cin * t)``, last conv
    1280 channels for width <= 1); an MCUNet-style network (MobileNetV2 backbone with the MCUNet
    search space's per-block kernel 3/5/7 and expansion 3/4/6); ResNet-18 at any resolution;
    the keyword-spotting DS-CNN of "Hello Edge" (DS-CNN-S, 64 features), which is also the
    MLPerf Tiny KWS reference model (49x10 MFCC input, 12 classes).
Ignores: batch norm and activations (folded/fused), dropout, squeeze-excite (none here).
    The MCUNet block list is illustrative: the published searched architectures (mcunet-in*/vww*)
    are not transcribed here, so MCUNet numbers are of an MCUNet-*style* network, not of the
    released checkpoints.
Sources: Sandler et al., "MobileNetV2", CVPR 2018, Table 2; He et al., "Deep Residual Learning",
    CVPR 2016, Table 1; Zhang et al., "Hello Edge: Keyword Spotting on Microcontrollers",
    arXiv:1711.07128, DS-CNN-S; Banbury et al., "MLPerf Tiny Benchmark", NeurIPS 2021 (KWS model);
    Lin et al., "MCUNet", NeurIPS 2020 (search space).
"""

from __future__ import annotations

import difflib
from collections.abc import Callable

from simulator.core.errors import ConfigError
from workloads.cnn.graph import Graph, GraphBuilder, make_divisible

# MobileNetV2, Table 2 of Sandler et al.: expansion t, channels c, repeats n, first stride s.
MBV2_SETTINGS = ((1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1), (6, 160, 3, 2),
                 (6, 320, 1, 1))

# MCUNet-style blocks: (expansion, kernel, channels, stride). Illustrative (see module docstring).
MCUNET_BLOCKS = ((1, 3, 8, 1),
                 (3, 7, 16, 2), (3, 3, 16, 1),
                 (3, 5, 24, 2), (4, 5, 24, 1), (3, 3, 24, 1),
                 (4, 5, 40, 2), (3, 5, 40, 1), (4, 3, 40, 1),
                 (6, 5, 48, 1), (4, 5, 48, 1),
                 (6, 7, 96, 2), (5, 5, 96, 1), (4, 3, 96, 1),
                 (6, 3, 160, 1))


def inverted_residual(b: GraphBuilder, x: str, name: str, t: float, k: int, cout: int, s: int) -> str:
    """MobileNetV2 block: 1x1 expand (if t != 1), kxk depthwise, 1x1 project, residual if shapes match."""
    b.block = name
    cin = b.tensors[x].c
    h = x
    if t != 1:
        h = b.conv(h, f"{name}.expand", int(round(cin * t)))
    h = b.dwconv(h, f"{name}.dw", k, s)
    h = b.conv(h, f"{name}.project", cout)
    if s == 1 and cin == cout:
        h = b.add(h, x, f"{name}.add")
    return h


def mobilenet_v2(width: float = 1.0, resolution: int = 224, classes: int = 1000) -> Graph:
    """MobileNetV2-``width`` at ``resolution`` x ``resolution`` x 3."""
    b = GraphBuilder(f"mobilenet_v2-w{width:g}-r{resolution}", resolution, resolution, 3)
    x = b.conv("input", "stem.conv", make_divisible(32 * width), 3, 2)
    i = 0
    for t, c, n, s in MBV2_SETTINGS:
        for j in range(n):
            x = inverted_residual(b, x, f"b{i}", t, 3, make_divisible(c * width), s if j == 0 else 1)
            i += 1
    b.block = "head"
    x = b.conv(x, "head.conv", make_divisible(1280 * max(1.0, width)))
    x = b.gap(x, "head.pool")
    b.fc(x, "head.fc", classes)
    return b.build(network="mobilenet_v2", width=width, resolution=resolution)


def mcunet(width: float = 1.0, resolution: int = 176, classes: int = 1000) -> Graph:
    """An MCUNet-style network (illustrative block list ``MCUNET_BLOCKS``) at ``resolution``."""
    b = GraphBuilder(f"mcunet-w{width:g}-r{resolution}", resolution, resolution, 3)
    x = b.conv("input", "stem.conv", make_divisible(16 * width), 3, 2)
    for i, (t, k, c, s) in enumerate(MCUNET_BLOCKS):
        x = inverted_residual(b, x, f"b{i}", t, k, make_divisible(c * width), s)
    b.block = "head"
    x = b.gap(x, "head.pool")
    b.fc(x, "head.fc", classes)
    return b.build(network="mcunet", width=width, resolution=resolution)


def resnet18(width: float = 1.0, resolution: int = 224, classes: int = 1000) -> Graph:
    """ResNet-18 (basic blocks [2, 2, 2, 2]) at ``resolution``; ``width`` scales every channel count."""
    b = GraphBuilder(f"resnet18-w{width:g}-r{resolution}", resolution, resolution, 3)
    x = b.conv("input", "stem.conv", make_divisible(64 * width), 7, 2)
    x = b.pool(x, "stem.pool", 3, 2)
    for stage, c in enumerate((64, 128, 256, 512), start=1):
        c = make_divisible(c * width)
        for j in range(2):
            s = 2 if stage > 1 and j == 0 else 1
            name = f"l{stage}.{j}"
            b.block = name
            h = b.conv(x, f"{name}.conv1", c, 3, s)
            h = b.conv(h, f"{name}.conv2", c, 3, 1)
            skip = b.conv(x, f"{name}.down", c, 1, s) if (s != 1 or b.tensors[x].c != c) else x
            x = b.add(h, skip, f"{name}.add")
    b.block = "head"
    x = b.gap(x, "head.pool")
    b.fc(x, "head.fc", classes)
    return b.build(network="resnet18", width=width, resolution=resolution)


def ds_cnn(width: float = 1.0, classes: int = 12) -> Graph:
    """DS-CNN-S keyword spotting (49 MFCC frames x 10 coefficients, 10x4 stride-2 conv, 4 DS blocks)."""
    c = make_divisible(64 * width)
    b = GraphBuilder(f"ds_cnn-w{width:g}", 49, 10, 1)
    x = b.conv("input", "stem.conv", c, (10, 4), (2, 2))
    for i in range(4):
        b.block = f"ds{i}"
        x = b.dwconv(x, f"ds{i}.dw", 3, 1)
        x = b.conv(x, f"ds{i}.pw", c)
    b.block = "head"
    x = b.gap(x, "head.pool")
    b.fc(x, "head.fc", classes)
    return b.build(network="ds_cnn", width=width, resolution=None)


NETWORKS: dict[str, Callable[..., Graph]] = {
    "mobilenet_v2": mobilenet_v2,
    "mcunet": mcunet,
    "resnet18": resnet18,
    "ds_cnn": ds_cnn,
}


def build_network(name: str, width: float = 1.0, resolution: int | None = None, where: str = "network") -> Graph:
    """Build a shipped network by name; unknown names and unsupported options are ConfigErrors."""
    builder = NETWORKS.get(name)
    if builder is None:
        close = difflib.get_close_matches(name, list(NETWORKS), n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        raise ConfigError(f"unknown network {name!r}{hint} known: {', '.join(NETWORKS)}", where=f"{where}.name")
    if not width > 0:
        raise ConfigError(f"width must be > 0, got {width!r}", where=f"{where}.width")
    kwargs: dict[str, object] = {"width": width}
    if resolution is not None:
        if builder is ds_cnn:
            raise ConfigError("ds_cnn has a fixed 49x10 MFCC input; leave resolution out", where=f"{where}.resolution")
        if resolution < 8:
            raise ConfigError(f"resolution must be >= 8, got {resolution}", where=f"{where}.resolution")
        kwargs["resolution"] = resolution
    return builder(**kwargs)
