"""The serving frontend as a queue (simulator/serving/frontend.py): queueing theory first, then
properties, then the profile fields that configure it."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from simulator.config.loader import load_scenario
from simulator.core.errors import ConfigError
from simulator.runner import run_scenario
from simulator.serving.frontend import Frontend

ITER_S = 1e-5  # the engine's iteration under the constant backend: far below the frontend's times
NO_HOST = {"step_s": "0s", "per_seq_s": "0s", "request_s": "0s"}


def scenario(frontend: dict | None, workload: dict, seed: int = 0, framework: str = "sglang") -> dict:
    fw = {"preset": framework, "host": NO_HOST}
    if frontend is not None:
        fw["frontend"] = frontend
    return {
        "name": "frontend", "seed": seed,
        "hardware": {"device": {"kind": "gpu", "preset": "H200"},
                     "timing": {"kind": "constant", "iteration": f"{ITER_S * 1e3:g}ms"}},
        "model": {"preset": "Llama-3.1-8B"}, "engine": {"max_model_len": 4096, "framework": fw},
        "workload": workload,
        "outputs": {"report": False, "chrome_trace": False, "events": False, "requests": False},
    }


def poisson(rate_per_s: float, n: int, prompt: int = 100, output: int = 1) -> dict:
    return {"kind": "synthetic", "num_requests": n, "arrival": {"process": "poisson", "rate": f"{rate_per_s:g}/s"},
            "prompt_tokens": {"dist": "fixed", "value": prompt}, "output_tokens": {"dist": "fixed", "value": output}}


def closed(clients: int, n: int, prompt: int = 100, output: int = 4) -> dict:
    return {"kind": "closed_loop", "clients": clients, "num_requests": n,
            "prompt_tokens": {"dist": "fixed", "value": prompt}, "output_tokens": {"dist": "fixed", "value": output}}


def lindley_wait(arrival_s: np.ndarray, service_s: float) -> np.ndarray:
    w = np.empty_like(arrival_s)
    free = 0.0
    for i, a in enumerate(arrival_s.tolist()):
        start = max(a, free)
        w[i] = start - a
        free = start + service_s
    return w


# ------------------------------------------------------------------------------------------------
# queueing theory

def test_one_frontend_process_with_poisson_arrivals_waits_as_m_d_1_predicts():
    """M/D/1: mean wait in queue rho s / (2 (1 - rho)). Seed-to-seed spread of the mean over 20k
    arrivals at rho = 0.7 is 3.9 % (40 seeds, Lindley recursion), bias -0.2 %; four pooled seeds give
    ~1.9 %, so 5 % is ~2.6 standard errors (the seeds are fixed: the test is deterministic)."""
    s, rho, n = 2e-3, 0.7, 20000
    waits = []
    for seed in (1, 2, 3, 4):
        rng = np.random.default_rng(seed)
        arrivals_ps = np.rint(np.cumsum(rng.exponential(s / rho, n)) * 1e12).astype(np.int64)
        fe = Frontend(1, s, 0.0, 0.0)
        waits.append(np.mean([fe.admit(int(t), 100) for t in arrivals_ps]) / 1e12 - s)
    want = rho * s / (2 * (1 - rho))
    assert np.mean(waits) == pytest.approx(want, rel=0.05)


def test_the_simulated_frontend_queue_matches_m_d_1_end_to_end():
    """Poisson requests through a framework profile whose frontend takes 10 ms per request (an engine
    iteration of 10 us): the time from arrival to the engine is the M/D/1 wait plus the service."""
    s, rho, n = 10e-3, 0.5, 8000
    got = []
    for seed in (1, 2, 3):
        res = run_scenario(load_scenario(scenario({"request_s": f"{s * 1e3:g}ms"}, poisson(rho / s, n), seed)))
        got.append(res.summary["queue_s"]["mean"] - s)
    want = rho * s / (2 * (1 - rho))
    assert np.mean(got) == pytest.approx(want, rel=0.06)  # 3 x 8k arrivals: standard error ~2 %


def test_the_frontend_wait_is_the_lindley_recursion_of_the_arrivals_exactly():
    """FCFS, one process: every request's wait is max(0, previous wait + service - gap), to the picosecond."""
    rng = np.random.default_rng(7)
    arrivals = np.cumsum(rng.exponential(1e-3, 500))
    fe = Frontend(1, 0.8e-3, 0.0, 0.0)
    got = np.array([fe.admit(int(round(a * 1e12)), 0) for a in arrivals]) / 1e12 - 0.8e-3
    np.testing.assert_allclose(got, lindley_wait(np.round(arrivals * 1e12) / 1e12, 0.8e-3), atol=1e-11)


def test_k_frontend_processes_serve_k_simultaneous_requests_at_once():
    fe = Frontend(3, 1e-3, 0.0, 0.0)
    delays = [fe.admit(0, 0) for _ in range(7)]
    assert delays == [10**9] * 3 + [2 * 10**9] * 3 + [3 * 10**9]


def test_output_work_delays_the_next_request_by_its_service_time_per_token():
    fe = Frontend(1, 0.0, 1e-6, 20e-6)
    fe.output(0, 100)  # 100 tokens emitted at t=0: 2 ms of output handling
    assert fe.admit(10**9, 1000) == 10**9 + 10**9  # arrives at 1 ms: waits 1 ms, then 1 ms of tokenization
    fe.output(10**10, 50)  # long after: the process was free again
    assert fe.admit(10**10, 0) == 10**9


def test_tokenization_time_grows_with_the_prompt_and_a_lone_client_pays_it_exactly_once():
    """No queue with one client: TTFT grows by exactly request_s + prompt tokens x prompt_token_s, TPOT not at all."""
    base = run_scenario(load_scenario(scenario(None, closed(1, 3, prompt=500)))).summary
    fe = {"request_s": "1ms", "prompt_token_s": "4us"}
    slow = run_scenario(load_scenario(scenario(fe, closed(1, 3, prompt=500)))).summary
    assert slow["ttft_s"]["mean"] - base["ttft_s"]["mean"] == pytest.approx(1e-3 + 500 * 4e-6, abs=1e-9)
    assert slow["tpot_s"]["mean"] == pytest.approx(base["tpot_s"]["mean"], rel=1e-12)


def test_a_clients_next_request_waits_for_the_output_handling_of_the_tokens_before_it():
    """One client, 4 output tokens, 1 ms of output handling per token against 10 us engine iterations:
    the process is still relaying the first request's tokens (first token + 4 x 1 ms) when the next
    request arrives, so that one waits exactly the rest of it; the first request waits for nothing."""
    c = 1e-3
    res = run_scenario(load_scenario(scenario({"output_token_s": "1ms"}, closed(1, 2, output=4))))
    req = res.requests
    order = np.argsort(req["rid"])
    first, finish, ttft = req["first_token_s"][order], req["finish_s"][order], req["ttft_s"][order]
    base = run_scenario(load_scenario(scenario(None, closed(1, 2, output=4)))).requests
    assert ttft[0] == pytest.approx(float(np.sort(base["ttft_s"])[0]), abs=1e-12)
    assert ttft[1] - ttft[0] == pytest.approx(first[0] + 4 * c - finish[0], abs=1e-9)
    assert ttft[1] - ttft[0] > 3.9 * c


# ------------------------------------------------------------------------------------------------
# properties

@settings(max_examples=12, deadline=None)
@given(s_ms=st.floats(0.5, 5.0), processes=st.integers(1, 3), clients=st.integers(1, 24))
def test_throughput_never_exceeds_the_frontend_processes_over_the_service_time(s_ms, processes, clients):
    res = run_scenario(load_scenario(scenario({"request_s": f"{s_ms}ms", "processes": processes},
                                              closed(clients, 6 * clients, output=2))))
    s = res.summary
    n, first, last = s["requests_finished"], np.nanmin(res.requests["arrival_s"]), np.nanmax(res.requests["finish_s"])
    assert n == 6 * clients
    # n requests need n services on `processes` servers: they cannot all be through faster than that
    assert last - first >= (n / processes - 1) * s_ms * 1e-3 * (1 - 1e-9) - 1e-12
    assert s["throughput_rps"] <= processes / (s_ms * 1e-3) * (1 + 1e-9) or n <= processes


@settings(max_examples=8, deadline=None)
@given(processes=st.integers(1, 4), framework=st.sampled_from(["vllm", "sglang", "trtllm"]),
       clients=st.integers(1, 16))
def test_with_zero_service_times_results_equal_the_model_without_a_frontend(processes, framework, clients):
    zero = {"request_s": "0s", "prompt_token_s": "0s", "output_token_s": "0s"}
    if framework == "trtllm":  # its profile's frontend has times: without them, the engine alone
        a = run_scenario(load_scenario(scenario(zero, closed(clients, 3 * clients), framework=framework))).summary
    else:  # the profile as shipped (no frontend times)
        a = run_scenario(load_scenario(scenario(None, closed(clients, 3 * clients), framework=framework))).summary
    b = run_scenario(load_scenario(scenario({"processes": processes, **zero}, closed(clients, 3 * clients),
                                            framework=framework))).summary
    for key in ("ttft_s", "tpot_s", "e2e_s", "queue_s"):
        assert a[key] == b[key], key
    assert a["sim_time_s"] == b["sim_time_s"]


@settings(max_examples=10, deadline=None)
@given(token_us=st.floats(0.0, 20.0), more=st.floats(0.5, 20.0))
def test_a_slower_frontend_never_shortens_the_time_to_first_token(token_us, more):
    def ttft(us: float) -> float:
        return run_scenario(load_scenario(scenario({"prompt_token_s": f"{us}us"}, poisson(200.0, 200, prompt=1000))
                                          )).summary["ttft_s"]["mean"]

    assert ttft(token_us + more) >= ttft(token_us)


# ------------------------------------------------------------------------------------------------
# configuration

def test_a_frontend_without_processes_is_refused_naming_the_field():
    with pytest.raises(ConfigError, match="frontend.processes"):
        load_scenario(scenario({"processes": 0}, closed(1, 1)))


def test_a_bare_number_for_a_service_time_is_refused_naming_the_unit():
    with pytest.raises(ConfigError, match="prompt_token_s"):
        load_scenario(scenario({"prompt_token_s": 5}, closed(1, 1)))


def test_the_fit_bounds_a_frontend_process_by_the_highest_measured_rate_littles_law():
    from simulator.validation.serving import ServingRow
    from simulator.validation.serving_fit import frontend_bounds

    def row(conc: int, isl: int, osl: int, ttft_ms: float, tpot_ms: float) -> ServingRow:
        return ServingRow(2, "r", "m", "sglang", None, "fp8", "agg", isl, osl, conc, 1, 1, 1, 1, "h200_sxm",
                          ttft_ms, tpot_ms)

    # 10 clients, each request 100 ms + 10 x 10 ms = 0.2 s: 50 requests/s, 50k prompt and 550 output tokens/s
    b = frontend_bounds([row(10, 1000, 11, 100.0, 10.0), row(1, 4000, 2, 100.0, 100.0)])
    assert b["request_s"] == pytest.approx(50.0)
    assert b["prompt_token_s"] == pytest.approx(50_000.0)
    assert b["output_token_s"] == pytest.approx(550.0)


def test_the_shipped_trtllm_frontend_charges_a_lone_client_its_fitted_service_exactly():
    """TRT-LLM's profile: one frontend process, 20 ms per request + 2 us per prompt token (no queue with one client)."""
    zero = {"request_s": "0s", "prompt_token_s": "0s", "output_token_s": "0s"}
    wl = closed(1, 3, prompt=1000)
    base = run_scenario(load_scenario(scenario(zero, wl, framework="trtllm"))).summary
    shipped = run_scenario(load_scenario(scenario(None, wl, framework="trtllm"))).summary
    assert shipped["ttft_s"]["mean"] - base["ttft_s"]["mean"] == pytest.approx(20e-3 + 1000 * 2e-6, abs=1e-9)


def test_each_serving_instance_has_its_own_frontend_processes():
    """Replicas behind a router are separate serving instances (each its own trtllm-serve / vllm serve /
    sglang server, each with its own frontend process): 4 simultaneous requests over 4 replicas all
    leave their frontends after one service time (20 ms), not 20 / 40 / 60 / 80 ms as one shared
    process would give; one replica keeps the single queue."""
    s = 20e-3
    many = scenario({"request_s": "20ms"}, closed(4, 4, output=1))
    many["cluster"] = {"replicas": 4}
    ttft = np.sort(run_scenario(load_scenario(many)).requests["ttft_s"])
    single = scenario({"request_s": "20ms"}, closed(4, 4, output=1))
    one = np.sort(run_scenario(load_scenario(single)).requests["ttft_s"])
    np.testing.assert_allclose(one, s * np.arange(4) + one[0], atol=1e-9)  # one process: 20 ms apart
    np.testing.assert_allclose(ttft, one[0], atol=1e-9)  # four instances: all as the first


@pytest.mark.parametrize("replicas", [1, 3])
def test_a_decode_stretch_relays_its_tokens_as_one_iteration_at_a_time_would(replicas):
    """Output work from a stretch of decode iterations run as one timeout joins the queue at each
    iteration's end, as the per-iteration loop reports it: a request reaching the frontend in the
    middle of a stretch queues behind the tokens emitted before it, not ahead of them (20 us of
    relay per token against 10 us iterations: the backlog grows through the stretch). With 3
    replicas, stretches of several replicas overlap and feed the one pooled queue in time order."""
    from simulator.runner import Simulation

    def go(steady: bool):
        sc = scenario({"request_s": "50us", "output_token_s": "20us"}, poisson(300.0, 12 * replicas, output=400),
                      seed=3)
        sc["cluster"] = {"replicas": replicas}
        sim = Simulation(load_scenario(sc))
        for rep in sim.cluster.replicas:
            rep.steady = steady
        return sim.run()

    fast, slow = go(True), go(False)
    assert fast.summary["batch_segments"] < slow.summary["batch_segments"]  # stretches were run
    for col in ("first_token_s", "finish_s"):
        np.testing.assert_allclose(np.sort(fast.requests[col]), np.sort(slow.requests[col]), rtol=0, atol=1e-9,
                                   err_msg=col)
