"""N-gram / prompt-lookup speculation: proposals copied from the prompt or earlier output.

Models: no draft model and no extra heads, so proposing costs no GPU time; the target verifies
    k + 1 tokens per row. Acceptance is an input (it depends on how much the output repeats the
    context: high for summarisation and code editing, low for open chat).
Ignores: the CPU time of the n-gram match (microseconds per row).
Sources: Saxena, "Prompt Lookup Decoding" (2023); vLLM's ``ngram`` speculator.
"""

from __future__ import annotations

from policies.speculation import SpeculationConfig, SpeculationMethod, register_speculation


@register_speculation("ngram", config=SpeculationConfig)
class NgramSpeculation(SpeculationMethod):
    proposer = "lookup"
