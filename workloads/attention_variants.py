"""Attention variants per layer and per head: which keys each head reads and which K/V each layer keeps.

Models: a model's layers as a pattern of kinds -- ``F`` full (causal) attention, ``W`` sliding window
    of ``window_tokens`` recent tokens plus ``sink_tokens`` initial ones (Mistral, Gemma-2/3 and gpt-oss
    local layers; StreamingLLM's sink + window), ``S`` a linear-attention / state-space layer
    (``workloads.linear_attention``: fixed state, no K/V). On the full-attention layers: a share of the
    KV heads that are streaming heads (DuoAttention: sink + window, the other heads full); per-layer KV
    budgets, as a fraction of the context or a token count, kept after the prompt is read
    (PyramidKV, SnapKV: prefill reads the whole prompt, decode reads and the cache keeps the budget);
    top-k token selection at decode (Quest: the K/V stay whole, each step reads ``topk_tokens`` of
    them after a selection kernel that reads a min and a max key per page of ``topk_page_tokens``);
    block-sparse prefill with a density per head group (MInference: the pairs computed are the
    density times the dense causal pairs, plus the index estimate of the last
    ``sparse_index_queries`` queries against every key); cross-layer KV sharing (``kv_share_layers``
    adjacent layers read one K/V: the cache holds 1 / k of the layers' K/V).
    Each group of layers and heads that reads a different number of keys becomes its own attention
    op (``attn_decode_window``, ``attn_prefill_sparse``, ...) with the shorter context, so the
    kernel models see only shorter contexts; the memory plan counts, per token, the K/V that grow
    with the context and, per running sequence, the bounded K/V (windows, token budgets, states).
    Under tensor parallelism each group holds whole KV heads of the busiest GPU (``group_kv_heads``):
    with one KV head per GPU that head is a full one, and ops and memory plan are full attention's.
    The variant applies when ``model.attention`` is set (``{}`` suffices to take the model's own
    local layers from its config.json); without it every layer reads the whole context.
Ignores: the accuracy of a budget or a sparsity (``accuracy_delta`` and ``quality_note`` are inputs,
    reported, never computed); head counts that do not split evenly (the streaming-head share is
    rounded to whole KV heads per GPU); decode rows of one iteration with different contexts when
    only their sum is known (the serving loop passes the sum: each row is taken at the mean context,
    exact when the rows' contexts are equal or all inside / all beyond the window, an overestimate
    of the keys read otherwise); the K/V projection saved by cross-layer sharing (the projection
    GEMM stays whole); the one extra block a sliding window holds while it slides; bounded K/V in
    transfers between replicas and offload (they move the K/V that grows with the context); the
    whole prompt's K/V a budgeted layer holds while its prefill runs, before the budget is applied
    (the plan counts only the kept share); SnapKV-style budgets that keep every generated token
    (``kv_budget_tokens`` caps prompt and generated tokens together, ``kv_budget`` is a share of
    the whole context).
Sources: Jiang et al., "Mistral 7B" (2023) (sliding window 4,096); Gemma Team, "Gemma 2" (2024),
    "Gemma 3" (2025) (local/global layer patterns); Xiao et al., "StreamingLLM" (ICLR 2024); Xiao et
    al., "DuoAttention" (ICLR 2025); Cai et al., "PyramidKV" (2024); Li et al., "SnapKV" (2024);
    Tang et al., "Quest" (ICML 2024); Jiang et al., "MInference 1.0" (NeurIPS 2024); Brandon et
    al., "Reducing Transformer KV Cache Size with Cross-Layer Attention" (2024).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any

from pydantic import Field, field_validator

from simulator.config.quantities import StrictConfig

FULL, WINDOW, STATE = "F", "W", "S"
_PATTERN = re.compile(r"^\s*([FWS]+)\s*(?:\*\s*(\d+))?\s*$")
_KINDS = {"f": FULL, "full": FULL, "full_attention": FULL, "global": FULL, "w": WINDOW, "window": WINDOW,
          "sliding": WINDOW, "sliding_attention": WINDOW, "local": WINDOW, "s": STATE, "state": STATE,
          "linear": STATE, "linear_attention": STATE, "mamba2": STATE, "ssm": STATE}


def expand_pattern(pattern: str) -> str:
    """``"WWWWWF*8"`` -> the unit repeated 8 times; a plain string is returned as is (upper-cased)."""
    m = _PATTERN.match(pattern.upper())
    if m is None:
        raise ValueError(f"layer_pattern {pattern!r}: use the letters F (full attention), W (sliding window), "
                         f"S (linear / state-space), optionally 'UNIT*N'")
    return m.group(1) * int(m.group(2) or 1)


def _fraction(v: Any, what: str) -> Any:
    vals = v if isinstance(v, list) else [v]
    if not vals:
        raise ValueError(f"{what} is an empty list: give one value or one per layer / head group")
    for x in vals:
        if x is not None and not 0.0 < float(x) <= 1.0:
            raise ValueError(f"{what} {x} is outside (0, 1]")
    return v


class AttentionVariant(StrictConfig):
    """Per-layer and per-head attention of a model (``model.attention``)."""

    layer_pattern: str | list[str] | None = Field(
        default=None, description="one letter per layer: F full attention, W sliding window, S linear/state-space; "
                                  "'UNIT*N' repeats a unit; or a list of per-layer kinds (full / window / state, "
                                  "or the letters); default: the model's own local layers W, the rest F")
    window_tokens: int | None = Field(default=None, gt=0, description="recent tokens a W layer reads (default: the "
                                                                      "model's sliding_window_tokens)")
    sink_tokens: int = Field(default=0, ge=0, description="initial tokens a W layer also keeps (StreamingLLM sinks)")
    streaming_heads: float = Field(default=0.0, ge=0.0, lt=1.0, description="DuoAttention: share of the KV heads of "
                                   "the F layers that are streaming heads (sink + window); the rest read everything")
    head_window_tokens: int = Field(default=0, ge=0, description="recent tokens a streaming head keeps")
    head_sink_tokens: int = Field(default=0, ge=0, description="initial tokens a streaming head keeps")
    kv_budget: float | list[float] | None = Field(default=None, description="K/V kept per F layer after the prompt, "
                                                  "as a fraction of the context in (0, 1]: one value, or one per "
                                                  "layer (PyramidKV)")
    kv_budget_tokens: int | list[int] | None = Field(default=None, description="K/V kept per F layer after the "
                                                     "prompt, tokens: one value or one per layer (PyramidKV, SnapKV)")
    topk_tokens: int | None = Field(default=None, gt=0, description="Quest: keys each decode step reads per F layer")
    topk_page_tokens: int = Field(default=16, gt=0, description="Quest: tokens per page (one min and one max key "
                                                                "each, read by the selection kernel)")
    prefill_density: float | list[float] | None = Field(default=None, description="MInference: share of the causal "
                                                        "(query, key) blocks computed at prefill, in (0, 1]; a list "
                                                        "gives one per equal group of heads")
    sparse_index_queries: int = Field(default=64, ge=0, description="MInference: last queries scored against every "
                                                                    "key to build the sparse index")
    kv_share_layers: int = Field(default=1, ge=1, description="adjacent layers sharing one K/V (cross-layer "
                                                              "attention)")
    accuracy_delta: float = Field(default=0.0, description="quality change versus full attention (an input, "
                                                           "reported only)")
    quality_note: str = Field(default="", description="where the accuracy delta comes from (reported only)")

    @field_validator("kv_budget", "prefill_density")
    @classmethod
    def _in_unit(cls, v: Any, info: Any) -> Any:
        return _fraction(v, info.field_name)

    @field_validator("kv_budget_tokens")
    @classmethod
    def _positive(cls, v: Any) -> Any:
        if v == []:
            raise ValueError("kv_budget_tokens is an empty list: give one value or one per layer")
        for x in v if isinstance(v, list) else [v]:
            if x is not None and int(x) <= 0:
                raise ValueError(f"kv_budget_tokens {x} must be > 0")
        return v

    @field_validator("layer_pattern")
    @classmethod
    def _pattern(cls, v: str | list[str] | None) -> str | None:
        if isinstance(v, list):
            bad = [x for x in v if str(x).lower() not in _KINDS]
            if bad:
                raise ValueError(f"layer_pattern entries {bad[:3]} are not one of {', '.join(sorted(_KINDS))}")
            return "".join(_KINDS[str(x).lower()] for x in v)
        return None if v is None else expand_pattern(v)


def check_variant(model: Any) -> None:
    """Raise ValueError (one line) when the variant does not fit ``model``."""
    v = model.attention
    L = model.num_layers
    pattern = layer_kinds(model)
    if len(pattern) != L:
        raise ValueError(f"attention.layer_pattern has {len(pattern)} layers for num_layers {L}")
    if WINDOW in pattern and window_of(model) is None:
        raise ValueError("attention.layer_pattern has W layers but no window_tokens")
    if v is not None and v.window_tokens is not None and v.window_tokens + v.sink_tokens > model.max_position:
        raise ValueError(f"attention.window_tokens {v.window_tokens} (+ {v.sink_tokens} sinks) is larger than the "
                         f"model's context {model.max_position}")
    if STATE in pattern and model.linear is None:
        raise ValueError("attention.layer_pattern has S layers but the model has no linear: block")
    if v is None:
        return
    if v.head_window_tokens + v.head_sink_tokens > model.max_position:
        raise ValueError(f"attention.head_window_tokens {v.head_window_tokens} (+ {v.head_sink_tokens} sinks) is "
                         f"larger than the model's context {model.max_position}")
    caps = v.kv_budget_tokens if isinstance(v.kv_budget_tokens, list) else [v.kv_budget_tokens or 0]
    if max(caps) > model.max_position:
        raise ValueError(f"attention.kv_budget_tokens {max(caps)} is larger than the model's context "
                         f"{model.max_position}")
    if v.topk_tokens is not None and v.topk_tokens > model.max_position:
        raise ValueError(f"attention.topk_tokens {v.topk_tokens} is larger than the model's context "
                         f"{model.max_position}")
    if v.streaming_heads and not int(round(v.streaming_heads * model.num_kv_heads)):
        raise ValueError(f"attention.streaming_heads {v.streaming_heads} is less than one of the model's "
                         f"{model.num_kv_heads} KV heads")
    if v.streaming_heads and not (v.head_window_tokens or v.head_sink_tokens):
        raise ValueError("attention.streaming_heads needs head_window_tokens (and head_sink_tokens)")
    if v.kv_budget is not None and v.kv_budget_tokens is not None:
        raise ValueError("attention: give kv_budget or kv_budget_tokens, not both")
    full = pattern.count(FULL)
    for name in ("kv_budget", "kv_budget_tokens"):
        val = getattr(v, name)
        if isinstance(val, list) and len(val) != full:
            raise ValueError(f"attention.{name} has {len(val)} entries for {full} full-attention layers")
    dens = v.prefill_density
    if isinstance(dens, list) and len(dens) > model.num_kv_heads:
        raise ValueError(f"attention.prefill_density has {len(dens)} head groups for {model.num_kv_heads} KV heads")
    if L % v.kv_share_layers:
        raise ValueError(f"attention.kv_share_layers {v.kv_share_layers} does not divide num_layers {L}")
    k = v.kv_share_layers
    mixed = next((i for i in range(0, L, k) if len(set(pattern[i:i + k])) > 1), None)
    if mixed is not None:
        raise ValueError(f"attention.kv_share_layers {k}: layers {mixed}-{mixed + k - 1} are of different kinds "
                         f"({pattern[mixed:mixed + k]}) and cannot share one K/V")
    if v.topk_tokens is not None and (v.kv_budget is not None or v.kv_budget_tokens is not None):
        raise ValueError("attention: top-k selection (topk_tokens) and a kept budget (kv_budget) exclude each other")


def layer_kinds(model: Any) -> str:
    """One letter per layer (F, W, S)."""
    v = model.attention
    if v is not None and v.layer_pattern is not None:
        return v.layer_pattern
    local = set(model.sliding_window_layers) if model.sliding_window_tokens else set()
    return "".join(WINDOW if i in local else FULL for i in range(model.num_layers))


def window_of(model: Any) -> int | None:
    v = model.attention
    if v is not None and v.window_tokens is not None:
        return v.window_tokens
    return model.sliding_window_tokens


def active(model: Any) -> bool:
    """Whether lowering must split attention into variant groups (else the dense path runs)."""
    return model.attention is not None or model.linear is not None


@dataclass(frozen=True)
class Group:
    """Layers x KV heads that read the same keys. ``cap``: tokens kept at most (None: all);
    ``frac``: share of the context kept after the prompt (None: all); ``prefill_full``: prefill
    reads the whole prompt even though the cache keeps less (budgets); ``topk``: keys read per
    decode step of a cache that keeps everything; ``density``: share of the prefill pairs computed."""

    name: str
    layers: int
    kv_share: float  # share of the layer's KV heads
    cap: int | None = None
    frac: float | None = None
    prefill_full: bool = False
    topk: int | None = None
    density: float = 1.0

    def kept(self, ctx: float) -> float:
        """K/V tokens this group keeps for one sequence of ``ctx`` tokens."""
        if self.frac is not None and self.cap is None:
            return math.ceil(self.frac * ctx)
        return ctx if self.cap is None else min(ctx, self.cap)

    def read_decode(self, ctx: float) -> float:
        return min(ctx, self.topk) if self.topk is not None else self.kept(ctx)

    @property
    def bounded(self) -> bool:
        return self.cap is not None


def groups(model: Any) -> list[Group]:
    """The attention groups of ``model`` (state-space layers excluded)."""
    v = model.attention
    kinds = layer_kinds(model)
    out: list[Group] = []
    n_win = kinds.count(WINDOW)
    if n_win:
        out.append(Group("window", n_win, 1.0, cap=window_of(model) + (v.sink_tokens if v else 0)))
    n_full = kinds.count(FULL)
    if not n_full:
        return out
    stream = v.streaming_heads if v is not None else 0.0
    kv_heads = model.num_kv_heads
    s_heads = int(round(stream * kv_heads))
    if s_heads:
        out.append(Group("stream", n_full, s_heads / kv_heads, cap=v.head_window_tokens + v.head_sink_tokens))
    share = 1.0 - s_heads / kv_heads
    if v is None or (v.kv_budget is None and v.kv_budget_tokens is None):
        topk = v.topk_tokens if v is not None else None
        dens = v.prefill_density if v is not None else None
        if isinstance(dens, list):  # equal groups of heads, one density each
            for i, d in enumerate(dens):
                out.append(Group(f"full_d{i}", n_full, share / len(dens), topk=topk, density=float(d)))
        else:
            out.append(Group("full", n_full, share, topk=topk, density=float(dens or 1.0)))
        return out
    vals = v.kv_budget if v.kv_budget is not None else v.kv_budget_tokens
    per_layer = vals if isinstance(vals, list) else [vals] * n_full
    counts: dict[Any, int] = {}
    for b in per_layer:
        counts[b] = counts.get(b, 0) + 1
    for b, n in sorted(counts.items(), key=lambda kv: -float(kv[0])):
        if v.kv_budget is not None:
            out.append(Group(f"kv{float(b):g}", n, share, frac=float(b), prefill_full=True))
        else:
            out.append(Group(f"kv{int(b)}", n, share, cap=int(b), prefill_full=True))
    return out


def group_kv_heads(model: Any, tp: int = 1) -> list[int]:
    """Whole KV heads of each group (``groups(model)`` order) on the busiest of ``tp`` GPUs.

    Each GPU holds ``k = max(1, num_kv_heads // tp)`` KV heads of every layer. On the full-attention
    layers the heads that keep the whole context (retrieval heads, budgets, density groups) take
    ``ceil((1 - streaming share) x k)`` of them -- the GPU the step waits for, when the streaming
    heads spread evenly -- and the streaming heads the rest; density groups split their heads as
    evenly as whole heads allow, the denser groups taking the remainder. With one KV head per GPU
    that head is a full one: the step and the memory plan are those of full attention."""
    k = max(1, model.num_kv_heads // tp)
    gs = groups(model)
    stream = next((g.kv_share for g in gs if g.name == "stream"), 0.0)
    rest = min(k, math.ceil((1.0 - stream) * k - 1e-9))
    dens = sorted((g for g in gs if g.name.startswith("full_d")), key=lambda g: -g.density)
    extra = {g.name: 1 for g in dens[:rest % len(dens)]} if dens else {}
    out = []
    for g in gs:
        if g.name == "window":
            out.append(k)
        elif g.name == "stream":
            out.append(k - rest)
        elif g.name.startswith("full_d"):
            out.append(rest // len(dens) + extra.get(g.name, 0))
        else:
            out.append(rest)
    return out


def kv_elems(model: Any, tp: int = 1) -> tuple[float, float]:
    """(K/V elements per token that grow with the context, bounded K/V elements per sequence) on
    one GPU of ``tp`` (the busiest, ``group_kv_heads``): full layers' heads per token (a budget
    fraction scales them), capped groups at their cap; layers sharing K/V count once."""
    share = model.attention.kv_share_layers if model.attention is not None else 1
    grow = bounded = 0.0
    for g, kvh in zip(groups(model), group_kv_heads(model, tp)):
        elems = 2 * kvh * model.head_dim * g.layers / share
        if g.cap is not None:
            bounded += elems * g.cap
        else:
            grow += elems * (g.frac if g.frac is not None else 1.0)
    return grow, bounded


def kv_bytes_per_sequence(model: Any, ctx: int, elem_bytes: float | None = None, tp: int = 1) -> float:
    """K/V bytes one sequence of ``ctx`` tokens holds on one GPU of ``tp`` (the busiest; every group
    at what it keeps)."""
    b = model.dtype_bytes if elem_bytes is None else elem_bytes
    share = model.attention.kv_share_layers if model.attention is not None else 1
    return sum(2 * kvh * model.head_dim * b * g.layers / share * g.kept(ctx)
               for g, kvh in zip(groups(model), group_kv_heads(model, tp)))


# -- causal pairs and keys of a prefill chunk --------------------------------------------------------

def _tri(n: int) -> int:
    return n * (n + 1) // 2


def window_pairs(t: int, ctx: int, cap: int | None) -> tuple[int, int]:
    """((query, key) pairs, keys read) of a chunk of ``t`` queries after ``ctx`` cached tokens when
    each query reads at most ``cap`` keys (None: all earlier ones and itself)."""
    if t <= 0:
        return 0, 0
    if cap is None:
        return t * ctx + _tri(t), t + ctx
    # query at position p (0-based) reads min(p + 1, cap) keys; p runs over ctx .. ctx + t - 1
    lo, hi = ctx + 1, ctx + t  # p + 1 runs over lo..hi
    below = max(0, min(hi, cap) - lo + 1)  # values <= cap
    pairs = (_tri(min(hi, cap)) - _tri(lo - 1)) if below else 0
    pairs += (t - below) * cap
    keys = min(ctx + t, t + cap - 1)
    return pairs, keys
