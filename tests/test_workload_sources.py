"""Request sources: synthetic arrival processes and lengths, trace replay, closed loop."""

from __future__ import annotations

import copy
import time
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from scipy import stats

from simulator.config.loader import resolve_component
from simulator.core import registry as reg
from simulator.core.errors import ConfigError, InputFileError
from simulator.core.rng import RngStreams
from workloads.sources.synthetic import CONVERSATION_LIKE, fit_from_trace

SHARED = Path(__file__).resolve().parents[2] / "shared"
CONV = SHARED / "traces" / "splitwise_conv.csv"
needs_conv = pytest.mark.skipif(not CONV.exists(), reason="shared/traces/splitwise_conv.csv not available")

FIXED_100 = {"dist": "fixed", "value": 100}
FIXED_10 = {"dist": "fixed", "value": 10}


def source(block: dict, base_dir: Path = Path(".")):
    comp = resolve_component(block, reg.WORKLOADS, "workload", base_dir=base_dir)
    return comp.cls(comp.config, base_dir=base_dir)


def generate(block: dict, seed: int = 0, base_dir: Path = Path(".")):
    return source(block, base_dir).generate(RngStreams(seed))


def synthetic(n: int = 10, arrival: dict | None = None, prompt: dict | None = None, output: dict | None = None):
    return {"kind": "synthetic", "num_requests": n,
            "arrival": arrival or {"process": "poisson", "rate": "2/s"},
            "prompt_tokens": prompt or FIXED_100, "output_tokens": output or FIXED_10}


def cv(x: np.ndarray) -> float:
    return float(np.std(x, ddof=1) / np.mean(x))


# --------------------------------------------------------------------------------------------
# arrivals


def test_the_registry_knows_the_trace_synthetic_and_closed_loop_kinds():
    assert {"trace", "synthetic", "closed_loop"} <= set(reg.WORKLOADS.kinds())


def test_a_small_synthetic_workload_is_a_valid_request_table():
    table = generate(synthetic())
    table.validate()
    assert len(table) == 10 and table.arrival_s[0] == 0.0
    assert table.prompt_tokens.dtype == np.int64 and table.output_tokens.dtype == np.int64
    assert (table.prompt_tokens == 100).all() and (table.output_tokens == 10).all()


def test_poisson_arrivals_have_the_configured_mean_rate_within_three_standard_errors():
    n, rate = 20000, 4.0
    gaps = np.diff(generate(synthetic(n, {"process": "poisson", "rate": "4/s"})).arrival_s)
    # exponential gaps: standard deviation = mean, so the standard error of the mean gap is mean / sqrt(n)
    se = (1 / rate) / np.sqrt(gaps.size)
    assert abs(gaps.mean() - 1 / rate) < 3 * se


def test_poisson_inter_arrival_times_are_exponential_with_a_coefficient_of_variation_near_one():
    gaps = np.diff(generate(synthetic(20000, {"process": "poisson", "rate": "4/s"}), seed=3).arrival_s)
    assert cv(gaps) == pytest.approx(1.0, abs=0.03)
    assert stats.kstest(gaps, "expon", args=(0, 0.25)).pvalue > 1e-3


def test_gamma_arrivals_with_cv_two_have_an_inter_arrival_cv_near_two():
    gaps = np.diff(generate(synthetic(100000, {"process": "gamma", "rate": "10/s", "cv": 2.0})).arrival_s)
    assert cv(gaps) == pytest.approx(2.0, rel=0.05)
    assert gaps.mean() == pytest.approx(0.1, rel=0.03)


def test_fixed_arrivals_are_evenly_spaced_at_one_over_the_rate():
    arrivals = generate(synthetic(50, {"process": "fixed", "rate": "5/s"})).arrival_s
    np.testing.assert_allclose(np.diff(arrivals), 0.2)


# --------------------------------------------------------------------------------------------
# lengths

_clip = st.tuples(st.integers(1, 5000), st.one_of(st.none(), st.integers(1, 5000)))


@st.composite
def length_dists(draw) -> dict:
    lo, span = draw(st.integers(1, 10**6)), draw(st.integers(0, 10**6))
    dist = draw(st.one_of(
        st.builds(lambda v: {"dist": "fixed", "value": v}, st.integers(1, 10**9)),
        st.just({"dist": "uniform", "low": lo, "high": lo + span}),
        st.builds(lambda m, s: {"dist": "lognormal", "median": m, "sigma": s},
                  st.floats(1e-3, 1e7), st.floats(0, 6)),
        st.builds(lambda a, hi: {"dist": "zipf", "a": a, "low": lo, "high": hi},
                  st.floats(1.01, 5), st.one_of(st.none(), st.integers(lo, lo + 10**7))),
        st.builds(lambda m: {"dist": "geometric", "mean": m}, st.floats(1, 1e6)),
    ))
    low, high = draw(_clip)
    if high is not None and high < low:
        low, high = high, low
    return {**dist, "min": low, **({} if high is None else {"max": high})}


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(dist=length_dists(), seed=st.integers(0, 2**32))
def test_lengths_respect_min_and_max_and_are_at_least_one_for_arbitrary_parameters(dist, seed):
    table = generate(synthetic(300, prompt=dist, output=dist), seed=seed)
    for lengths in (table.prompt_tokens, table.output_tokens):
        assert lengths.dtype == np.int64
        assert (lengths >= 1).all() and (lengths >= dist["min"]).all()
        if "max" in dist:
            assert (lengths <= dist["max"]).all()


def test_uniform_lengths_have_a_mean_half_way_between_low_and_high():
    low, high, n = 10, 1000, 50000
    lengths = generate(synthetic(n, prompt={"dist": "uniform", "low": low, "high": high})).prompt_tokens
    assert lengths.min() >= low and lengths.max() <= high
    se = np.sqrt(((high - low + 1) ** 2 - 1) / 12 / n)
    assert abs(lengths.mean() - (low + high) / 2) < 4 * se


def test_geometric_lengths_have_the_configured_mean():
    mean, n = 50.0, 50000
    lengths = generate(synthetic(n, output={"dist": "geometric", "mean": mean})).output_tokens
    se = np.sqrt((1 - 1 / mean) * mean**2 / n)
    assert lengths.min() >= 1
    assert abs(lengths.mean() - mean) < 4 * se


def test_lognormal_lengths_have_the_configured_median_and_sigma():
    lengths = generate(synthetic(50000, prompt={"dist": "lognormal", "median": 2000, "sigma": 0.7})).prompt_tokens
    logs = np.log(lengths)
    assert np.exp(np.median(logs)) == pytest.approx(2000, rel=0.03)
    assert logs.std() == pytest.approx(0.7, rel=0.03)


def test_zipf_lengths_follow_a_power_law_between_low_and_high():
    lengths = generate(synthetic(100000, prompt={"dist": "zipf", "a": 2.0, "low": 1, "high": 100})).prompt_tokens
    assert lengths.min() == 1 and lengths.max() <= 100
    counts = np.bincount(lengths)
    assert counts[1] / counts[2] == pytest.approx(4.0, rel=0.05)


def test_the_length_clip_applies_to_every_distribution():
    table = generate(synthetic(5000, prompt={"dist": "lognormal", "median": 500, "sigma": 2, "min": 50, "max": 900}))
    assert table.prompt_tokens.min() == 50 and table.prompt_tokens.max() == 900


@needs_conv
def test_empirical_lengths_resample_the_chosen_trace_column():
    table = generate(synthetic(2000, output={"dist": "empirical", "path": str(CONV), "column": "output_tokens"}))
    trace = generate({"kind": "trace", "path": str(CONV)})
    assert set(table.output_tokens.tolist()) <= set(trace.output_tokens.tolist())
    assert np.median(table.output_tokens) == pytest.approx(np.median(trace.output_tokens), rel=0.1)


# --------------------------------------------------------------------------------------------
# determinism and speed


def test_the_same_seed_gives_identical_arrays_and_another_seed_different_ones():
    block = synthetic(1000, {"process": "gamma", "rate": "3/s", "cv": 1.5},
                      {"dist": "lognormal", "median": 800, "sigma": 1}, {"dist": "geometric", "mean": 100})
    a, b, c = generate(block, seed=7), generate(block, seed=7), generate(block, seed=8)
    for name in ("arrival_s", "prompt_tokens", "output_tokens"):
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name))
        assert not np.array_equal(getattr(a, name), getattr(c, name))


def test_changing_the_output_distribution_changes_neither_arrivals_nor_prompts():
    block = synthetic(1000, prompt={"dist": "lognormal", "median": 800, "sigma": 1})
    other = copy.deepcopy(block)
    other["output_tokens"] = {"dist": "uniform", "low": 1, "high": 500}
    a, b = generate(block, seed=1), generate(other, seed=1)
    np.testing.assert_array_equal(a.arrival_s, b.arrival_s)
    np.testing.assert_array_equal(a.prompt_tokens, b.prompt_tokens)


def _timed(fn) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


# --------------------------------------------------------------------------------------------
# fitting


def test_fit_from_trace_recovers_the_parameters_of_a_synthetic_table_it_generated():
    block = synthetic(40000, {"process": "gamma", "rate": "5/s", "cv": 1.5},
                      {"dist": "lognormal", "median": 800, "sigma": 1.0},
                      {"dist": "lognormal", "median": 120, "sigma": 0.8})
    fit = fit_from_trace(generate(block, seed=11))
    comp = resolve_component(fit, reg.WORKLOADS, "workload")  # the fitted block is a valid workload
    arrival = comp.config.arrival
    assert arrival.process == "gamma"
    assert arrival.rate == pytest.approx(5.0, rel=0.05)
    assert arrival.cv == pytest.approx(1.5, rel=0.05)
    assert comp.config.prompt_tokens.median == pytest.approx(800, rel=0.05)
    assert comp.config.prompt_tokens.sigma == pytest.approx(1.0, rel=0.05)
    assert comp.config.output_tokens.median == pytest.approx(120, rel=0.05)
    assert comp.config.output_tokens.sigma == pytest.approx(0.8, rel=0.05)
    assert isinstance(fit["arrival"]["rate"], str) and fit["arrival"]["rate"].endswith("/s")


def test_the_conversation_like_block_is_a_valid_synthetic_workload():
    table = generate(CONVERSATION_LIKE)
    table.validate()
    assert table.output_tokens.max() <= 1000


@needs_conv
def test_the_conversation_like_block_is_the_fit_of_the_first_10000_conversation_rows():
    trace = generate({"kind": "trace", "path": str(CONV), "max_requests": 10000})
    assert fit_from_trace(trace) == CONVERSATION_LIKE


# --------------------------------------------------------------------------------------------
# trace replay


@needs_conv
def test_the_splitwise_conversation_trace_loads_19366_rows_with_the_first_arriving_at_zero():
    table = generate({"kind": "trace", "path": str(CONV)})
    table.validate()
    assert len(table) == 19366
    assert table.arrival_s[0] == 0.0
    assert table.meta["format"] == "splitwise"
    assert table.prompt_tokens[:2].tolist() == [374, 396] and table.output_tokens[:2].tolist() == [44, 109]


@needs_conv
def test_target_rate_rescales_the_trace_to_the_asked_mean_rate():
    table = generate({"kind": "trace", "path": str(CONV), "start_row": 100, "max_requests": 5000,
                      "target_rate": "20/s"})
    assert len(table) == 5000 and table.arrival_s[0] == 0.0
    assert (len(table) - 1) / table.arrival_s[-1] == pytest.approx(20.0, rel=1e-9)


def write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


SMALL = "arrived_at,num_prefill_tokens,num_decode_tokens\n1.0,10,5\n1.5,20,6\n3.0,30,7\n4.0,40,8\n"


def test_start_row_and_max_requests_pick_a_window_shifted_to_arrive_from_zero(tmp_path):
    path = write(tmp_path / "t.csv", SMALL)
    table = generate({"kind": "trace", "path": str(path), "start_row": 1, "max_requests": 2})
    np.testing.assert_allclose(table.arrival_s, [0.0, 1.5])
    assert table.prompt_tokens.tolist() == [20, 30]


def test_time_scale_multiplies_inter_arrival_times_and_token_limits_clip(tmp_path):
    path = write(tmp_path / "t.csv", SMALL)
    table = generate({"kind": "trace", "path": str(path), "time_scale": 2.0, "max_prompt_tokens": 25,
                      "max_output_tokens": 6})
    np.testing.assert_allclose(table.arrival_s, [0.0, 1.0, 4.0, 6.0])
    assert table.prompt_tokens.tolist() == [10, 20, 25, 25]
    assert table.output_tokens.tolist() == [5, 6, 6, 6]


def test_a_relative_trace_path_is_resolved_against_the_scenario_directory(tmp_path):
    write(tmp_path / "t.csv", SMALL)
    table = generate({"kind": "trace", "path": "t.csv"}, base_dir=tmp_path)
    assert len(table) == 4


def test_azure_format_timestamps_are_read_as_seconds_since_the_first_row(tmp_path):
    path = write(tmp_path / "azure.csv",
                 "TIMESTAMP,ContextTokens,GeneratedTokens\n"
                 "2023-11-16 18:15:46.6805900,4808,10\n"
                 "2023-11-16 18:15:50.9951690,3180,8\n"
                 "2023-11-16 18:16:01.0000000,110,27\n")
    table = generate({"kind": "trace", "path": str(path)})
    assert table.meta["format"] == "azure"
    np.testing.assert_allclose(table.arrival_s, [0.0, 4.314579, 14.31941], atol=1e-9)
    assert table.prompt_tokens.tolist() == [4808, 3180, 110]
    assert table.output_tokens.tolist() == [10, 8, 27]


def test_extra_columns_blank_lines_and_quoted_numbers_are_accepted(tmp_path):
    path = write(tmp_path / "t.csv", 'id,arrived_at,num_prefill_tokens,num_decode_tokens\n'
                                     'a,0.5,"10",5\n\n  \nb,0.7,20,6\n')
    table = generate({"kind": "trace", "path": str(path)})
    np.testing.assert_allclose(table.arrival_s, [0.0, 0.2])
    assert table.prompt_tokens.tolist() == [10, 20]


def test_loading_a_100000_row_trace_is_no_slower_than_numpy_parsing_it(tmp_path):
    from workloads.sources.trace import load_trace_file

    rng = np.random.default_rng(0)
    n = 100000
    rows = np.column_stack([np.cumsum(rng.exponential(0.1, n)), rng.integers(1, 5000, n), rng.integers(1, 500, n)])
    path = tmp_path / "big.csv"
    np.savetxt(path, rows, fmt=["%.6f", "%d", "%d"], delimiter=",",
               header="arrived_at,num_prefill_tokens,num_decode_tokens", comments="")
    # A ratio measured in one run: the loader (validation included) against numpy's own text parser.
    elapsed = min(_timed(lambda: load_trace_file(path)) for _ in range(3))
    baseline = min(_timed(lambda: np.loadtxt(path, delimiter=",", skiprows=1)) for _ in range(3))
    assert elapsed < 1.5 * baseline
    assert len(load_trace_file(path)) == n


BAD_TRACES = [
    # (case, file content, texts the message must contain)
    ("missing column", "arrived_at,num_prefill_tokens,tokens_out\n0,1,2\n",
     ["num_decode_tokens", "columns found: arrived_at, num_prefill_tokens, tokens_out"]),
    ("undetectable format", "a,b,c\n0,1,2\n", ["cannot detect", "a, b, c"]),
    ("non-numeric value", SMALL.replace("3.0,30,7", "3.0,thirty,7"), ["row 3", "'num_prefill_tokens'", ":4"]),
    ("non-numeric time", SMALL.replace("1.5,20", "soon,20"), ["row 2", "'arrived_at'", ":3"]),
    ("zero tokens", SMALL.replace("4.0,40,8", "4.0,40,0"), ["row 4", "'num_decode_tokens'", ">= 1", ":5"]),
    ("negative tokens", SMALL.replace("1.5,20", "1.5,-20"), ["row 2", "'num_prefill_tokens'", ">= 1"]),
    ("fractional tokens", SMALL.replace("1.5,20", "1.5,20.5"), ["row 2", "whole number"]),
    ("decreasing timestamps", SMALL.replace("3.0,30", "1.2,30"), ["row 3", "non-decreasing", ":4"]),
    ("short row", SMALL.replace("3.0,30,7", "3.0,30"), ["row 3", "num_decode_tokens"]),
    ("empty file", "", ["empty"]),
    ("header only", "arrived_at,num_prefill_tokens,num_decode_tokens\n", ["no data rows"]),
    ("bad azure timestamp", "TIMESTAMP,ContextTokens,GeneratedTokens\n2023-11-16 18:15:46.68,10,5\nyesterday,1,1\n",
     ["row 2", "'TIMESTAMP'", ":3"]),
]


@pytest.mark.parametrize("case,content,expected", BAD_TRACES, ids=[c[0] for c in BAD_TRACES])
def test_a_malformed_trace_raises_an_input_file_error_naming_the_file_and_place(tmp_path, case, content, expected):
    path = write(tmp_path / "bad_trace.csv", content)
    with pytest.raises(InputFileError) as info:
        generate({"kind": "trace", "path": str(path)})
    message = str(info.value)
    assert "bad_trace.csv" in message
    for text in expected:
        assert text in message, (case, message)


def test_a_missing_trace_file_raises_an_input_file_error_naming_it(tmp_path):
    with pytest.raises(InputFileError, match="no_such_trace.csv.*not found"):
        source({"kind": "trace", "path": "no_such_trace.csv"}, base_dir=tmp_path)


def test_a_start_row_past_the_end_is_an_input_file_error(tmp_path):
    path = write(tmp_path / "t.csv", SMALL)
    with pytest.raises(InputFileError, match="t.csv.*start_row 4"):
        generate({"kind": "trace", "path": str(path), "start_row": 4})


# --------------------------------------------------------------------------------------------
# closed loop


def test_a_closed_loop_source_leaves_arrivals_to_the_simulation():
    block = {"kind": "closed_loop", "clients": 8, "num_requests": 40000, "think_time": "2s",
             "prompt_tokens": FIXED_100, "output_tokens": {"dist": "uniform", "low": 1, "high": 9}}
    table = generate(block)
    table.validate()
    assert table.closed_loop and table.concurrency == 8
    assert np.isnan(table.arrival_s).all() and len(table) == 40000
    assert table.think_s.mean() == pytest.approx(2.0, rel=0.03)
    assert cv(table.think_s) == pytest.approx(1.0, abs=0.03)


def test_fixed_think_time_is_the_same_before_every_request():
    block = {"kind": "closed_loop", "clients": 2, "num_requests": 5, "think_time": "500ms", "think": "fixed",
             "prompt_tokens": FIXED_100, "output_tokens": FIXED_10}
    np.testing.assert_array_equal(generate(block).think_s, np.full(5, 0.5))


def test_closed_loop_think_time_defaults_to_zero():
    block = {"kind": "closed_loop", "clients": 2, "num_requests": 5, "prompt_tokens": FIXED_100,
             "output_tokens": FIXED_10}
    assert (generate(block).think_s == 0).all()


# --------------------------------------------------------------------------------------------
# config errors name their dotted path


CONFIG_ERRORS = [
    (synthetic(arrival={"process": "poisson", "rate": "-2/s"}), "workload.arrival.rate"),
    (synthetic(arrival={"process": "poisson", "rate": 2}), "workload.arrival.rate"),
    (synthetic(arrival={"process": "burst", "rate": "2/s"}), "workload.arrival.process"),
    (synthetic(arrival={"process": "poisson", "rate": "2/s", "cv": 2}), "workload.arrival"),
    ({**synthetic(), "num_requests": 0}, "workload.num_requests"),
    (synthetic(prompt={"dist": "lognormal", "median": 100, "sigma": -1}), "workload.prompt_tokens.sigma"),
    (synthetic(prompt={"dist": "lognormal", "sigma": 1}), "workload.prompt_tokens.median"),
    (synthetic(output={"dist": "zipf", "a": 1.0}), "workload.output_tokens.a"),
    (synthetic(output={"dist": "normal", "mean": 3}), "workload.output_tokens.dist"),
    (synthetic(output={"mean": 3}), "workload.output_tokens.dist"),
    (synthetic(output={"dist": "fixed", "value": 3, "colour": 1}), "workload.output_tokens.colour"),
    (synthetic(output={"dist": "uniform", "low": 9, "high": 3}), "workload.output_tokens"),
    (synthetic(output={"dist": "fixed", "value": 3, "min": 5, "max": 2}), "workload.output_tokens"),
    ({"kind": "trace", "path": "x.csv", "target_rate": "2/s", "time_scale": 2}, "workload"),
    ({"kind": "trace", "path": "x.csv", "format": "parquet"}, "workload.format"),
    ({"kind": "closed_loop", "clients": 0, "num_requests": 1, "prompt_tokens": FIXED_100,
      "output_tokens": FIXED_10}, "workload.clients"),
    ({"kind": "closed_loop", "clients": 1, "num_requests": 1, "think_time": "-1s", "prompt_tokens": FIXED_100,
      "output_tokens": FIXED_10}, "workload.think_time"),
]


@pytest.mark.parametrize("block,path", CONFIG_ERRORS, ids=[f"{i}-{p}" for i, (_, p) in enumerate(CONFIG_ERRORS)])
def test_a_bad_workload_config_is_a_config_error_starting_with_its_dotted_path(block, path):
    with pytest.raises(ConfigError) as info:
        resolve_component(block, reg.WORKLOADS, "workload")
    assert str(info.value).startswith(path + ":"), str(info.value)
