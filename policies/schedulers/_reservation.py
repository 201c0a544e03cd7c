"""KV reservation rules shared by the request-level and iteration-level (Orca) schedulers."""

from __future__ import annotations

from typing import Literal

from policies.api import RequestView

Reservation = Literal["max_len", "oracle", "pow2"]


def reserve_tokens(rule: str, req: RequestView, max_model_len: int) -> int:
    """Tokens of KV held for ``req`` from admission to finish.

    max_len: the engine's max_model_len (what Orca and FasterTransformer allocate);
    oracle: exactly prompt + output (an upper bound on what reservation can achieve);
    pow2: prompt + output rounded up to a power of two (the vLLM paper's Orca (Pow2)).
    """
    exact = req.prompt_tokens + req.max_new_tokens
    if rule == "oracle":
        return exact
    if rule == "pow2":
        return min(max_model_len, 1 << max(0, (exact - 1).bit_length()))
    return max(max_model_len, exact)
