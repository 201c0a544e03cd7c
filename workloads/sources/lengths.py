"""Token-length distributions shared by the synthetic and closed-loop sources.

Each model is a strict config tagged by ``dist``; :data:`LengthDist` is their discriminated union,
so a validation error names the field path (``workload.prompt_tokens.sigma``). Every model also
takes ``min`` (default 1) and ``max`` (default none) to clip the samples. :func:`sample_lengths`
draws ``n`` lengths (int64, >= 1) from one random stream, vectorised.

- ``fixed``: every request has ``value`` tokens.
- ``uniform``: integers in ``[low, high]``, both inclusive.
- ``lognormal``: ``round(exp(N(ln median, sigma**2)))``.
- ``zipf``: integers ``k`` in ``[low, high]`` with ``P(k) ~ k**-a`` (``a > 1``; ``high`` may be
  omitted). Exact on the first 65,536 values of the support, a continuous power law beyond.
- ``geometric``: support ``1, 2, ...`` with the given ``mean`` (``p = 1/mean``).
- ``empirical``: resample (with replacement) the prompt or output column of a trace file.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal

import numpy as np
from pydantic import Field, ValidationError, WrapValidator, model_validator
from pydantic_core import ValidationError as CoreValidationError

from simulator.config.quantities import StrictConfig

# Largest length ever produced (keeps float -> int64 conversions finite).
MAX_LENGTH = 2**40
# Size of the exactly tabulated head of a zipf support.
_ZIPF_TABLE = 65536


class _Clip(StrictConfig):
    dist: str
    min: int = Field(default=1, ge=1, description="smallest length (samples below are raised to it)")
    max: int | None = Field(default=None, ge=1, description="largest length (samples above are cut)")

    @model_validator(mode="after")
    def _check_clip(self) -> _Clip:
        if self.max is not None and self.max < self.min:
            raise ValueError(f"max ({self.max}) must be >= min ({self.min})")
        return self


class FixedLength(_Clip):
    dist: Literal["fixed"]
    value: int = Field(ge=1)


class UniformLength(_Clip):
    dist: Literal["uniform"]
    low: int = Field(ge=1)
    high: int = Field(ge=1)

    @model_validator(mode="after")
    def _check_range(self) -> UniformLength:
        if self.high < self.low:
            raise ValueError(f"high ({self.high}) must be >= low ({self.low})")
        return self


class LognormalLength(_Clip):
    dist: Literal["lognormal"]
    median: float = Field(gt=0, description="exp(mu)")
    sigma: float = Field(ge=0, description="standard deviation of ln(length)")


class ZipfLength(_Clip):
    dist: Literal["zipf"]
    a: float = Field(gt=1, description="exponent: P(k) ~ k**-a")
    low: int = Field(default=1, ge=1)
    high: int | None = Field(default=None, ge=1)

    @model_validator(mode="after")
    def _check_range(self) -> ZipfLength:
        if self.high is not None and self.high < self.low:
            raise ValueError(f"high ({self.high}) must be >= low ({self.low})")
        return self


class GeometricLength(_Clip):
    dist: Literal["geometric"]
    mean: float = Field(ge=1, description="mean length; the support starts at 1")


EMPIRICAL_COLUMNS = {
    "prompt_tokens": "prompt_tokens", "num_prefill_tokens": "prompt_tokens", "ContextTokens": "prompt_tokens",
    "output_tokens": "output_tokens", "num_decode_tokens": "output_tokens", "GeneratedTokens": "output_tokens",
}


class EmpiricalLength(_Clip):
    dist: Literal["empirical"]
    path: str = Field(description="trace file (relative to the scenario file, then the working directory)")
    column: Literal["prompt_tokens", "output_tokens", "num_prefill_tokens", "num_decode_tokens",
                    "ContextTokens", "GeneratedTokens"]
    format: Literal["auto", "splitwise", "azure"] = "auto"


def _name_fields_not_tags(value: Any, handler: Any) -> Any:
    """Drop the union tag pydantic puts in error locations, so paths read ``prompt_tokens.sigma``."""
    try:
        return handler(value)
    except ValidationError as exc:
        tag = value.get("dist") if isinstance(value, dict) else None
        errors = []
        for err in exc.errors(include_url=False):
            loc, kind = tuple(err["loc"]), err["type"]
            if tag is not None and loc and loc[0] == tag:
                loc = loc[1:]
            detail: dict[str, Any] = {"type": kind, "loc": loc, "input": err["input"]}
            if kind == "union_tag_invalid":
                detail["loc"] = loc + ("dist",)
            elif kind == "union_tag_not_found":
                detail = {"type": "missing", "loc": loc + ("dist",), "input": err["input"]}
            if "ctx" in err and detail["type"] != "missing":
                detail["ctx"] = err["ctx"]
            errors.append(detail)
        raise CoreValidationError.from_exception_data(exc.title, errors) from None


LengthDist = Annotated[
    FixedLength | UniformLength | LognormalLength | ZipfLength | GeometricLength | EmpiricalLength,
    Field(discriminator="dist"),
    WrapValidator(_name_fields_not_tags),
]


# --------------------------------------------------------------------------------------------
# sampling


def _to_lengths(x: np.ndarray) -> np.ndarray:
    x = np.rint(np.nan_to_num(np.asarray(x, dtype=np.float64), nan=1.0, posinf=MAX_LENGTH))
    return np.clip(x, 1, MAX_LENGTH).astype(np.int64)


def _zipf(spec: ZipfLength, rng: np.random.Generator, n: int) -> np.ndarray:
    a, low = spec.a, spec.low
    high = float("inf") if spec.high is None else float(spec.high)
    head_hi = int(min(high, low + _ZIPF_TABLE - 1))
    ks = np.arange(low, head_hi + 1, dtype=np.float64)
    w = ks ** -a
    head_mass = float(w.sum())
    # tail (k > head_hi) as a continuous power law on [head_hi + 0.5, high + 0.5)
    lo_edge, hi_edge = head_hi + 0.5, high + 0.5
    tail_mass = 0.0
    if high > head_hi:
        tail_mass = (lo_edge ** (1 - a) - (0.0 if hi_edge == float("inf") else hi_edge ** (1 - a))) / (a - 1)
    cdf = np.cumsum(w) / head_mass
    u = rng.random(n)
    out = (low + np.searchsorted(cdf, rng.random(n), side="right")).astype(np.float64)
    out = np.minimum(out, head_hi)
    if tail_mass > 0:
        in_tail = u < tail_mass / (head_mass + tail_mass)
        m = int(in_tail.sum())
        if m:
            v = rng.random(m)
            top = 0.0 if hi_edge == float("inf") else hi_edge ** (1 - a)
            with np.errstate(divide="ignore", over="ignore"):
                x = (lo_edge ** (1 - a) - v * (lo_edge ** (1 - a) - top)) ** (1 / (1 - a))
            out[in_tail] = np.clip(np.rint(x), head_hi + 1, min(high, MAX_LENGTH))
    return out


def _empirical_column(spec: EmpiricalLength, base_dir: Path) -> np.ndarray:
    from workloads.sources.trace import load_trace_file, resolve_trace_path

    data = load_trace_file(resolve_trace_path(spec.path, base_dir), spec.format)
    return data.prompt_tokens if EMPIRICAL_COLUMNS[spec.column] == "prompt_tokens" else data.output_tokens


def sample_lengths(spec: Any, rng: np.random.Generator, n: int, base_dir: Path = Path(".")) -> np.ndarray:
    """``n`` lengths (int64, in ``[max(1, spec.min), spec.max]``) drawn from ``rng``."""
    if isinstance(spec, FixedLength):
        raw = np.full(n, spec.value, dtype=np.float64)
    elif isinstance(spec, UniformLength):
        raw = rng.integers(spec.low, spec.high, size=n, endpoint=True).astype(np.float64)
    elif isinstance(spec, LognormalLength):
        raw = rng.lognormal(np.log(spec.median), spec.sigma, size=n)
    elif isinstance(spec, ZipfLength):
        raw = _zipf(spec, rng, n)
    elif isinstance(spec, GeometricLength):
        raw = rng.geometric(1.0 / spec.mean, size=n).astype(np.float64)
    elif isinstance(spec, EmpiricalLength):
        pool = _empirical_column(spec, Path(base_dir))
        raw = pool[rng.integers(0, pool.shape[0], size=n)].astype(np.float64)
    else:  # pragma: no cover - the union admits nothing else
        raise TypeError(f"unknown length distribution {spec!r}")
    out = _to_lengths(raw)
    lo = max(1, spec.min)
    hi = MAX_LENGTH if spec.max is None else spec.max
    return np.clip(out, lo, hi)
