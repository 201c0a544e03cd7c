"""Each step's dynamic energy attributed to the requests in it (the mechanism; read by the summary).

The rule: the joules a step (or a stretch of identical decode steps) charges, on all the replica's
devices (the per-device figure x ``Replica.devices``), are shared among the requests it computed in
proportion to the tokens each had processed: a prefill chunk's tokens, one per decode row, a
speculative row's verified tokens. Padding rows process no request's token, so their joules go to
the real rows with the rest. Idle power and bytes copied outside device memory are not attributed
(no step carries them): summed over every request, the attributed joules are the run's dynamic
energy, and with idle and transfer energy they make the total.
"""

from __future__ import annotations

import numpy as np


def attribute_step(joules: float, chunks, dec, spec_rows=()) -> None:
    """Share ``joules`` of one step: ``chunks`` [(request, prefill tokens)], ``dec`` [request]
    (one token each), ``spec_rows`` [(request, k, verified tokens, context)]."""
    if not joules:
        return
    tokens = sum(t for _, t in chunks) + len(dec) + sum(v for _, _, v, _ in spec_rows)
    if tokens <= 0:
        return
    per = joules / tokens
    for r, t in chunks:
        r.energy_j += per * t
    for r in dec:
        r.energy_j += per
    for r, _, v, _ in spec_rows:
        r.energy_j += per * v


def attribute_stretch(joules_per_step, steps: int, devices: int, running) -> None:
    """Share the first ``steps`` entries of a decode stretch's per-step joules per device (an
    array; a scalar means no energy model) equally among ``running``, one token each per step."""
    if not np.ndim(joules_per_step) or not running:
        return
    share = float(np.sum(joules_per_step[:steps])) * devices / len(running)
    for r in running:
        r.energy_j += share
