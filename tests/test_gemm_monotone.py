"""GEMM time in the tile backend: never faster for a larger problem, and an empty GEMM costs (almost) nothing.

First principles: a GEMM with more rows, columns or depth moves at least the same bytes and does at least
the same FLOPs on the same GPU, so the kernel the library would pick cannot finish sooner (every candidate
the smaller shape had is still there, none faster). The one exception is a library that dispatches a fixed
configuration per shape bucket (CUTLASS scaled_mm's sm90 dispatch, vLLM / SGLang profiles): across a
bucket bound the library itself changes kernel, so the property holds within a bucket.
"""

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from hw_models.gemm_tiles import latency_bound_s, plan_gemm, plan_tile
from hw_models.scaled_mm import sm90_fp8_config, sm90_fp8_config_name
from simulator.core.errors import ConfigError
from simulator.validation.aic import FRAMEWORK_TIMING, _merged
from simulator.validation.kernels import gpu_config, make_backend
from workloads.llm import Op

GPUS = ("H200", "A100-80GB")
_BACKENDS: dict = {}


def backend(gpu: str, fw: str):
    key = (gpu, fw)
    if key not in _BACKENDS:
        _BACKENDS[key] = make_backend("tile", gpu_config(gpu), _merged(FRAMEWORK_TIMING[fw]))
    return _BACKENDS[key]


def gemm_op(dtype: str, m: int, n: int, k: int) -> Op:
    nb = 1.0 if dtype == "fp8" else 2.0
    return Op("gemm", "gemm", 1, m=m, n=n, k=k, dtype=dtype, dtype_bytes=nb, out_bytes=2.0 if nb != 2.0 else 0.0)


def gemm_s(gpu: str, fw: str, dtype: str, m: int, n: int, k: int) -> float:
    return backend(gpu, fw)._op_s(gemm_op(dtype, m, n, k))


dims = st.one_of(st.integers(1, 64), st.integers(1, 20000))
steps = st.one_of(st.integers(1, 16), st.integers(1, 4096))


@settings(max_examples=150, deadline=None)
@given(gpu=st.sampled_from(GPUS), fw=st.sampled_from(sorted(FRAMEWORK_TIMING)), dtype=st.sampled_from(["bf16", "fp8"]),
       m=dims, n=dims, k=dims, axis=st.integers(0, 2), step=steps)
def test_gemm_time_is_non_decreasing_in_m_n_and_k(gpu, fw, dtype, m, n, k, axis, step):
    assume(dtype != "fp8" or gpu == "H200")  # the A100 has no fp8 tensor cores
    bigger = [m, n, k]
    bigger[axis] += step
    b = backend(gpu, fw)
    if dtype == "fp8" and b._scaled_mm:  # a fixed dispatch: compare within one configuration bucket
        assume(sm90_fp8_config_name(m, n, k) == sm90_fp8_config_name(*bigger))
    t0, t1 = gemm_s(gpu, fw, dtype, m, n, k), gemm_s(gpu, fw, dtype, *bigger)
    assert t1 >= t0 * (1 - 1e-12), (gpu, fw, dtype, (m, n, k), bigger, t0, t1)


def test_small_m_fp8_gemm_does_not_speed_up_as_it_widens():
    """The review's case: vLLM's swap-AB scaled_mm at M = 4, K = 8192 (7.56 us at N = 64 fell to 7.28 us at
    N = 2048 when the activation's bytes were spread over the CTAs). Each CTA streams its own 64-row weight
    tile and its 4 activation rows whatever N is, and one wave holds every CTA, so the time is flat."""
    ts = [gemm_s("H200", "vllm", "fp8", 4, n, 8192) for n in (64, 128, 256, 512, 1024, 1280)]
    assert all(b >= a for a, b in zip(ts, ts[1:]))
    assert ts[-1] == pytest.approx(ts[0], rel=1e-9)  # one CTA's stream bounds them all (same wave)


def test_latency_bound_counts_each_ctas_own_bytes():
    # one CTA's own stream at in_flight / latency, or every HBM byte over all resident CTAs, the longer
    assert latency_bound_s(1e6, 1e6, 132, 1e5, 1e-6) == pytest.approx(1e-5)
    assert latency_bound_s(1e6, 132e6, 132, 1e5, 1e-6) == pytest.approx(1e-5)
    assert latency_bound_s(1e6, 264e6, 132, 1e5, 1e-6) == pytest.approx(2e-5)
    assert latency_bound_s(0.0, 0.0, 132, 1e5, 1e-6) == 0.0


@pytest.mark.parametrize("fw", sorted(FRAMEWORK_TIMING))
@pytest.mark.parametrize("dtype", ["bf16", "fp8"])
@pytest.mark.parametrize("shape", [(0, 4096, 4096), (8, 0, 4096), (0, 0, 0)])
def test_gemm_without_rows_or_columns_costs_nothing(fw, dtype, shape):
    assert gemm_s("H200", fw, dtype, *shape) == 0.0


@pytest.mark.parametrize("fw", sorted(FRAMEWORK_TIMING))
@pytest.mark.parametrize("dtype", ["bf16", "fp8"])
def test_gemm_with_k_0_writes_its_zero_output_once(fw, dtype):
    b = backend("H200", fw)
    p = b._fp8_auto_params() if dtype == "fp8" else b.gemm_params(dtype)
    t = plan_gemm(64, 4096, 0, 1.0 if dtype == "fp8" else 2.0, p, 0.0, 2.0).time_s
    assert t == pytest.approx(64 * 4096 * 2.0 / p.hbm_bw + p.kernel_fixed_s)
    assert 0.0 < gemm_s("H200", fw, dtype, 64, 4096, 0) < gemm_s("H200", fw, dtype, 64, 4096, 1)


def test_scaled_mm_tile_of_an_empty_gemm_has_no_ctas():
    p = backend("H200", "vllm")._scaled_mm_params()
    tile, cluster, _ = sm90_fp8_config(0, 4096, 4096)
    plan = plan_tile(4096, 0, 4096, 1.0, p, tile, 1, 1.0, 2.0, cluster=cluster)
    assert plan[0] == 0.0 and plan[3] == 0


def test_negative_gemm_dimension_is_one_clear_config_error():
    with pytest.raises(ConfigError, match=r"GEMM op 'gemm': negative shape m=-1 n=8 k=8"):
        gemm_s("H200", "vllm", "bf16", -1, 8, 8)
    with pytest.raises(ValueError, match="negative"):
        plan_gemm(8, -8, 8, 2.0, backend("H200", "vllm").gemm_params("bf16"))
