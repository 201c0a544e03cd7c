"""Long-context population: requests with very long prompts (documents, code bases, books) and short
outputs, arriving as a Poisson process.

Models: prompt lengths uniform in ``[prompt_low, prompt_high]`` (default 32K-128K tokens), or
    log-uniform (``log_uniform: true``: equal mass per octave, more short-of-the-range documents);
    output lengths uniform in ``[output_low, output_high]`` (default 16-256 tokens); arrivals
    Poisson at ``rate`` (requests per second). Streams: ``arrivals``, ``prompt_tokens``,
    ``output_tokens``.
Ignores: shared prefixes between documents; sessions (see ``shared_prefix`` and ``multi_turn``).
Sources: long-context serving studies (e.g. LongBench inputs of 5K-100K+ tokens; Loong/LV-Eval
    128K suites) whose outputs are short answers or summaries.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from pydantic import Field, model_validator

from simulator.config.quantities import PositivePerS, StrictConfig
from simulator.core.registry import register_workload
from simulator.core.rng import RngStreams
from workloads.sources.base import RequestTable


class LongContextConfig(StrictConfig):
    num_requests: int = Field(gt=0)
    rate: PositivePerS = Field(description="Poisson arrival rate, requests per second (e.g. '0.5/s')")
    prompt_low: int = Field(default=32768, ge=1, description="shortest prompt, tokens")
    prompt_high: int = Field(default=131072, ge=1, description="longest prompt, tokens")
    log_uniform: bool = Field(default=False, description="draw prompt lengths log-uniformly in the range")
    output_low: int = Field(default=16, ge=1, description="shortest output, tokens")
    output_high: int = Field(default=256, ge=1, description="longest output, tokens")

    @model_validator(mode="after")
    def _check_ranges(self) -> LongContextConfig:
        if self.prompt_high < self.prompt_low:
            raise ValueError(f"prompt_high ({self.prompt_high}) must be >= prompt_low ({self.prompt_low})")
        if self.output_high < self.output_low:
            raise ValueError(f"output_high ({self.output_high}) must be >= output_low ({self.output_low})")
        return self


@register_workload("long_context", config=LongContextConfig)
class LongContextSource:
    """Requests with very long prompts (documents, code) and short outputs."""
    def __init__(self, config: LongContextConfig, base_dir: Path = Path(".")) -> None:
        self.config = config
        self.base_dir = Path(base_dir)

    def generate(self, rngs: RngStreams) -> RequestTable:
        c = self.config
        n = c.num_requests
        gaps = rngs.get("arrivals").exponential(1.0 / float(c.rate), size=n)
        rp = rngs.get("prompt_tokens")
        if c.log_uniform:
            lo, hi = np.log(c.prompt_low), np.log(c.prompt_high + 1)
            prompt = np.minimum(np.floor(np.exp(rp.uniform(lo, hi, size=n))), c.prompt_high).astype(np.int64)
        else:
            prompt = rp.integers(c.prompt_low, c.prompt_high + 1, size=n, dtype=np.int64)
        output = rngs.get("output_tokens").integers(c.output_low, c.output_high + 1, size=n, dtype=np.int64)
        return RequestTable(arrival_s=np.cumsum(gaps), prompt_tokens=np.maximum(prompt, c.prompt_low),
                            output_tokens=output, meta={"source": "long_context", "rows": n})
