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


def stretch_share(stretch_j: float, devices: int, rows: int) -> float:
    """Each row's joules of a decode stretch: ``stretch_j``, the summed per-device joules of the
    steps it ran (0.0: no energy model), on all ``devices``, shared equally by its ``rows``
    requests (one token each per step)."""
    return stretch_j * devices / rows if rows else 0.0


def attribute_stretch(stretch_j: float, devices: int, running) -> None:
    """Share a decode stretch's summed per-device joules ``stretch_j`` (the figure its batch record
    carries) equally among ``running``; ``serving/decode_stretch.py`` adds the same share inline."""
    share = stretch_share(stretch_j, devices, len(running))
    if share:
        for r in running:
            r.energy_j += share
