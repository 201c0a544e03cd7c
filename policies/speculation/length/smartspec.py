"""SmartSpec's goodput rule: each step, the speculation length that maximises the tokens the batch
is expected to emit per second of step time.

For each candidate k in 0..k_max: goodput(k) = sum over rows of E[tokens | k] / step_s(k), where
E[tokens | k] = 1 + sum_j prod_{i<=j} rate_i (the rows' acceptance) and step_s(k) is the replica's
predicted step time with every row verifying k + 1 tokens plus the draft cost. At low load a step
is memory-bound and extra verified tokens are nearly free, so k is large; at high load the step is
compute-bound, verification multiplies the work, and the rule falls back to k = 0.

Departure from the paper: SmartSpec estimates acceptance online from a moving average; here the
scenario's acceptance input is used as known (the estimate's error is not modelled).
Source: Liu et al., "Optimizing Speculative Decoding for Serving Large Language Models Using
Goodput" (SmartSpec, 2024), Section 4.
"""

from __future__ import annotations

from policies.speculation import SpeculationView, register_speculation_length
from simulator.config.quantities import EmptyConfig


@register_speculation_length("smartspec", config=EmptyConfig)
class SmartSpecLength:
    def __init__(self, config: EmptyConfig) -> None:
        self.last: list[float] = []  # goodput of each k at the last decision (for inspection)

    def choose(self, view: SpeculationView) -> int:
        best_k, best = 0, -1.0
        self.last = []
        for k in range(view.k_max + 1):
            tokens = sum(view.expected_tokens(r.rid, k) for r in view.rows)
            g = tokens / view.step_s(k)
            self.last.append(g)
            if g > best * (1 + 1e-9):
                best_k, best = k, g
        return best_k
