"""A mergeable quantile sketch: a fixed log-bucket histogram with a stated relative error.

A positive value ``x`` falls in bucket ``i = ceil(log_gamma(x))``, the interval
``(gamma**(i-1), gamma**i]``, with ``gamma = (1 + a) / (1 - a)``. The bucket is represented by
``2 gamma**i / (gamma + 1)``, which is within a relative ``a`` of every value in the bucket
(the DDSketch construction: Masson, Rim and Lee, "DDSketch: a fast and fully-mergeable quantile
sketch with relative-error guarantees", VLDB 2019). Zero (and values below ``MIN_POSITIVE``) have
a bucket of their own, represented by 0.

Quantiles follow numpy's default (``np.percentile``, method "linear"): the value at fractional
rank ``q (n - 1)`` is interpolated between the two neighbouring order statistics. The sketch
interpolates in the same way between the representatives of those two ranks, so for
non-negative data each percentile is within ``RELATIVE_ERROR`` (0.5 %) of the exact one: both
neighbours are, and a convex combination of two values each within a relative ``a`` of its
target is within ``a`` of the combined target. ``count``, ``sum`` (so the mean) and ``max`` are
kept exactly. Memory: one counter per occupied bucket (about 460 buckets per decade of range at
0.5 %), independent of the number of values. Two sketches with the same error merge exactly by
adding their counters.
"""

from __future__ import annotations

import math

import numpy as np

RELATIVE_ERROR = 0.005  # stated bound on p50/p90/p99 (and any percentile) against np.percentile
MIN_POSITIVE = 1e-15  # smaller values (seconds: below a femtosecond) count as zero


class LogHistogram:
    """Counts of non-negative values in log-spaced buckets; see the module docstring."""

    __slots__ = ("alpha", "gamma", "_log_gamma", "offset", "counts", "zeros", "count", "total", "max")

    def __init__(self, relative_error: float = RELATIVE_ERROR) -> None:
        if not 0 < relative_error < 1:
            raise ValueError(f"relative_error must be in (0, 1), got {relative_error}")
        self.alpha = relative_error
        # buckets 2 % narrower than the stated bound: a value on a bucket edge that log() rounds
        # into the next bucket still lies within the bound of that bucket's representative
        a = relative_error * 0.98
        self.gamma = (1 + a) / (1 - a)
        self._log_gamma = math.log(self.gamma)
        self.offset = 0  # bucket index of counts[0]
        self.counts = np.zeros(0, dtype=np.int64)
        self.zeros = 0
        self.count = 0
        self.total = 0.0
        self.max = float("-inf")

    # -- adding values -------------------------------------------------------------------
    def add(self, values, weights=None) -> None:
        """Add an array of values, each ``weights`` times (non-negative integers; default once).
        NaN and inf are ignored; negative values are an error."""
        x = np.asarray(values, dtype=np.float64).ravel()
        w = None if weights is None else np.asarray(weights, dtype=np.int64).ravel()
        keep = np.isfinite(x) if w is None else np.isfinite(x) & (w > 0)
        if not keep.all():
            x = x[keep]
            w = None if w is None else w[keep]
        if x.size == 0:
            return
        if (x < 0).any():
            raise ValueError(f"LogHistogram holds non-negative values; got {float(x.min())!r}")
        n = int(x.size) if w is None else int(w.sum())
        self.count += n
        self.total += float(x.sum()) if w is None else float(np.dot(x, w))
        self.max = max(self.max, float(x.max()))
        pos = x >= MIN_POSITIVE
        self.zeros += int((~pos).sum()) if w is None else int(w[~pos].sum())
        if not pos.any():
            return
        idx = np.ceil(np.log(x[pos]) / self._log_gamma).astype(np.int64)
        lo = int(idx.min())
        counts = np.bincount(idx - lo) if w is None else np.bincount(idx - lo, weights=w[pos]).round().astype(np.int64)
        self._add_counts(counts, lo)

    def _add_counts(self, counts: np.ndarray, lo: int) -> None:
        hi = lo + counts.size
        if self.counts.size == 0:
            self.offset, self.counts = lo, counts.astype(np.int64)
            return
        new_lo, new_hi = min(lo, self.offset), max(hi, self.offset + self.counts.size)
        if new_lo != self.offset or new_hi != self.offset + self.counts.size:
            grown = np.zeros(new_hi - new_lo, dtype=np.int64)
            grown[self.offset - new_lo:self.offset - new_lo + self.counts.size] = self.counts
            self.offset, self.counts = new_lo, grown
        self.counts[lo - self.offset:hi - self.offset] += counts

    def merge(self, other: LogHistogram) -> None:
        """Add ``other``'s values (it must have the same relative error)."""
        if other.gamma != self.gamma:
            raise ValueError("cannot merge sketches with different relative errors")
        self.count += other.count
        self.total += other.total
        self.max = max(self.max, other.max)
        self.zeros += other.zeros
        if other.counts.size:
            self._add_counts(other.counts, other.offset)

    # -- reading -------------------------------------------------------------------------
    def _value_at_ranks(self, ranks: np.ndarray) -> np.ndarray:
        """Representative value of the order statistics at integer ``ranks`` (0-based)."""
        cum = np.cumsum(self.counts)
        out = np.zeros(ranks.size)
        pos = ranks >= self.zeros
        b = np.searchsorted(cum, ranks[pos] - self.zeros, side="right")
        out[pos] = 2.0 * np.exp((b + self.offset) * self._log_gamma) / (self.gamma + 1.0)
        return np.minimum(out, self.max)  # never above the exact maximum

    def percentiles(self, qs) -> np.ndarray:
        """Percentiles (0..100) with numpy's linear interpolation between neighbouring ranks."""
        q = np.asarray(qs, dtype=np.float64)
        if self.count == 0:
            return np.full(q.shape, np.nan)
        r = q / 100.0 * (self.count - 1)
        lo = np.floor(r).astype(np.int64)
        hi = np.minimum(lo + 1, self.count - 1)
        frac = r - lo
        v_lo, v_hi = self._value_at_ranks(lo), self._value_at_ranks(hi)
        return v_lo + (v_hi - v_lo) * frac

    def mean(self) -> float:
        return self.total / self.count if self.count else float("nan")

    def stats(self, quantiles=(50, 90, 99)) -> dict[str, float]:
        """The same keys as :func:`simulator.metrics.stats`: count, mean, p50, p90, p99, max."""
        if self.count == 0:
            return {"count": 0, "mean": float("nan"), "p50": float("nan"), "p90": float("nan"),
                    "p99": float("nan"), "max": float("nan")}
        p = self.percentiles(quantiles)
        out = {"count": int(self.count), "mean": self.mean()}
        out.update({f"p{int(q)}": float(v) for q, v in zip(quantiles, p)})
        out["max"] = float(self.max)
        return out

    @property
    def nbytes(self) -> int:
        return int(self.counts.nbytes)
