"""CNN layer graphs: tensors, layers and the shape arithmetic an MCU run needs.

Models: a CNN as a topologically ordered list of layers (conv, depthwise conv, fully connected,
    residual add, max/average pooling, global average pooling), each reading named activation
    tensors (H x W x C, NHWC, batch 1) and writing one. Padding is TensorFlow/TFLite "same"
    (``out = ceil(in / stride)``, the smaller half of the padding before), as in the TFLite models
    that CMSIS-NN / TinyEngine deploy. Weights (plus an int32 bias per output channel) live in
    flash; activations in SRAM. Every layer carries its weight bit width and every tensor its
    activation bit width, so int8, fp32 and per-layer mixed precision are the same graph.
Ignores: batch norm (folded into the conv before it, as TFLite does), activation functions
    (fused, free), per-channel requantisation tables in flash, concatenation and branches other
    than residual adds (none of the shipped networks needs them).
Sources: MobileNetV2 (Sandler et al., CVPR 2018) and TFLite "same" padding arithmetic.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

WEIGHTED_OPS = ("conv", "dwconv", "fc")
SPATIAL_OPS = ("conv", "dwconv", "maxpool", "avgpool", "add")  # ops a patch-based stage may hold
OPS = ("conv", "dwconv", "fc", "add", "maxpool", "avgpool", "gap")
BIAS_BYTES = 4  # int32 bias per output channel (TFLite int8 convention)


def same_out(size: int, kernel: int, stride: int) -> int:
    """Output length of a TF "same" convolution along one dimension."""
    return -(-size // stride)


def same_pad(size: int, kernel: int, stride: int) -> int:
    """Padding before the first element (top or left) of a TF "same" convolution."""
    out = same_out(size, kernel, stride)
    return max((out - 1) * stride + kernel - size, 0) // 2


def packed_bytes(elems: int, bits: int) -> int:
    """Bytes of ``elems`` values of ``bits`` each, packed (sub-byte values share bytes)."""
    return -(-elems * bits // 8)


@dataclass(frozen=True)
class Tensor:
    """An activation tensor (batch 1, NHWC)."""

    name: str
    h: int
    w: int
    c: int
    bits: int = 8

    @property
    def elems(self) -> int:
        return self.h * self.w * self.c

    @property
    def nbytes(self) -> int:
        return packed_bytes(self.elems, self.bits)

    def region_bytes(self, rows: int, cols: int, bits: int | None = None) -> int:
        return packed_bytes(rows * cols * self.c, self.bits if bits is None else bits)


@dataclass(frozen=True)
class Layer:
    """One layer. ``kernel``/``stride``/``pad`` are (rows, cols); ``pad`` is the top/left padding."""

    name: str
    op: str
    inputs: tuple[str, ...]
    output: str
    block: str
    cin: int
    cout: int
    kernel: tuple[int, int] = (1, 1)
    stride: tuple[int, int] = (1, 1)
    pad: tuple[int, int] = (0, 0)
    w_bits: int = 8

    def macs_per_pixel(self) -> int:
        """Multiply-accumulates per output pixel (all output channels)."""
        kh, kw = self.kernel
        if self.op == "conv":
            return kh * kw * self.cin * self.cout
        if self.op == "dwconv":
            return kh * kw * self.cout
        if self.op == "fc":
            return self.cin * self.cout
        return 0

    def ops_per_pixel(self) -> int:
        """Non-MAC element operations per output pixel (adds, compares, pooling sums)."""
        kh, kw = self.kernel
        if self.op == "add":
            return self.cout
        if self.op in ("maxpool", "avgpool", "gap"):
            return kh * kw * self.cout
        return 0

    @property
    def params(self) -> int:
        kh, kw = self.kernel
        if self.op == "conv":
            return kh * kw * self.cin * self.cout + self.cout
        if self.op == "dwconv":
            return kh * kw * self.cout + self.cout
        if self.op == "fc":
            return self.cin * self.cout + self.cout
        return 0

    @property
    def weight_bytes(self) -> int:
        """Flash bytes: packed weights plus an int32 bias per output channel."""
        if self.op not in WEIGHTED_OPS:
            return 0
        return packed_bytes(self.params - self.cout, self.w_bits) + BIAS_BYTES * self.cout

    def input_interval(self, dim: int, lo: int, hi: int, in_size: int) -> tuple[int, int]:
        """Input rows (dim 0) or cols (dim 1) ``[a, b)`` needed to compute outputs ``[lo, hi)``."""
        if self.op == "add":
            return lo, hi
        if self.op in ("gap", "fc"):
            return 0, in_size
        k, s, p = self.kernel[dim], self.stride[dim], self.pad[dim]
        return max(lo * s - p, 0), min((hi - 1) * s - p + k, in_size)


@dataclass(frozen=True)
class Graph:
    """A CNN: its tensors, its layers in execution order and the graph input's name."""

    name: str
    input: str
    tensors: dict[str, Tensor]
    layers: tuple[Layer, ...]
    meta: dict[str, object] = field(default_factory=dict)

    def out(self, layer: Layer) -> Tensor:
        return self.tensors[layer.output]

    def macs(self, layer: Layer) -> int:
        o = self.out(layer)
        return o.h * o.w * layer.macs_per_pixel()

    @property
    def total_macs(self) -> int:
        return sum(self.macs(layer) for layer in self.layers)

    @property
    def weight_bytes(self) -> int:
        return sum(layer.weight_bytes for layer in self.layers)

    @property
    def params(self) -> int:
        return sum(layer.params for layer in self.layers)

    def blocks(self) -> list[str]:
        """Block names in execution order."""
        seen: list[str] = []
        for layer in self.layers:
            if not seen or seen[-1] != layer.block:
                seen.append(layer.block)
        return seen

    def last_use(self) -> dict[str, int]:
        """Index of the last layer reading each tensor; the graph output lives to the end."""
        last = {name: -1 for name in self.tensors}
        for i, layer in enumerate(self.layers):
            for t in layer.inputs:
                last[t] = i
        last[self.layers[-1].output] = len(self.layers) - 1
        return last

    def produced_at(self) -> dict[str, int]:
        at = {self.input: -1}
        for i, layer in enumerate(self.layers):
            at[layer.output] = i
        return at

    def with_precision(self, w_bits: int, a_bits: int) -> Graph:
        """A copy with every weight at ``w_bits`` and every activation (input included) at ``a_bits``."""
        tensors = {k: replace(t, bits=a_bits) for k, t in self.tensors.items()}
        layers = tuple(replace(layer, w_bits=w_bits) for layer in self.layers)
        return replace(self, tensors=tensors, layers=layers)

    def with_bits(self, layer_bits: dict[str, tuple[int, int]]) -> Graph:
        """A copy with (weight bits, output activation bits) set for the named layers."""
        layers, tensors = [], dict(self.tensors)
        for layer in self.layers:
            if layer.name in layer_bits:
                w, a = layer_bits[layer.name]
                layer = replace(layer, w_bits=w if layer.op in WEIGHTED_OPS else layer.w_bits)
                tensors[layer.output] = replace(tensors[layer.output], bits=a)
            layers.append(layer)
        return replace(self, tensors=tensors, layers=tuple(layers))


class GraphBuilder:
    """Builds a :class:`Graph` layer by layer with "same" shape arithmetic."""

    def __init__(self, name: str, h: int, w: int, c: int, bits: int = 8, w_bits: int = 8) -> None:
        self.name, self.bits, self.w_bits = name, bits, w_bits
        self.tensors: dict[str, Tensor] = {"input": Tensor("input", h, w, c, bits)}
        self.layers: list[Layer] = []
        self.block = "stem"

    def _add(self, name: str, op: str, inputs: tuple[str, ...], h: int, w: int, cin: int, cout: int,
             kernel: tuple[int, int] = (1, 1), stride: tuple[int, int] = (1, 1),
             pad: tuple[int, int] = (0, 0)) -> str:
        if name in self.tensors:
            raise ValueError(f"duplicate layer name {name!r} in {self.name}")
        self.tensors[name] = Tensor(name, h, w, cout, self.bits)
        self.layers.append(Layer(name, op, inputs, name, self.block, cin, cout, kernel, stride, pad, self.w_bits))
        return name

    def _spatial(self, x: str, name: str, op: str, cout: int, k: int | tuple[int, int],
                 s: int | tuple[int, int]) -> str:
        t = self.tensors[x]
        kh, kw = (k, k) if isinstance(k, int) else k
        sh, sw = (s, s) if isinstance(s, int) else s
        h, w = same_out(t.h, kh, sh), same_out(t.w, kw, sw)
        pad = (same_pad(t.h, kh, sh), same_pad(t.w, kw, sw))
        return self._add(name, op, (x,), h, w, t.c, cout, (kh, kw), (sh, sw), pad)

    def conv(self, x: str, name: str, cout: int, k: int | tuple[int, int] = 1, s: int | tuple[int, int] = 1) -> str:
        return self._spatial(x, name, "conv", cout, k, s)

    def dwconv(self, x: str, name: str, k: int = 3, s: int = 1) -> str:
        return self._spatial(x, name, "dwconv", self.tensors[x].c, k, s)

    def pool(self, x: str, name: str, k: int, s: int, kind: str = "maxpool") -> str:
        return self._spatial(x, name, kind, self.tensors[x].c, k, s)

    def add(self, a: str, b: str, name: str) -> str:
        ta, tb = self.tensors[a], self.tensors[b]
        if (ta.h, ta.w, ta.c) != (tb.h, tb.w, tb.c):
            raise ValueError(f"add {name!r}: shapes {ta} and {tb} differ")
        return self._add(name, "add", (a, b), ta.h, ta.w, ta.c, ta.c)

    def gap(self, x: str, name: str) -> str:
        t = self.tensors[x]
        return self._add(name, "gap", (x,), 1, 1, t.c, t.c, kernel=(t.h, t.w), stride=(t.h, t.w))

    def fc(self, x: str, name: str, cout: int) -> str:
        t = self.tensors[x]
        return self._add(name, "fc", (x,), 1, 1, t.elems, cout)

    def build(self, **meta: object) -> Graph:
        return Graph(self.name, "input", dict(self.tensors), tuple(self.layers), dict(meta))


def make_divisible(v: float, divisor: int = 8, min_value: int | None = None) -> int:
    """Round channel counts as the MobileNet reference code does (never more than 10% down)."""
    min_value = min_value or divisor
    new_v = max(min_value, int(v + divisor / 2) // divisor * divisor)
    if new_v < 0.9 * v:
        new_v += divisor
    return new_v


def receptive_field(kernels: list[int], strides: list[int]) -> tuple[int, int]:
    """(effective kernel K, total stride S) of a chain: an output patch of t pixels needs
    ``(t - 1) * S + K`` input pixels, with ``K = 1 + sum_l (k_l - 1) * prod_{m<l} s_m``."""
    k_eff, s_tot = 1, 1
    for k, s in zip(kernels, strides):
        k_eff += (k - 1) * s_tot
        s_tot *= s
    return k_eff, s_tot

