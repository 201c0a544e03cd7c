"""Synthetic open-loop requests: an arrival process and two token-length distributions.

Arrivals: ``poisson`` (exponential gaps), ``gamma`` (gamma gaps with coefficient of variation
``cv``; ``cv: 1`` is Poisson, larger is burstier) or ``fixed`` (evenly spaced), all at mean rate
``rate``; the first request arrives at 0. Lengths: see :mod:`workloads.sources.lengths`.
Each quantity draws from its own random stream (``arrivals``, ``prompt_tokens``,
``output_tokens``), so changing one distribution never changes the others' samples.

:func:`fit_from_trace` turns a request table (e.g. a loaded trace) into a synthetic block that
mimics it: rate and gamma ``cv`` of the gaps by the method of moments, lognormal lengths by
maximum likelihood on the logs, ``min``/``max`` from the data.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import numpy as np
from pydantic import Field, model_validator

from simulator.config.quantities import PositivePerS, StrictConfig
from simulator.core.registry import register_workload
from simulator.core.rng import RngStreams
from workloads.sources.base import RequestTable
from workloads.sources.lengths import LengthDist, sample_lengths

# The default "conversation-like" workload (used by the quickstart): fitted with fit_from_trace on the
# first 10,000 rows of shared/traces/splitwise_conv.csv (Azure conversation trace, 2023). Gaps are
# slightly burstier than Poisson; prompts and outputs are lognormal with sigma ~ 1.
CONVERSATION_LIKE: dict[str, Any] = {
    "kind": "synthetic",
    "num_requests": 10000,
    "arrival": {"process": "gamma", "rate": "5.594/s", "cv": 1.073},
    "prompt_tokens": {"dist": "lognormal", "median": 821.9, "sigma": 0.9743, "min": 2, "max": 14050},
    "output_tokens": {"dist": "lognormal", "median": 152.4, "sigma": 0.9058, "min": 7, "max": 1000},
}


class ArrivalConfig(StrictConfig):
    process: Literal["poisson", "gamma", "fixed"] = "poisson"
    rate: PositivePerS = Field(description="mean arrival rate, e.g. '4/s'")
    cv: float = Field(default=1.0, gt=0, description="coefficient of variation of the gaps (gamma only)")

    @model_validator(mode="after")
    def _cv_for_gamma_only(self) -> ArrivalConfig:
        if self.process != "gamma" and self.cv != 1.0:
            raise ValueError(f"cv applies to process 'gamma' only (process is {self.process!r})")
        return self


class SyntheticConfig(StrictConfig):
    num_requests: int = Field(gt=0)
    arrival: ArrivalConfig
    prompt_tokens: LengthDist
    output_tokens: LengthDist


def sample_arrivals(arrival: ArrivalConfig, rng: np.random.Generator, n: int) -> np.ndarray:
    """``n`` non-decreasing arrival times (s), the first at 0."""
    mean_gap = 1.0 / arrival.rate
    if arrival.process == "poisson":
        gaps = rng.exponential(mean_gap, size=n - 1)
    elif arrival.process == "gamma":
        shape = 1.0 / arrival.cv**2
        gaps = rng.gamma(shape, mean_gap / shape, size=n - 1)
    else:
        gaps = np.full(n - 1, mean_gap)
    out = np.empty(n, dtype=np.float64)
    out[0] = 0.0
    np.cumsum(gaps, out=out[1:])
    return out


@register_workload("synthetic", config=SyntheticConfig)
class SyntheticSource:
    """Requests drawn from an arrival process and length distributions."""

    def __init__(self, config: SyntheticConfig, base_dir: Path = Path(".")) -> None:
        self.config = config
        self.base_dir = Path(base_dir)

    def generate(self, rngs: RngStreams) -> RequestTable:
        cfg = self.config
        n = cfg.num_requests
        return RequestTable(
            arrival_s=sample_arrivals(cfg.arrival, rngs.get("arrivals"), n),
            prompt_tokens=sample_lengths(cfg.prompt_tokens, rngs.get("prompt_tokens"), n, self.base_dir),
            output_tokens=sample_lengths(cfg.output_tokens, rngs.get("output_tokens"), n, self.base_dir),
            meta={"source": "synthetic", "rows": n},
        )


# --------------------------------------------------------------------------------------------
# fitting


def _sig(x: float, digits: int = 4) -> str:
    """``x`` to ``digits`` significant digits, positional notation (no exponent)."""
    return np.format_float_positional(float(x), precision=digits, unique=False, fractional=False, trim="-")


def _lognormal_fit(values: np.ndarray) -> dict[str, Any]:
    logs = np.log(values.astype(np.float64))
    return {
        "dist": "lognormal",
        "median": float(_sig(np.exp(logs.mean()))),
        "sigma": float(_sig(logs.std())),
        "min": int(values.min()),
        "max": int(values.max()),
    }


def fit_from_trace(table: RequestTable) -> dict[str, Any]:
    """A ``synthetic`` workload block (plain, YAML-ready) fitted to ``table``'s arrivals and lengths."""
    if table.closed_loop:
        raise ValueError("cannot fit arrivals of a closed-loop table")
    n = len(table)
    if n < 3:
        raise ValueError(f"need at least 3 requests to fit a workload, got {n}")
    gaps = np.diff(np.asarray(table.arrival_s, dtype=np.float64))
    mean = float(gaps.mean())
    if mean <= 0:
        raise ValueError("all requests arrive at the same time: no rate to fit")
    cv = float(gaps.std(ddof=1)) / mean
    arrival: dict[str, Any] = {"process": "gamma", "rate": f"{_sig(1.0 / mean)}/s", "cv": float(_sig(cv))}
    if float(_sig(cv)) == 0.0:
        arrival = {"process": "fixed", "rate": arrival["rate"]}
    return {
        "kind": "synthetic",
        "num_requests": int(n),
        "arrival": arrival,
        "prompt_tokens": _lognormal_fit(np.asarray(table.prompt_tokens)),
        "output_tokens": _lognormal_fit(np.asarray(table.output_tokens)),
    }
