"""Always speculate the method's ``num_speculative_tokens`` (or ``k`` if given) for every row."""

from __future__ import annotations

from pydantic import Field

from policies.speculation import SpeculationView, register_speculation_length
from simulator.config.quantities import StrictConfig


class FixedConfig(StrictConfig):
    k: int | None = Field(default=None, ge=0, description="tokens per row per step (default: the method's k)")


@register_speculation_length("fixed", config=FixedConfig)
class FixedLength:
    def __init__(self, config: FixedConfig) -> None:
        self.k = config.k

    def choose(self, view: SpeculationView) -> int:
        return view.k_max if self.k is None else min(self.k, view.k_max)
