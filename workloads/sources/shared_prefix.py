"""Shared-prefix population: many requests that start with one of a few long common prefixes
(system prompts, few-shot examples, a document asked several questions).

Each request picks prefix ``p`` from ``num_prefixes`` with probability ~ (p + 1)^-popularity
(0 = uniform; Zipf-like above), has that prefix's tokens followed by its own suffix, and carries
``prefix_id = p`` and ``prefix_tokens`` = the prefix length, which the ``prefix`` KV policy uses
to share cached blocks. Prefix lengths are drawn once per prefix. Streams: ``arrivals``,
``prefix_lengths``, ``prefix_choice``, ``suffix_tokens``, ``output_tokens``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from pydantic import Field

from simulator.config.quantities import StrictConfig
from simulator.core.registry import register_workload
from simulator.core.rng import RngStreams
from workloads.sources.base import RequestTable
from workloads.sources.lengths import LengthDist, sample_lengths
from workloads.sources.synthetic import ArrivalConfig, sample_arrivals


class SharedPrefixConfig(StrictConfig):
    num_requests: int = Field(gt=0)
    arrival: ArrivalConfig
    num_prefixes: int = Field(gt=0, description="size of the prefix population")
    popularity: float = Field(default=0.0, ge=0, description="prefix p chosen with weight (p+1)^-popularity")
    prefix_tokens: LengthDist = Field(description="length of each shared prefix")
    suffix_tokens: LengthDist = Field(description="request-specific tokens after the prefix")
    output_tokens: LengthDist


@register_workload("shared_prefix", config=SharedPrefixConfig)
class SharedPrefixSource:
    """Requests that start with one of a few long common prefixes (system prompts, documents)."""
    def __init__(self, config: SharedPrefixConfig, base_dir: Path = Path(".")) -> None:
        self.config = config
        self.base_dir = Path(base_dir)

    def generate(self, rngs: RngStreams) -> RequestTable:
        c = self.config
        n = c.num_requests
        plen = sample_lengths(c.prefix_tokens, rngs.get("prefix_lengths"), c.num_prefixes, self.base_dir)
        w = (np.arange(c.num_prefixes) + 1.0) ** -c.popularity
        pick = rngs.get("prefix_choice").choice(c.num_prefixes, size=n, p=w / w.sum()).astype(np.int64)
        suffix = sample_lengths(c.suffix_tokens, rngs.get("suffix_tokens"), n, self.base_dir)
        shared = plen[pick].astype(np.int64)
        return RequestTable(
            arrival_s=sample_arrivals(c.arrival, rngs.get("arrivals"), n),
            prompt_tokens=shared + suffix,
            output_tokens=sample_lengths(c.output_tokens, rngs.get("output_tokens"), n, self.base_dir),
            prefix_id=pick, prefix_tokens=shared,
            meta={"source": "shared_prefix", "rows": n, "prefixes": c.num_prefixes},
        )
