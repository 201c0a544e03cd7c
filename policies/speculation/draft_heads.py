"""Draft heads on the target (Medusa / EAGLE style) with a tree of candidates verified at once.

Models: ``style: medusa``: k extra heads (a residual block and an LM head each) run on the target's
    last hidden state in the same pass, so proposing costs k extra LM-head rows per speculating row
    and no extra iteration. ``style: eagle``: a one-layer draft decoder run k times (one target
    layer's cost plus an LM head per draft token). Candidates form a tree: ``top_k`` candidates per
    position, so position i is accepted if any of its candidates is: 1 - (1 - rate_i)^top_k (the
    candidates treated as independent draws), and the target verifies every tree node
    (``tree_tokens`` + 1 query tokens per row, tree attention: each node attends to the context and
    its ancestors), which is the verification cost.
Ignores: the tree shape beyond its node count (Medusa's tuned sparse trees put more nodes on likely
    branches, so the independence assumption understates their acceptance).
Sources: Cai et al., "Medusa" (ICML 2024): 4-5 heads, a 64-node tree; Li et al., "EAGLE" (ICML 2024).
"""

from __future__ import annotations

from typing import Literal

import numpy as np
from pydantic import Field, model_validator

from policies.speculation import SpeculationConfig, SpeculationMethod, register_speculation


class DraftHeadsConfig(SpeculationConfig):
    style: Literal["medusa", "eagle"] = "medusa"
    top_k: int = Field(default=1, ge=1, le=64, description="candidates per position in the tree")
    tree_tokens: int | None = Field(default=None, ge=1, le=1024,
                                    description="nodes of the candidate tree verified per row (default: "
                                                "top_k x k, a full fan at each position)")

    @model_validator(mode="after")
    def _tree(self) -> DraftHeadsConfig:
        if self.tree_tokens is not None and self.tree_tokens < self.num_speculative_tokens:
            raise ValueError(f"tree_tokens={self.tree_tokens} is fewer than num_speculative_tokens="
                             f"{self.num_speculative_tokens} (a tree holds at least one path of k nodes)")
        return self


@register_speculation("draft_heads", config=DraftHeadsConfig)
class DraftHeadsSpeculation(SpeculationMethod):
    proposer = "heads"

    def position_rates(self, k: int, alpha: float | None = None) -> np.ndarray:
        base = self.config.acceptance.rate_array(k, alpha)
        return 1.0 - (1.0 - base) ** self.config.top_k

    def verify_tokens(self, k: int) -> int:
        if k <= 0:
            return 1
        c = self.config
        tree = c.tree_tokens if c.tree_tokens is not None else c.top_k * c.num_speculative_tokens
        return 1 + max(k, tree * k // max(1, c.num_speculative_tokens))  # a shorter k uses the tree's first levels
