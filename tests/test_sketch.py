"""The log-bucket quantile sketch against exact percentiles (np.percentile)."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from simulator.metrics import stats
from simulator.sketch import MIN_POSITIVE, RELATIVE_ERROR, LogHistogram

DISTS = ("lognormal", "exponential", "uniform", "pareto", "constant", "bimodal")


def _draw(dist: str, n: int, scale: float, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    if dist == "lognormal":
        return scale * rng.lognormal(0.0, 1.5, n)
    if dist == "exponential":
        return scale * rng.exponential(1.0, n)
    if dist == "uniform":
        return scale * rng.uniform(0.0, 1.0, n)
    if dist == "pareto":
        return scale * (rng.pareto(1.2, n) + 1.0)
    if dist == "constant":
        return np.full(n, scale)
    return scale * np.where(rng.random(n) < 0.9, rng.normal(1.0, 0.01, n) ** 2, 100 * rng.random(n))


def _within(sketch_value: float, exact: float) -> bool:
    return abs(sketch_value - exact) <= RELATIVE_ERROR * abs(exact) + MIN_POSITIVE  # below it: zero


@settings(max_examples=120, deadline=None)
@given(dist=st.sampled_from(DISTS), n=st.integers(1, 3000), log_scale=st.floats(-9, 6),
       seed=st.integers(0, 2**31), chunks=st.integers(1, 4))
def test_percentiles_within_stated_error(dist, n, log_scale, seed, chunks):
    x = _draw(dist, n, 10.0**log_scale, seed)
    sketches = [LogHistogram() for _ in range(chunks)]
    for s, part in zip(sketches, np.array_split(x, chunks)):
        s.add(part)
    h = sketches[0]
    for s in sketches[1:]:  # merged sketches answer as one sketch of all the values
        h.merge(s)
    qs = [0, 1, 10, 25, 50, 75, 90, 99, 99.9, 100]
    exact = np.percentile(x, qs)
    got = h.percentiles(qs)
    for q, g, e in zip(qs, got, exact):
        assert _within(g, e), (q, g, e)
    assert h.count == n
    assert h.max == x.max()
    assert h.mean() == pytest.approx(x.mean(), rel=1e-9)


@settings(max_examples=60, deadline=None)
@given(values=st.lists(st.floats(0.0, 1e4, allow_nan=False, allow_infinity=False), min_size=1, max_size=300))
def test_arbitrary_values_with_zeros(values):
    x = np.asarray(values)
    h = LogHistogram()
    h.add(x)
    exact = stats(x)
    got = h.stats()
    for k in ("p50", "p90", "p99"):
        assert _within(got[k], exact[k]), (k, got[k], exact[k])
    assert got["count"] == exact["count"] and got["max"] == exact["max"]


def test_bucket_edges_and_memory():
    h = LogHistogram()
    edges = h.gamma ** np.arange(-300, 300, dtype=np.float64)  # values exactly on bucket boundaries
    h.add(edges)
    exact = np.percentile(edges, np.arange(0, 101))
    got = h.percentiles(np.arange(0, 101))
    assert np.all(np.abs(got - exact) <= RELATIVE_ERROR * exact)
    # a million values spanning 1 us .. 100 s occupy a fixed number of buckets (about 460 per decade)
    big = LogHistogram()
    big.add(np.random.default_rng(0).uniform(1e-6, 100, 1_000_000))
    assert big.counts.size <= 8 * 470
    assert big.count == 1_000_000


def test_empty_nan_and_negative():
    h = LogHistogram()
    assert np.isnan(h.stats()["p50"]) and h.stats()["count"] == 0
    h.add([np.nan, np.inf])
    assert h.count == 0
    with pytest.raises(ValueError):
        h.add([-1.0])
    with pytest.raises(ValueError):
        LogHistogram(0.01).merge(LogHistogram())


@settings(max_examples=60, deadline=None)
@given(n=st.integers(1, 400), seed=st.integers(0, 2**31))
def test_weighted_values_are_repeated_values(n, seed):
    rng = np.random.default_rng(seed)
    x = rng.lognormal(-4, 1.0, n)
    w = rng.integers(0, 5, n)
    a, b = LogHistogram(), LogHistogram()
    a.add(x, w)
    b.add(np.repeat(x, w))
    assert a.count == b.count and a.zeros == b.zeros
    np.testing.assert_array_equal(a.percentiles([0, 50, 90, 99, 100]), b.percentiles([0, 50, 90, 99, 100]))
    if b.count:
        assert a.max == b.max and a.mean() == pytest.approx(b.mean(), rel=1e-12)
