"""Constant-time backend: every iteration takes the same time, whatever it computes.

Models: a device whose iteration time is ``iteration`` plus ``per_token`` for each token in the
    batch — the deterministic server of queueing theory (M/D/1 with batch size one).
Ignores: everything about the hardware; meant for checks against queueing formulas.
Sources: none needed (a definition).
"""

from __future__ import annotations

from typing import Any

import numpy as np
from pydantic import Field

from hw_models.timing.base import TimingBackend
from simulator.config.quantities import PositiveSeconds, Seconds, StrictConfig
from simulator.core.registry import register_timing


class ConstantConfig(StrictConfig):
    iteration: PositiveSeconds = Field(description="time of one iteration")
    per_token: Seconds = Field(default="0s", description="extra time per token in the batch")


@register_timing("constant", config=ConstantConfig)
class ConstantBackend(TimingBackend):
    """Every iteration takes the same time, whatever it computes (for queueing tests)."""
    name = "constant"
    constant_iteration = True

    def __init__(self, config: ConstantConfig, device: Any, link: Any = None) -> None:
        super().__init__(config, device, link)

    def _op_s(self, op: Any) -> float:
        if op.name == "qkv_proj":  # one op per iteration carries the whole cost
            return self.config.iteration + self.config.per_token * op.m
        return 0.0

    def decode_attention_s(self, op: Any, kv_tokens: np.ndarray) -> np.ndarray:
        return np.zeros(len(kv_tokens))
