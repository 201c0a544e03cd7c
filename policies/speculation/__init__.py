"""Speculative decoding: methods (how draft tokens are proposed, what that costs, how often they are
accepted) and length policies (how many tokens to speculate for each request at each step).

``policies.speculation: {kind: draft_model | draft_heads | ngram, num_speculative_tokens: k,
acceptance: {alpha: 0.7} | {rates: [0.8, 0.7, ...]}, length: {kind: fixed | smartspec}}``

A decode entry of a step with speculation verifies ``k + 1`` tokens (the last generated token and
``k`` proposals) in one forward pass of the target model; the proposals accepted, plus the target's
own next token, are emitted. Acceptance is an input: position ``i`` (1-based) of a proposal run is
accepted with probability ``rates[i-1]`` given that every earlier one was (``alpha`` for all
positions: geometric), so the expected tokens per step are ``1 + sum_j prod_{i<=j} rates[i-1]``,
``(1 - alpha^(k+1)) / (1 - alpha)`` for the geometric case (Leviathan et al., ICML 2023).

Methods are files of this package named after the kind; length policies are files of
``policies.speculation.length``; third-party ones plug in through the ``hwsim.speculation`` and
``hwsim.speculation_lengths`` entry-point groups or as ``module:Class``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
from pydantic import Field, model_validator

from simulator.config.quantities import StrictConfig
from simulator.core.contracts import RequestView
from simulator.core.registry import Registry

SPECULATION = Registry("speculation method", "hwsim.speculation", ("policies.speculation",))
SPEC_LENGTHS = Registry("speculation length policy", "hwsim.speculation_lengths", ("policies.speculation.length",))
register_speculation = SPECULATION.register
register_speculation_length = SPEC_LENGTHS.register

MAX_SPECULATIVE_TOKENS = 16


class AcceptanceConfig(StrictConfig):
    """Per-position acceptance of proposed tokens (an input measured for a draft/target pair on a
    dataset; e.g. SpecInfer, Medusa and SmartSpec report it)."""

    alpha: float | None = Field(default=None, ge=0, le=1, description="every position accepted with probability "
                                                                      "alpha (geometric acceptance)")
    rates: tuple[float, ...] | None = Field(default=None, description="position i accepted with rates[i-1] given "
                                                                       "all earlier ones were; the last rate "
                                                                       "repeats beyond the list")
    column: str | None = Field(default=None, description="per-request alpha from this column of the trace file "
                                                         "(workload kind trace; values in [0, 1])")

    @model_validator(mode="after")
    def _one(self) -> AcceptanceConfig:
        if sum(x is not None for x in (self.alpha, self.rates, self.column)) != 1:
            raise ValueError("give exactly one of alpha, rates or column")
        if self.rates is not None:
            if not self.rates:
                raise ValueError("rates must not be empty")
            bad = [x for x in self.rates if not 0 <= x <= 1]
            if bad:
                raise ValueError(f"acceptance rates must lie in [0, 1], got {bad[0]}")
        return self

    def rate_array(self, k: int, alpha: float | None = None) -> np.ndarray:
        """Conditional acceptance of positions 1..k (``alpha``: the request's own, from a trace column)."""
        if alpha is not None:
            return np.full(k, alpha)
        if self.alpha is not None:
            return np.full(k, self.alpha)
        if self.rates is None:
            raise ValueError("acceptance from a trace column needs the request's alpha")
        r = list(self.rates)
        return np.asarray((r + [r[-1]] * k)[:k], dtype=np.float64)


class SpeculationConfig(StrictConfig):
    num_speculative_tokens: int = Field(ge=0, le=MAX_SPECULATIVE_TOKENS,
                                        description="most tokens proposed per request per step (k)")
    acceptance: AcceptanceConfig
    length: dict[str, Any] = Field(default_factory=lambda: {"kind": "fixed"},
                                   description="{kind: fixed | smartspec | module:Class, ...}: tokens to "
                                               "speculate per request per step")


def expected_tokens(rates: np.ndarray) -> float:
    """Tokens emitted per verification of ``len(rates)`` proposals: 1 + sum_j prod_{i<=j} rates_i."""
    return float(1.0 + np.cumprod(rates).sum()) if len(rates) else 1.0


@dataclass(frozen=True, slots=True)
class SpeculationView:
    """What a length policy sees at one step of one replica.

    rows: the running requests the scheduler decodes this step (read-only views).
    k_max: the method's most proposals per row (``num_speculative_tokens``).
    rates(rid, k): the conditional acceptance of positions 1..k for that request (input).
    step_s(k): the predicted seconds of this step with every row speculating ``k`` (the replica's
        own timing backend: verification of k+1 tokens per row, plus the method's draft cost).
    free_blocks: KV blocks free after the scheduler's plan (speculated tokens need blocks).
    """

    now_ps: int
    replica: int
    rows: Sequence[RequestView]
    k_max: int
    rates: Any
    step_s: Any
    free_blocks: int
    block_size: int

    def expected_tokens(self, rid: int, k: int) -> float:
        return expected_tokens(self.rates(rid, k))


class SpeculationLength(Protocol):
    """Chooses the speculation length: an int for every row, or a mapping rid -> k (rows left out
    get 0). Each k must lie in 0..view.k_max."""

    def choose(self, view: SpeculationView) -> int | Mapping[int, int]: ...


class SpeculationMethod:
    """Base of the built-in methods: the config and the acceptance model. ``draft`` and the cost
    hooks are filled in by the serving layer (``simulator.serving.speculation``), which times the
    method's work with the replica's backend."""

    #: how draft tokens are made: "model" (a small model on the same replica), "heads" (extra decoding
    #: heads on the target), "lookup" (n-gram / prompt lookup, no GPU work)
    proposer = "lookup"

    def __init__(self, config: SpeculationConfig) -> None:
        self.config = config

    def position_rates(self, k: int, alpha: float | None = None) -> np.ndarray:
        """Conditional acceptance of positions 1..k of one step (a tree of candidates raises it);
        ``alpha``: the request's own acceptance (trace column), else the config's."""
        return self.config.acceptance.rate_array(k, alpha)

    def verify_tokens(self, k: int) -> int:
        """Tokens the target verifies per row for ``k`` proposals (k + 1; a candidate tree more)."""
        return k + 1 if k > 0 else 1


__all__ = ["SPECULATION", "SPEC_LENGTHS", "AcceptanceConfig", "SpeculationConfig", "SpeculationLength",
           "SpeculationMethod", "SpeculationView", "expected_tokens", "register_speculation",
           "register_speculation_length"]
