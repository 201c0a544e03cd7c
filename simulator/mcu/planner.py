"""Activation memory planner for MCU inference: layer-by-layer and patch-based (MCUNetV2) schedules.

Models: SRAM as one arena holding every live activation tensor, perfectly packed. A tensor lives
    from the layer that writes it to the last layer that reads it (residual skips stay live
    across their block). In place where legal (``inplace=True``): a depthwise conv or pooling
    whose input dies at that layer overwrites it channel by channel, needing one output channel
    of scratch (TinyEngine's in-place depthwise); a residual add writes into a dying input.
    Patch-based: the first blocks run once per cell of a ``p x p`` grid over the patch stage's
    output; each patch computes, layer by layer, the region its receptive field needs (regions
    clipped at the feature-map border, so border patches are smaller). The stage's full output
    buffer stays live while patches run; the worst patch sets the stage's peak. Overlapping
    regions are recomputed: the computed MACs are summed over patches. Per-patch bit widths
    (value-driven mixed precision) set the stage tensors' bits for that patch.
Ignores: arena fragmentation and alignment padding, im2col/scratch buffers other than the
    depthwise channel, the input image when it is streamed per patch (``input_resident=False``:
    the camera/DMA delivers each patch's input rows, as MCUNetV2 counts it), receptive-field
    redistribution (MCUNetV2's network redesign that shrinks the overlap).
Sources: Lin et al., "MCUNet: Tiny Deep Learning on IoT Devices", NeurIPS 2020 (peak-memory
    accounting, in-place depthwise); Lin et al., "MCUNetV2: Memory-Efficient Patch-based Inference
    for Tiny Deep Learning", NeurIPS 2021 (patch-based inference and its recompute).
"""

from __future__ import annotations

from dataclasses import dataclass

from simulator.core.errors import CapacityError, ConfigError
from workloads.cnn.graph import SPATIAL_OPS, Graph, Layer, packed_bytes

INPLACE_OPS = ("dwconv", "maxpool", "avgpool")
AUTO_PEAK_TOLERANCE = 0.02  # peaks within 2 % of the lowest are "equal" for the auto cut


@dataclass(frozen=True)
class Step:
    """One layer of a schedule: the SRAM in use while it runs and the work it does."""

    index: int
    layer: str
    block: str
    op: str
    live_bytes: int  # for a patched layer: the worst patch
    area: int  # output pixels computed (recompute included)
    macs: int  # computed (recompute included)
    base_macs: int  # of the layer run once, whole
    bitops: int  # sum over computed MACs of weight bits x input activation bits
    im2col_bytes: int
    calls: int
    patched: bool


@dataclass(frozen=True)
class Plan:
    schedule: str  # "layer" or "patch"
    steps: tuple[Step, ...]
    patches: int = 1
    patch_blocks: tuple[str, ...] = ()
    stage_output_bytes: int = 0

    @property
    def peak_step(self) -> Step:
        return max(self.steps, key=lambda s: (s.live_bytes, -s.index))

    @property
    def peak_bytes(self) -> int:
        return self.peak_step.live_bytes

    @property
    def macs(self) -> int:
        return sum(s.macs for s in self.steps)

    @property
    def base_macs(self) -> int:
        return sum(s.base_macs for s in self.steps)

    @property
    def recompute_overhead(self) -> float:
        return self.macs / self.base_macs - 1.0 if self.base_macs else 0.0

    @property
    def bitops(self) -> int:
        return sum(s.bitops for s in self.steps)

    def stage_peak_bytes(self) -> int:
        """Peak over the patched layers (0 for a layer-by-layer plan)."""
        return max((s.live_bytes for s in self.steps if s.patched), default=0)

    @property
    def label(self) -> str:
        if self.schedule == "layer":
            return "layer-by-layer"
        return f"patch-based ({self.patches}x{self.patches} patches over {', '.join(self.patch_blocks)})"


def capacity_error(plan: Plan, graph: Graph, budget_bytes: int, mcu: str, where: str = "schedule") -> CapacityError:
    """The one-line error for a plan whose peak exceeds ``budget_bytes``."""
    s = plan.peak_step
    return CapacityError(f"{graph.name} does not fit {mcu}'s SRAM with the {plan.label} schedule: layer "
                         f"{s.layer!r} needs {s.live_bytes:,} bytes of activations, {budget_bytes:,} available "
                         f"— short by {s.live_bytes - budget_bytes:,} bytes", where=where)


def flash_check(graph: Graph, budget_bytes: int, mcu: str, where: str = "network") -> None:
    """CapacityError naming the layer whose weights first overflow flash, and by how much."""
    total = 0
    for layer in graph.layers:
        total += layer.weight_bytes
        if total > budget_bytes:
            raise CapacityError(f"{graph.name} weights ({graph.weight_bytes:,} bytes) do not fit {mcu}'s flash "
                                f"({budget_bytes:,} bytes): overflow at layer {layer.name!r}, short by "
                                f"{graph.weight_bytes - budget_bytes:,} bytes", where=where)


# ------------------------------------------------------------------------------ shared arithmetic
def _in_bits(graph: Graph, layer: Layer) -> int:
    return graph.tensors[layer.inputs[0]].bits


def _im2col_bytes(graph: Graph, layer: Layer, area: int, bits: int | None = None) -> int:
    if layer.op != "conv" or layer.kernel == (1, 1):
        return 0
    kh, kw = layer.kernel
    return packed_bytes(area * kh * kw * layer.cin, bits or _in_bits(graph, layer))


def _live(graph: Graph) -> list[list[str]]:
    """Tensors live at each layer index."""
    last, prod = graph.last_use(), graph.produced_at()
    return [[t for t in graph.tensors if prod[t] <= i <= last[t]] for i in range(len(graph.layers))]


def storage(graph: Graph, inplace: bool) -> dict[str, str]:
    """The buffer each tensor is stored in (itself unless written in place over a dying tensor).

    In place where legal: a depthwise conv / pooling over its dying input; a residual add into its
    dying input; and the conv feeding a residual add (the add fused into it) accumulates straight
    into the other, dying, operand's buffer: each output element reads only its own position."""
    root = {t: t for t in graph.tensors}
    if not inplace:
        return root
    last = graph.last_use()
    layers = graph.layers
    for i, layer in enumerate(layers):
        first = layer.inputs[0]
        if layer.op in INPLACE_OPS and last[first] == i:
            root[layer.output] = root[first]
        elif layer.op == "add":
            dying = [t for t in layer.inputs if last[t] == i]
            if dying:
                root[layer.output] = root[dying[-1]]
        if i + 1 < len(layers) and layers[i + 1].op == "add" and layer.output in layers[i + 1].inputs:
            nxt = layers[i + 1]
            others = [t for t in nxt.inputs if t != layer.output and last[t] == i + 1]
            consumers = [m for m in layers if layer.output in m.inputs]
            if others and len(consumers) == 1 and root[others[0]] != root[layer.output]:
                root[layer.output] = root[others[0]]
    for t in root:  # follow chains to the final buffer
        while root[root[t]] != root[t]:
            root[t] = root[root[t]]
    return root


def _step_bytes(layer: Layer, live: list[str], size: dict[str, int], root: dict[str, str], channel_bytes: int) -> int:
    buffers: dict[str, int] = {}
    for t in live:
        buffers[root[t]] = max(buffers.get(root[t], 0), size[t])
    total = sum(buffers.values())
    if layer.op in INPLACE_OPS and root[layer.output] == root[layer.inputs[0]]:
        total += channel_bytes  # one output channel of scratch for the in-place pass
    return total


def _whole_step(graph: Graph, i: int, live: list[str], size: dict[str, int], root: dict[str, str]) -> Step:
    layer = graph.layers[i]
    out = graph.out(layer)
    channel = packed_bytes(out.h * out.w, out.bits)
    macs = graph.macs(layer)
    return Step(i, layer.name, layer.block, layer.op, _step_bytes(layer, live, size, root, channel),
                out.h * out.w, macs, macs, macs * layer.w_bits * _in_bits(graph, layer),
                _im2col_bytes(graph, layer, out.h * out.w), 1, False)


def plan_layer_by_layer(graph: Graph, inplace: bool = True) -> Plan:
    """Each layer runs once over whole tensors."""
    size = {name: t.nbytes for name, t in graph.tensors.items()}
    root = storage(graph, inplace)
    steps = tuple(_whole_step(graph, i, live, size, root) for i, live in enumerate(_live(graph)))
    return Plan("layer", steps)


# ------------------------------------------------------------------------------ patch-based
def split(n: int, parts: int) -> list[tuple[int, int]]:
    """``[lo, hi)`` of ``parts`` near-equal slices of ``range(n)`` (the larger ones first)."""
    out, lo = [], 0
    for k in range(parts):
        hi = lo + n // parts + (1 if k < n % parts else 0)
        out.append((lo, hi))
        lo = hi
    return out


def stage_intervals(graph: Graph, n_layers: int, patches: int, dim: int) -> dict[str, list[tuple[int, int]]]:
    """For each tensor of the stage, the rows (dim 0) or cols (dim 1) each patch index needs."""
    stage = graph.layers[:n_layers]
    out = graph.out(stage[-1])
    need: dict[str, list[tuple[int, int]]] = {stage[-1].output: split(out.h if dim == 0 else out.w, patches)}
    for layer in reversed(stage):
        regions = need[layer.output]
        for t in layer.inputs:
            src = graph.tensors[t]
            size = src.h if dim == 0 else src.w
            got = [layer.input_interval(dim, lo, hi, size) if hi > lo else (0, 0) for lo, hi in regions]
            prev = need.get(t)
            need[t] = got if prev is None else [(min(a[0], b[0]), max(a[1], b[1])) for a, b in zip(prev, got)]
    return need


def cut_points(graph: Graph, patches: int = 1) -> list[int]:
    """Layer counts ``n`` at block ends where the first ``n`` layers can run patch by patch."""
    last = graph.last_use()
    out, ends = [], []
    for i, layer in enumerate(graph.layers):
        if i + 1 == len(graph.layers) or graph.layers[i + 1].block != layer.block:
            ends.append(i + 1)
    for n in ends:
        stage = graph.layers[:n]
        if n == len(graph.layers) or any(layer.op not in SPATIAL_OPS for layer in stage):
            break
        stage_out = stage[-1].output
        escapes = [t for t in [graph.input] + [layer.output for layer in stage]
                   if t != stage_out and last[t] >= n]
        t = graph.tensors[stage_out]
        if not escapes and min(t.h, t.w) >= patches:
            out.append(n)
    return out


def plan_patch(graph: Graph, patches: int, n_layers: int, patch_bits: list[int] | None = None,
               input_resident: bool = False, inplace: bool = True) -> Plan:
    """The first ``n_layers`` (a valid cut) run once per patch of a ``patches x patches`` grid."""
    if n_layers not in cut_points(graph, patches):
        raise ConfigError(f"cannot run the first {n_layers} layers of {graph.name} patch by patch with "
                          f"{patches}x{patches} patches (valid cuts: {cut_points(graph, patches)})",
                          where="schedule.patch_stages")
    cells = [(r, c) for r in range(patches) for c in range(patches)]
    if patch_bits is not None and len(patch_bits) != len(cells):
        raise ConfigError(f"patch_bits needs {len(cells)} entries ({patches}x{patches}), got {len(patch_bits)}",
                          where="schedule.patch_bits")
    rows, cols = stage_intervals(graph, n_layers, patches, 0), stage_intervals(graph, n_layers, patches, 1)
    root, live_at = storage(graph, inplace), _live(graph)
    stage = graph.layers[:n_layers]
    stage_out = stage[-1].output
    so = graph.tensors[stage_out]

    def span(iv: tuple[int, int]) -> int:
        return max(iv[1] - iv[0], 0)

    def bits_of(t: str, k: int) -> int:
        if patch_bits is None or t == graph.input:
            return graph.tensors[t].bits
        return patch_bits[k]

    out_buffer = sum(so.region_bytes(span(rows[stage_out][r]), span(cols[stage_out][c]), bits_of(stage_out, k))
                     for k, (r, c) in enumerate(cells))
    steps = []
    for i, layer in enumerate(stage):
        worst = 0
        for k, (r, c) in enumerate(cells):
            size = {}
            for t in live_at[i]:
                ten = graph.tensors[t]
                if t == stage_out:
                    size[t] = out_buffer
                elif t == graph.input and input_resident:
                    size[t] = ten.nbytes
                else:
                    size[t] = ten.region_bytes(span(rows[t][r]), span(cols[t][c]), bits_of(t, k))
            o = rows[layer.output][r], cols[layer.output][c]
            channel = packed_bytes(span(o[0]) * span(o[1]), bits_of(layer.output, k))
            worst = max(worst, _step_bytes(layer, live_at[i], size, root, channel))
        per_row = [span(iv) for iv in rows[layer.output]]
        per_col = [span(iv) for iv in cols[layer.output]]
        area = sum(per_row) * sum(per_col)
        mpp = layer.macs_per_pixel()
        in_t = layer.inputs[0]
        bitops = sum(per_row[r] * per_col[c] * mpp * layer.w_bits * bits_of(in_t, k) for k, (r, c) in enumerate(cells))
        steps.append(Step(i, layer.name, layer.block, layer.op, worst, area, area * mpp, graph.macs(layer), bitops,
                          _im2col_bytes(graph, layer, area), len(cells), True))
    size = {name: t.nbytes for name, t in graph.tensors.items()}
    size[stage_out] = out_buffer
    for i in range(n_layers, len(graph.layers)):
        steps.append(_whole_step(graph, i, live_at[i], size, root))
    blocks = tuple(dict.fromkeys(layer.block for layer in stage))
    return Plan("patch", tuple(steps), patches, blocks, out_buffer)


def resolve_stage(graph: Graph, patches: int, patch_stages: int | str) -> int | None:
    """Layer count for ``patch_stages``: N (first N blocks), a block name (through it) or 'auto' (None)."""
    if patch_stages == "auto":
        return None
    blocks = graph.blocks()
    if isinstance(patch_stages, int):
        if not 1 <= patch_stages < len(blocks):
            raise ConfigError(f"patch_stages must be 1..{len(blocks) - 1} blocks, got {patch_stages}",
                              where="schedule.patch_stages")
        name = blocks[patch_stages - 1]
    else:
        if patch_stages not in blocks:
            raise ConfigError(f"unknown block {patch_stages!r}; blocks of {graph.name}: {', '.join(blocks)}",
                              where="schedule.patch_stages")
        name = patch_stages
    return max(i for i, layer in enumerate(graph.layers) if layer.block == name) + 1


def plan_patch_auto(graph: Graph, patches: int, patch_stages: int | str = "auto", patch_bits: list[int] | None = None,
                    input_resident: bool = False, inplace: bool = True, budget_bytes: int | None = None) -> Plan:
    """A patch plan. With 'auto': among the cuts that fit ``budget_bytes`` the one with the fewest MACs
    (least recompute); without a budget, or when none fits, the lowest peak SRAM, where peaks within
    ``AUTO_PEAK_TOLERANCE`` of the lowest count as equal and the fewest MACs wins among them."""
    n = resolve_stage(graph, patches, patch_stages)
    if n is not None:
        return plan_patch(graph, patches, n, patch_bits, input_resident, inplace)
    cuts = cut_points(graph, patches)
    if not cuts:
        raise ConfigError(f"{graph.name} has no block boundary where a {patches}x{patches} patch stage can end",
                          where="schedule.patches")
    plans = [plan_patch(graph, patches, n, patch_bits, input_resident, inplace) for n in cuts]
    fitting = [p for p in plans if budget_bytes is not None and p.peak_bytes <= budget_bytes]
    if fitting:
        return min(fitting, key=lambda p: (p.macs, p.peak_bytes))
    low = min(p.peak_bytes for p in plans)
    near = [p for p in plans if p.peak_bytes <= low * (1 + AUTO_PEAK_TOLERANCE)]
    return min(near, key=lambda p: (p.macs, p.peak_bytes))
