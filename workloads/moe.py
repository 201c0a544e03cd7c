"""Mixture-of-experts routing: how many tokens each expert of a layer receives, and which GPU holds it.

Models: a MoE layer routes each of T tokens to its top-k experts, R = T x k (token, expert) pairs.
    Expert popularity is an input: ``uniform`` (every expert equally likely), ``zipf`` (the expert of
    popularity rank r drawn with weight (r + 1)^-exponent) or ``histogram`` (a weight per expert,
    e.g. counted from a router trace). An iteration's load per expert is the expected share of the
    R pairs, rounded to whole tokens by largest remainder (so the loads sum to R exactly), no expert
    above T (a token's k experts are distinct; the excess is shared by the others). With a
    capacity factor c (GShard / Switch Transformer), an expert takes at most ceil(c x R / E)
    tokens and drops the rest; without one (the dropless kernels vLLM, SGLang and TensorRT-LLM
    run), no token is dropped. Expert parallelism over ``ep`` GPUs holds E / ep experts per GPU;
    ``placement`` says which: ``interleaved`` (the popularity ranks dealt round-robin over the GPUs,
    as a load balancer such as DeepSeek's EPLB would place them) or ``contiguous`` (experts
    0..E/ep-1 on the first GPU, in popularity order: the worst case). The busiest GPU's experts set
    the grouped-GEMM time of the layer (the others wait for it at the combine).
    ``draw: random`` puts an iteration's pairs on the expected number of distinct experts its tokens touch
    when each draws its top-k at random by popularity, sum_e 1 - (1 - k p_e)^T (balls into bins; a uniform
    top-4 of 128 over 32 tokens touches 82 experts, not 128), the most popular ones, in proportion.
Ignores: the randomness of one iteration's routing around its expectation beyond that count (the busiest
    expert's excess over its mean); per-layer differences in
    popularity (one distribution for every layer unless a histogram per layer is given); token
    re-routing of dropped tokens to a second choice; routing correlation between tokens of one
    sequence.
Sources: Shazeer et al., "Outrageously Large Neural Networks" (ICLR 2017) top-k gating; Lepikhin et
    al., "GShard" (ICLR 2021) and Fedus et al., "Switch Transformers" (JMLR 2022) expert capacity;
    DeepSeek-V3 technical report (2024) expert-parallel load balancing (EPLB).
"""

from __future__ import annotations

import functools
from typing import Literal

import numpy as np
from pydantic import Field, model_validator

from simulator.config.quantities import StrictConfig


class RoutingConfig(StrictConfig):
    """Expert popularity and capacity of a MoE model's router."""

    dist: Literal["uniform", "zipf", "power_law", "histogram"] = Field(
        default="uniform", description="expert popularity: uniform, zipf (weight (rank+1)^-exponent), power_law "
                                       "(loads drawn from a bounded Pareto law) or histogram")
    exponent: float = Field(default=1.0, ge=0, description="zipf exponent (0: uniform) or power_law exponent (> 1)")
    weights: tuple[float, ...] = Field(default=(),
                                 description="histogram: one non-negative weight per expert (any scale)")
    capacity_factor: float | None = Field(
        default=None, gt=0, description="tokens an expert takes at most, as a multiple of the even share R/E "
                                        "(None: dropless, as vLLM / SGLang / TensorRT-LLM run MoE)")
    placement: Literal["interleaved", "contiguous"] = Field(
        default="interleaved", description="experts over the expert-parallel GPUs: popularity ranks dealt "
                                           "round-robin (balanced) or in blocks (hot experts together)")
    draw: Literal["expected", "random"] = Field(
        default="expected", description="an iteration's loads: expected (every expert its expected share of the "
                                        "pairs, so a small batch touches min(E, T x k) experts, as a balanced "
                                        "benchmark deals them) or random (each token draws its top-k at random by "
                                        "popularity: the pairs fall on the expected number of distinct experts, "
                                        "sum over e of 1 - (1 - s_e)^T, fewer than T x k when they collide)")

    @model_validator(mode="after")
    def _check(self) -> RoutingConfig:
        if self.dist == "histogram":
            if not self.weights:
                raise ValueError("dist 'histogram' needs 'weights' (one per expert)")
            if any(w < 0 for w in self.weights) or not sum(self.weights) > 0:
                raise ValueError("histogram weights must be >= 0 with a positive sum")
        elif self.dist == "power_law" and self.exponent <= 1.0:
            raise ValueError(f"power_law needs an exponent > 1 (got {self.exponent})")
        elif self.weights:
            raise ValueError(f"'weights' is only read with dist 'histogram' (dist is {self.dist!r})")
        return self


UNIFORM = RoutingConfig()


def popularity(routing: RoutingConfig, experts: int, tokens: int = 0, top_k: int = 1) -> np.ndarray:
    """Probability of each expert, most popular first (histogram: in the given order). ``power_law``
    depends on the batch (``tokens`` x ``top_k`` pairs): the experts' loads are the E quantiles
    (i + 0.5) / E of a Pareto law of that exponent bounded to [1, 0.8 x tokens] when there are more
    pairs than experts, else to [0.01, 2] -- the law the aiconfigurator MoE kernel benchmark draws
    its per-expert loads from (its `power_law_<exponent>` tables), taken at its expected order
    statistics instead of one random draw."""
    if routing.dist == "histogram":
        w = np.asarray(routing.weights, dtype=np.float64)
        if len(w) != experts:
            raise ValueError(f"routing histogram has {len(w)} weights for {experts} experts")
    elif routing.dist == "zipf":
        w = (np.arange(experts) + 1.0) ** -routing.exponent
    elif routing.dist == "power_law":
        lo, hi = (1.0, max(1.0, 0.8 * tokens)) if tokens * top_k > experts else (0.01, 2.0)
        a = 1.0 - routing.exponent
        u = 1.0 - (np.arange(experts) + 0.5) / experts  # most popular first
        w = ((hi ** a - lo ** a) * u + lo ** a) ** (1.0 / a)
    else:
        w = np.ones(experts)
    return w / w.sum()


def _round(shares: np.ndarray, total: int) -> np.ndarray:
    """Whole numbers proportional to ``shares`` that sum to ``total`` (largest remainder)."""
    raw = shares * total
    out = np.floor(raw).astype(np.int64)
    short = total - int(out.sum())
    if short > 0:
        order = np.argsort(-(raw - out), kind="stable")
        out[order[:short]] += 1
    return out


def _distinct(p: np.ndarray, top_k: int) -> np.ndarray:
    """Shares capped at 1 / top_k: a token picks ``top_k`` distinct experts, so no expert receives
    more than every token; the excess goes to the others in proportion (water-filling)."""
    p = p.astype(np.float64).copy()
    cap = 1.0 / top_k
    for _ in range(len(p)):
        over = p > cap * (1 + 1e-12)
        if not over.any():
            break
        excess = float((p[over] - cap).sum())
        p[over] = cap
        free = ~over & (p < cap)
        if not free.any():
            break
        p[free] += excess * p[free] / p[free].sum()
    return p


@functools.lru_cache(maxsize=4096)
def _loads(tokens: int, experts: int, top_k: int, routing: RoutingConfig) -> tuple[np.ndarray, int]:
    routed = tokens * top_k
    p = _distinct(popularity(routing, experts, tokens, top_k), top_k)
    if routing.draw == "random" and routed:  # the pairs on the expected number of distinct experts (most popular)
        touched = int(round(float((1.0 - (1.0 - np.minimum(1.0, top_k * p)) ** tokens).sum())))
        touched = max(touched, -(-routed // tokens) if tokens else 0, min(top_k, experts))
        q = np.zeros_like(p)
        q[:touched] = p[:touched]  # popularity order, most popular first
        p = _distinct(q / q.sum(), top_k)
    load = _round(p, routed)
    dropped = 0
    if routing.capacity_factor is not None:
        cap = int(np.ceil(routing.capacity_factor * routed / experts))
        dropped = int(np.maximum(load - cap, 0).sum())
        load = np.minimum(load, cap)
    load.setflags(write=False)
    return load, dropped


def expert_loads(tokens: int, experts: int, top_k: int, routing: RoutingConfig = UNIFORM) -> tuple[np.ndarray, int]:
    """(tokens each expert receives in popularity order, tokens dropped by the capacity limit) when
    ``tokens`` tokens each pick ``top_k`` of ``experts`` experts."""
    if top_k > experts:
        raise ValueError(f"top-k {top_k} exceeds the {experts} experts")
    return _loads(int(tokens), int(experts), int(top_k), routing)


def rank_loads(tokens: int, experts: int, top_k: int, ep: int, routing: RoutingConfig = UNIFORM
               ) -> list[tuple[int, ...]]:
    """Per expert-parallel GPU, the token counts of the experts it holds (experts with no token
    included as 0). ``ep`` must divide ``experts``."""
    if experts % ep:
        raise ValueError(f"expert parallelism {ep} does not divide the {experts} experts")
    load, _ = expert_loads(tokens, experts, top_k, routing)
    if routing.placement == "contiguous":
        per = experts // ep
        return [tuple(int(x) for x in load[r * per:(r + 1) * per]) for r in range(ep)]
    return [tuple(int(x) for x in load[r::ep]) for r in range(ep)]


@functools.lru_cache(maxsize=65536)
def busiest_rank(tokens: int, experts: int, top_k: int, ep: int, routing: RoutingConfig = UNIFORM
                 ) -> tuple[int, ...]:
    """The token counts of the experts on the GPU with the most routed tokens (ties: the one with
    the largest single expert), experts with no token left out, largest first."""
    if experts % ep:
        raise ValueError(f"expert parallelism {ep} does not divide the {experts} experts")
    load, _ = expert_loads(tokens, experts, top_k, routing)
    per = experts // ep
    # rank r's experts: a row of the contiguous layout, a column of the interleaved one
    grid = load.reshape(ep, per) if routing.placement == "contiguous" else load.reshape(per, ep).T
    key = grid.sum(axis=1) * (int(grid.max()) + 1) + grid.max(axis=1)
    mine = grid[int(np.argmax(key))]
    mine = np.sort(mine[mine > 0])[::-1]
    return tuple(int(x) for x in mine)


def dispatch_copies(top_k: int, ep: int, moe_tp: int = 1) -> float:
    """GPUs one token is sent to by an expert-parallel dispatch: the expected number of distinct EP
    ranks among its top-k experts under uniform routing, ep x (1 - (1 - 1/ep)^k) (the dispatch sends
    a token once per destination rank, as DeepEP does), times the moe_tp GPUs holding each expert's
    slices."""
    return moe_tp * ep * (1.0 - (1.0 - 1.0 / ep) ** top_k)


# the routed experts of the models whose one shared expert SGLang fuses into the MoE kernel (DeepSeek-V3 / R1)
FUSED_SHARED_ROUTED = 256


def fuse_shared_expert(ops: list) -> list:
    """SGLang's shared-expert fusion: the shared expert runs as one more expert of the fused MoE kernel,
    every token routed to it (top-k + 1), instead of a dense MLP of its own (sglang==0.5.6.post2 / 0.5.9
    srt/models/deepseek_v2.py ``determine_num_fused_shared_experts``: DeepSeek-V3 / R1, 256 routed experts
    and one shared expert, compute capability >= 8.0, no expert parallelism, no DeepEP, not w4afp8;
    ``disable_shared_experts_fusion`` off by default in server_args.py, set there only with the FlashInfer
    TRT-LLM MoE runner (0.5.9 picks it for DeepSeek by default on sm100, not on Hopper) or all-to-all).
    Attention data parallelism does not turn it off in SGLang; the caller does not fuse under it, because
    its lowering runs the shared expert per DP rank, not among the gathered tokens as SGLang does.
    ``ops``: one iteration's ops before quantization; returned unchanged unless they hold a grouped MoE
    over all 256 experts and a shared MLP of one expert's width on the same
    tokens (the caller checks the engine and the parallelism)."""
    from dataclasses import replace

    at = {op.name: op for op in ops}
    need = ("moe_up", "moe_act", "moe_down", "moe_sum", "shared_up", "shared_act", "shared_down")
    if any(n not in at for n in need):
        return ops
    up, down, s_up = at["moe_up"], at["moe_down"], at["shared_up"]
    t = up.q_tokens
    if getattr(up, "experts", 0) != FUSED_SHARED_ROUTED or s_up.n != up.n or s_up.m != t or s_up.count != up.count:
        return ops

    def grouped(op):
        return replace(op, m=op.m + t, groups=op.groups + (t,), pairs=op.pairs + t, experts=op.experts + 1)

    merged = {"moe_up": grouped(up), "moe_down": grouped(down),
              "moe_act": replace(at["moe_act"], bytes=at["moe_act"].bytes + at["shared_act"].bytes),
              "moe_sum": replace(at["moe_sum"], bytes=at["moe_sum"].bytes + int(t * down.n * down.dtype_bytes))}
    return [merged.get(op.name, op) for op in ops if op.name not in ("shared_up", "shared_act", "shared_down")]


__all__ = ["dispatch_copies", "RoutingConfig", "UNIFORM", "popularity", "expert_loads", "rank_loads", "busiest_rank",
           "fuse_shared_expert"]
