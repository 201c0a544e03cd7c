"""Constants of the framework profiles, derived from measurements.

    python -m simulator.validation.serving_fit host ../shared/validation/aic/silicon_e2e_h200_sxm.csv sglang
    python -m simulator.validation.serving_fit floors ../shared/validation/aic/h200_sxm
    python -m simulator.validation.serving_fit frontend ../shared/validation/aic/silicon_e2e_h200_sxm.csv sglang
    python -m simulator.validation.serving_fit try ../shared/validation/aic/silicon_e2e_h200_sxm.csv sglang \
        '{"scheduler": {"max_running_requests": 448}}'

``floors``: the shortest time of one small memory-bound kernel of each framework on that GPU, the
median latency of its fp8 quantize kernel (``quantize/<fw>/<ver>/scale_matrix_perf.parquet``) over
the rows of at most 64K elements, where the kernel is flat (launch-to-finish cost, not bandwidth).
The profiles use it as the floor of their fused single-kernel norms, activations, rotary and adds.

``host``:
The dense rows of one framework (as for ``frontend`` and ``try``) are split by line number:
even lines fit, odd lines are held out. For
each candidate host time per running request (``host.per_seq_s``) and per step (``host.step_s``)
every fitting row is simulated, and the pair with the lowest median absolute TPOT error wins
(coordinate search: per-request time first, then the per-step time), then the time a request
takes from the client into the engine (``host.request_s``) by the median absolute TTFT error. Both splits' errors are
printed so the figure reported is the held-out one. The kernel models are not refitted here:
the host time is what the engine adds around them.

``frontend``: the frontend process's service times (``frontend`` block of the profile: per request,
per prompt token, per output token; ``simulator/serving/frontend.py``). First the bounds the measured
rows set on their own: one FCFS process serves every request, so by Little's law (request rate
= concurrency / (TTFT + (osl - 1) x TPOT)) its time per request, per prompt token and per output
token cannot exceed 1 / the largest measured rate of requests, prompt tokens and output tokens.
Then a coordinate search over grids inside those bounds on the even lines' median absolute TTFT
error (per prompt token, per request, per output token), the TPOT error printed beside it, and
both splits' figures for the best point. ``--replace-latency``: the profile's ``host.request_s`` (a
latency every request pays, no queue) set to 0 and the frontend's time per request searched first
(0-40 ms), i.e. the same time as a queue instead of a latency.

``try``: one profile override (JSON, merged as ``engine.framework`` blocks are) on the framework's
dense rows, even and odd lines apart, before and after: for leads that are not applied.
"""

from __future__ import annotations

import sys
from pathlib import Path

from simulator.validation.serving import errors, predict_all, read_rows, stats

PER_SEQ_US = (0, 5, 10, 20, 30, 45, 60)
STEP_US = (0, 250, 500, 1000, 2000)
REQUEST_MS = (0, 5, 10, 20, 40)


def _tpot(rows, over) -> float:
    preds = predict_all(rows, jobs=2, framework_overrides=over)
    return stats(*errors(preds, "tpot"))[0]


def _ttft(rows, over) -> float:
    preds = predict_all(rows, jobs=2, framework_overrides=over)
    return stats(*errors(preds, "ttft"))[0]


def dense_rows(csv_path: Path, framework: str) -> list:
    """The simulated dense rows of ``framework`` (the rows every end-to-end fit here runs on)."""
    from simulator.validation.serving import _is_moe, classify

    return [r for r in read_rows(csv_path) if r.framework == framework and classify(r)[0] is not None
            and not _is_moe(r.model)]


def fit(csv_path: Path, framework: str) -> dict:
    rows = dense_rows(csv_path, framework)
    train = [r for r in rows if r.line % 2 == 0]
    held = [r for r in rows if r.line % 2 == 1]
    best = (float("inf"), 0, 0)
    for per_seq in PER_SEQ_US:
        e = _tpot(train, {"host": {"per_seq_s": f"{per_seq}us", "step_s": "0us"}})
        print(f"per_seq {per_seq:3d} us  step    0 us  train TPOT median APE {e:5.1f}%", flush=True)
        best = min(best, (e, per_seq, 0))
    for step in STEP_US[1:]:
        e = _tpot(train, {"host": {"per_seq_s": f"{best[1]}us", "step_s": f"{step}us"}})
        print(f"per_seq {best[1]:3d} us  step {step:4d} us  train TPOT median APE {e:5.1f}%", flush=True)
        best = min(best, (e, best[1], step))
    host = {"per_seq_s": f"{best[1]}us", "step_s": f"{best[2]}us"}
    best_req = (float("inf"), 0)
    for ms in REQUEST_MS:  # then the request's way into the engine, on TTFT (it does not change TPOT)
        e = _ttft(train, {"host": {**host, "request_s": f"{ms}ms"}})
        print(f"request {ms:3d} ms  train TTFT median APE {e:5.1f}%", flush=True)
        best_req = min(best_req, (e, ms))
    over = {"host": {**host, "request_s": f"{best_req[1]}ms"}}
    out = {"framework": framework, "per_seq_us": best[1], "step_us": best[2], "request_ms": best_req[1],
           "train_rows": len(train), "held_out_rows": len(held)}
    for name, sub in (("train", train), ("held_out", held)):
        preds = predict_all(sub, jobs=2, framework_overrides=over)
        for metric in ("ttft", "tpot"):
            med, p90, bias, n = stats(*errors(preds, metric))
            out[f"{name}_{metric}"] = (round(med, 1), round(p90, 1), round(bias, 1), n)
    return out


FRONTEND_GRID = {"prompt_token_s": ("us", (0, 0.5, 1, 2, 4, 6)), "request_s": ("ms", (0, 0.5, 1, 2, 4)),
                 "output_token_s": ("us", (0, 5, 10, 20, 30))}
# --replace-latency: the profile's host.request_s (a pure latency) set to 0 and the frontend's time per
# request searched first, up to the latency grid's edge
REPLACE_GRID = {"request_s": ("ms", (0, 5, 10, 15, 20, 30, 40)), "prompt_token_s": ("us", (0, 0.5, 1, 2, 4, 6)),
                "output_token_s": ("us", (0, 5, 10, 20, 30))}


def frontend_bounds(rows) -> dict[str, float]:
    """Largest measured rate of requests, prompt tokens and output tokens (per second) over ``rows``,
    by Little's law: one FCFS frontend process cannot take longer than 1 / rate per item."""
    rate = [r.concurrency / ((r.ttft_ms + (r.osl - 1) * r.tpot_ms) / 1e3) for r in rows]
    return {"request_s": max(rate), "prompt_token_s": max(x * r.isl for x, r in zip(rate, rows)),
            "output_token_s": max(x * r.osl for x, r in zip(rate, rows))}


def frontend_search(rows, replace_latency: bool = False) -> tuple[dict, dict[str, float]]:
    """The grids the frontend fit searches, each cut at its Little's-law bound, and the bounds (peak
    rates per second), both from the even (fitting) lines of ``rows`` only."""
    bounds = frontend_bounds([r for r in rows if r.line % 2 == 0])
    grids = {}
    for field, (unit, grid) in (REPLACE_GRID if replace_latency else FRONTEND_GRID).items():
        scale = 1e-6 if unit == "us" else 1e-3
        grids[field] = (unit, tuple(v for v in grid if v * scale <= 1.0 / bounds[field]))
    return grids, bounds


def fit_frontend(csv_path: Path, framework: str, replace_latency: bool = False) -> dict:
    rows = dense_rows(csv_path, framework)
    train = [r for r in rows if r.line % 2 == 0]
    held = [r for r in rows if r.line % 2 == 1]
    grids, bounds = frontend_search(rows, replace_latency)  # from the even lines: nothing held out shapes it
    for field, rate in bounds.items():
        print(f"bound  {field:15s} <= {1e6 / rate:9.2f} us  (even lines' peak {rate:,.0f}/s)", flush=True)
    base = {"host": {"request_s": "0s"}} if replace_latency else {}
    best = {k: f"0{unit}" for k, (unit, _) in grids.items()}
    best_e = float("inf")
    for field, (unit, grid) in grids.items():
        for v in grid:
            trial = {**best, field: f"{v}{unit}"}
            preds = predict_all(train, jobs=2, framework_overrides={**base, "frontend": trial})
            e = stats(*errors(preds, "ttft"))[0]
            tp = stats(*errors(preds, "tpot"))[0]
            print(f"{field:15s} {v:5g} {unit}  train TTFT median APE {e:5.1f}%  TPOT {tp:5.1f}%", flush=True)
            if e < best_e - 1e-9:
                best_e, best = e, trial
    out = {"framework": framework, **best, "train_rows": len(train), "held_out_rows": len(held)}
    for name, sub in (("train", train), ("held_out", held)):
        for label, over in (("before", None), ("after", {**base, "frontend": best})):
            preds = predict_all(sub, jobs=2, framework_overrides=over)
            for metric in ("ttft", "tpot"):
                med, p90, bias, n = stats(*errors(preds, metric))
                out[f"{name}_{metric}_{label}"] = (round(med, 1), round(p90, 1), round(bias, 1), n)
    return out


def try_override(csv_path: Path, framework: str, over: dict) -> dict:
    """The dense rows of ``framework`` by split (even lines, odd lines), without and with ``over``
    merged over the profile: (median APE, p90 APE, bias, rows) of TTFT and TPOT."""
    rows = dense_rows(csv_path, framework)
    out = {}
    for name, sub in (("even", [r for r in rows if r.line % 2 == 0]), ("odd", [r for r in rows if r.line % 2 == 1])):
        for label, o in (("before", None), ("after", over)):
            preds = predict_all(sub, jobs=2, framework_overrides=o)
            for metric in ("ttft", "tpot"):
                med, p90, bias, n = stats(*errors(preds, metric))
                out[f"{name}_{metric}_{label}"] = (round(med, 1), round(p90, 1), round(bias, 1), n)
    return out


def floors(system_dir: Path) -> dict[str, float]:
    """{'<framework> <version>': median seconds of the quantize kernel at <= 64K elements}."""
    import pandas as pd

    out = {}
    for f in sorted(Path(system_dir).glob("quantize/*/*/scale_matrix_perf.parquet")):
        df = pd.read_parquet(f)
        small = df[(df.m * df.k <= 65536) & (df.latency > 0)]
        out[f"{f.parent.parent.name} {f.parent.name}"] = float(small.latency.median()) * 1e-3
    return out


def _refuse(msg: str) -> None:
    print("error: " + " ".join(msg.split()), file=sys.stderr)
    raise SystemExit(2)


def _checked_rows(csv_path: Path, framework: str) -> list:
    """The framework's dense rows, or one line naming the file or framework and exit 2."""
    from simulator.core.errors import HwsimError

    try:
        rows = dense_rows(csv_path, framework)
        if not rows:
            names = sorted({r.framework for r in read_rows(csv_path)})
            _refuse(f"{csv_path}: no simulated dense rows of framework {framework!r} (frameworks there: "
                    f"{', '.join(names)})")
    except HwsimError as exc:
        _refuse(str(exc))
    return rows


def _checked_overrides(text: str, row) -> dict:
    """The JSON profile overrides, loaded once on ``row``'s scenario, or one line and exit 2."""
    import json

    from simulator.config.loader import load_scenario
    from simulator.core.errors import HwsimError
    from simulator.validation.serving import classify

    try:
        over = json.loads(text)
    except json.JSONDecodeError as exc:
        _refuse(f"profile overrides are not JSON: {exc}")
    if not isinstance(over, dict):
        _refuse(f"profile overrides must be a JSON object (a framework block), not {type(over).__name__}")
    scenario = classify(row)[0]
    scenario["engine"]["framework"] = {"preset": scenario["engine"]["framework"], **over}
    try:
        load_scenario(scenario)
    except HwsimError as exc:
        _refuse(f"profile overrides: {exc}")
    return over


def main(argv: list[str]) -> None:
    if len(argv) == 3 and argv[0] == "host":
        _checked_rows(Path(argv[1]), argv[2])
        print(fit(Path(argv[1]), argv[2]))
    elif len(argv) in (3, 4) and argv[0] == "frontend" and argv[3:] in ([], ["--replace-latency"]):
        _checked_rows(Path(argv[1]), argv[2])
        print(fit_frontend(Path(argv[1]), argv[2], replace_latency=len(argv) == 4))
    elif len(argv) == 4 and argv[0] == "try":
        over = _checked_overrides(argv[3], _checked_rows(Path(argv[1]), argv[2])[0])
        print(try_override(Path(argv[1]), argv[2], over))
    elif len(argv) == 2 and argv[0] == "floors":
        for k, v in floors(Path(argv[1])).items():
            print(f"{k:24s} {v * 1e6:6.2f} us")
    else:
        print("usage: python -m simulator.validation.serving_fit host FILE.csv FRAMEWORK | frontend FILE.csv "
              "FRAMEWORK [--replace-latency] | try FILE.csv FRAMEWORK JSON-PROFILE-OVERRIDES | floors SYSTEM_DIR",
              file=sys.stderr)
        raise SystemExit(2)


if __name__ == "__main__":
    main(sys.argv[1:])
