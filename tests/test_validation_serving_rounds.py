"""`validate serving`'s benchmark mean: one burst round, steady rounds, and one draining last round."""

from __future__ import annotations

import numpy as np
import pytest
from test_validate_serving import COLUMNS, DENSE, write

from simulator.validation.serving import read_rows, round_means


def test_round_means_take_each_round_by_request_id_and_leave_out_unfinished_requests():
    n = 3
    rid = np.arange(3 * n)[::-1]  # any order of the columns
    ttft = np.array([float(r) for r in rid])
    tpot = 10 * ttft
    ttft[rid == 7] = np.nan  # an unfinished request of round 3
    tpot[rid == 7] = np.nan
    mid, drain = round_means({"rid": rid, "ttft_s": ttft, "tpot_s": tpot}, n)
    assert mid == (pytest.approx(4.0), pytest.approx(40.0))  # ids 3, 4, 5
    assert drain == (pytest.approx(7.0), pytest.approx(70.0))  # ids 6 and 8


def test_requests_that_did_not_finish_are_counted_not_dropped_silently():
    """A rejected request, one unfinished and one never issued of the rounds counted (ids 3 to 8) all count;
    round 1 (ids 0 to 2, the warm-up) does not."""
    from simulator.results import FINISHED, REJECTED, UNFINISHED
    from simulator.validation.serving import not_finished

    rid = np.array([0, 1, 2, 3, 4, 5, 6, 7])  # id 8 never issued
    status = np.array([REJECTED, FINISHED, FINISHED, FINISHED, REJECTED, FINISHED, UNFINISHED, FINISHED])
    assert not_finished({"rid": rid, "status": status}, 3, 9) == 3
    assert not_finished({"rid": rid, "status": np.full(8, FINISHED)}, 3, 8) == 0


def test_the_draining_round_decodes_faster_than_the_steady_round(tmp_path):
    """First principles: in the last round no request follows a finished one, so the batch thins out and a
    decode-bound run's steps get shorter; the benchmark mean gives that round one round's weight."""
    mid, drain = _rounds(read_rows(write(tmp_path, [{**DENSE, "batch_size": "64", "isl": "256", "osl": "256"}]))[0])
    assert drain[1] < mid[1]


def test_more_rounds_per_client_move_the_prediction_to_the_steady_round(tmp_path):
    """The burst and the drain each weigh 1 / rounds: with 2 rounds no steady round is left, with many the
    mean is the steady round's (not the mean of the steady and the draining round)."""
    from simulator.validation.serving import predict_all

    rows = read_rows(write(tmp_path, [{**DENSE, "batch_size": "64", "isl": "256", "osl": "256"}]))
    mid, drain = _rounds(rows[0])
    assert drain[1] < 0.97 * mid[1]  # the drain is distinguishably faster here
    tpots = [predict_all(rows, per_client=k)[0].tpot_ms / 1e3 for k in (2, 10, 1000)]
    assert tpots[0] < tpots[1] < tpots[2], tpots
    assert tpots[2] == pytest.approx(mid[1], rel=0.005)


def _first_round(row, followed: bool = True) -> dict:
    """(TTFT, TPOT, E2E) means of the benchmark's first round: every client at once, followed (or not) by the
    second round's requests as the clients finish."""
    from simulator.config.loader import load_scenario
    from simulator.runner import run_scenario
    from simulator.validation.serving import classify

    sc = classify(row)[0]
    n = row.concurrency
    sc["workload"]["num_requests"] = 2 * n if followed else n
    req = run_scenario(load_scenario(sc)).requests
    r1 = np.asarray(req["rid"]) < n
    return {k: float(np.nanmean(np.asarray(req[k], float)[r1])) for k in ("ttft_s", "tpot_s", "e2e_s")}


def _rounds(row):
    from simulator.config.loader import load_scenario
    from simulator.runner import run_scenario
    from simulator.validation.serving import STEADY_ROUNDS, classify

    sc = classify(row)[0]
    n = row.concurrency
    sc["workload"]["num_requests"] = STEADY_ROUNDS * n
    sc["workload"]["ramp_up"] = f"{_first_round(row)['e2e_s']}s"
    sc["run"] = {"warmup_requests": n}
    return round_means(run_scenario(load_scenario(sc)).requests, n)


def test_the_first_round_is_followed_by_the_second_rounds_requests(tmp_path):
    """In the benchmark the first round's clients send their next request as they finish: those prefills
    interleave with the first round's last decodes, so its TPOT is never below that of the round run alone, and
    here (long prompts, short outputs: the prefills are a large share of a step) above it. With 2 rounds the
    mean is the first round's (so followed) and the draining round's, half each."""
    from simulator.validation.serving import predict_all

    rows = read_rows(write(tmp_path, [{**DENSE, "batch_size": "16", "isl": "4096", "osl": "64"}]))
    followed, alone = _first_round(rows[0]), _first_round(rows[0], followed=False)
    assert followed["ttft_s"] == pytest.approx(alone["ttft_s"], rel=1e-9)  # its prefills run before any follow-up
    assert followed["tpot_s"] > 1.02 * alone["tpot_s"], (followed, alone)
    _, drain = _rounds(rows[0])
    pred = predict_all(rows, per_client=2)[0]
    assert pred.tpot_ms / 1e3 == pytest.approx(0.5 * followed["tpot_s"] + 0.5 * drain[1], rel=1e-9)
    assert pred.ttft_ms / 1e3 == pytest.approx(0.5 * followed["ttft_s"] + 0.5 * drain[0], rel=1e-9)


def test_a_16_bit_checkpoint_served_in_fp8_runs_per_channel_scales_not_blocks(tmp_path):
    """sglang==0.5.6.post2 quantization/fp8.py: block-wise fp8 needs an fp8-serialized checkpoint; a bf16
    checkpoint is quantized at load time per output channel. The aic label fp8_block does not change that;
    checkpoints published in block fp8 keep their blocks whatever the label."""
    from simulator.validation.serving import classify, fp8_checkpoint

    sg = {**DENSE, "backend": "sglang", "backend_version": "0.5.6.post2", "precision": "fp8"}
    cols = [*COLUMNS, "gemm_quant_mode", "moe_quant_mode"]
    rows = read_rows(write(tmp_path, [{**sg, "gemm_quant_mode": "fp8_block", "moe_quant_mode": "fp8_block"}], cols))
    assert classify(rows[0])[0]["policies"]["quantization"]["preset"] == "W8A8-fp8"
    assert not fp8_checkpoint("meta-llama/Llama-3.1-8B-Instruct")
    assert fp8_checkpoint("nvidia/Llama-3.1-8B-Instruct-FP8") and fp8_checkpoint("Qwen/Qwen3-235B-A22B-FP8")
    assert fp8_checkpoint("deepseek-ai/DeepSeek-V3")
