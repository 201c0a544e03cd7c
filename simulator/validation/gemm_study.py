"""What the Vidur A100 GEMM tables allow a GEMM model to reach, and why smooth corrections do not.

    python -m simulator.validation.gemm_study ../shared/validation/vidur_a100 [--per-kernel]

Prints (1) the tables' own noise floor: the same GEMM shape profiled under different models'
runs, each model's median against the median over models, and the Llama-2-7B vs Llama-3-8B pair;
(2) the tile backend's error before and after rescaling its predictions per K band by the train
models' median measured/predicted ratio (an oracle for any smooth K trend); (3) with
``--per-kernel`` (about 2 minutes), a fit of a separate efficiency and per-wave overhead for each
of 15 candidate kernels (the CUTLASS list plus 64x256, 256x64 and BK = 64 tiles) on the train
models, the pick still the smallest modelled time, scored on train and held-out models.
Train = Llama-2-7B and Llama-2-70B, as in ``simulator.validation.fit``. FIDELITY.md quotes it.
"""

from __future__ import annotations

import sys
from collections import defaultdict
from pathlib import Path

import numpy as np

from simulator.validation.fit import TRAIN

K_BANDS = ((0, 2048), (2048, 3000), (3000, 4500), (4500, 6000), (6000, 1 << 30))
EXTRA_TILES = ((64, 256, 32, 4, 4), (256, 64, 32, 4, 4), (256, 128, 64, 3, 8), (128, 256, 64, 3, 8),
               (128, 128, 64, 4, 4), (64, 128, 64, 4, 4), (128, 64, 64, 4, 4))


def _ape(pred: np.ndarray, meas: np.ndarray) -> np.ndarray:
    return np.abs(pred - meas) / meas


def _fmt(e: np.ndarray) -> str:
    return f"{100 * np.median(e):.2f} % median / {100 * np.percentile(e, 90):.2f} % p90"


def noise_floor(rows: list) -> tuple[np.ndarray, np.ndarray]:
    """(|model median / median over models - 1| per (shape, model) of shapes profiled under several
    models, |Llama-3-8B / Llama-2-7B - 1| per shape both profiled)."""
    by_shape: dict[tuple, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    for r in rows:
        by_shape[(r.item.m, r.item.n, r.item.k)][r.source].append(r.measured_s)
    dev, pair = [], []
    for per_model in by_shape.values():
        if len(per_model) < 2:
            continue
        meds = {s: float(np.median(v)) for s, v in per_model.items()}
        centre = float(np.median(list(meds.values())))
        dev += [abs(v / centre - 1) for v in meds.values()]
        if "Llama-2-7b-hf" in meds and "Meta-Llama-3-8B" in meds:
            pair.append(abs(meds["Meta-Llama-3-8B"] / meds["Llama-2-7b-hf"] - 1))
    return np.array(dev), np.array(pair)


def k_band_oracle(rows: list, pred: np.ndarray) -> None:
    meas = np.array([r.measured_s for r in rows])
    k = np.array([r.item.k for r in rows])
    train = np.array([r.source in TRAIN for r in rows])
    scaled = pred.copy()
    for lo, hi in K_BANDS:
        band = (k >= lo) & (k < hi)
        scaled[band] *= float(np.median(meas[band & train] / pred[band & train]))
    print(f"tile backend: {_fmt(_ape(pred, meas))}; rescaled per K band: {_fmt(_ape(scaled, meas))} "
          f"(held out {_fmt(_ape(scaled, meas)[~train])})")


def per_kernel_fit(rows: list, backend) -> None:
    from scipy.optimize import minimize

    from hw_models.gemm_tiles import SPLITS, TILES_SM80, plan_tile

    p = backend.gemm_params("fp16")
    tiles = TILES_SM80 + EXTRA_TILES
    shapes = sorted({(r.item.m, r.item.n, r.item.k) for r in rows})
    index = {s: i for i, s in enumerate(shapes)}
    n_c = len(tiles) * len(SPLITS)
    comp = np.full((len(shapes), n_c), np.inf)
    mem, waves, split = (np.zeros((len(shapes), n_c)) for _ in range(3))
    for ti, tile in enumerate(tiles):
        for si, s in enumerate(SPLITS):
            for i, (m, n, k) in enumerate(shapes):
                grid = -(-m // tile[0]) * -(-n // tile[1])
                if s > 1 and (grid * s > 4 * p.sms or k // s < 4 * tile[2]):
                    continue
                c = plan_tile(m, n, k, 2.0, p, tile, s)
                if c is not None:
                    j = ti * len(SPLITS) + si
                    comp[i, j], mem[i, j], waves[i, j], split[i, j] = c[6], c[7], c[5], s
    row_i = np.array([index[(r.item.m, r.item.n, r.item.k)] for r in rows])
    meas = np.array([r.measured_s for r in rows])
    train = np.array([r.source in TRAIN for r in rows])
    tile_of = np.repeat(np.arange(len(tiles)), len(SPLITS))
    nt = len(tiles)

    def predict(x: np.ndarray) -> np.ndarray:
        t = (np.maximum(comp * np.exp(x[:nt])[tile_of], mem) + waves * np.abs(x[nt:2 * nt])[tile_of] * 1e3 / p.clock_hz
             + abs(x[-1]) * 1e-6 * np.where(split > 1, 2, 1))
        return t.min(axis=1)[row_i]

    def objective(x: np.ndarray) -> float:
        e = _ape(predict(x)[train], meas[train])
        return float(np.median(e) + 0.5 * np.percentile(e, 90))

    x0 = np.r_[np.zeros(nt), np.full(nt, p.cta_overhead_cycles / 1e3), p.kernel_fixed_s * 1e6]
    x = minimize(objective, x0, method="Powell", options=dict(maxiter=20000, xtol=1e-3, ftol=1e-5)).x
    e = _ape(predict(x), meas)
    print(f"per-kernel efficiency and overhead ({2 * nt + 1} constants): train {_fmt(e[train])}, "
          f"held out {_fmt(e[~train])}")


def main(argv: list[str]) -> None:
    from simulator.validation.kernels import gpu_config, load, make_backend
    from simulator.validation.vidur import GEMM_OPS

    if not argv or argv[0].startswith("-"):
        raise SystemExit("usage: python -m simulator.validation.gemm_study DIR [--per-kernel]")
    compute, _ = load(Path(argv[0]))
    rows = [r for r in compute if r.op in GEMM_OPS]
    if not rows:
        raise SystemExit(f"{argv[0]}: no GEMM rows (attn_pre_proj, attn_post_proj, mlp_up_proj, mlp_down_proj)")
    backend = make_backend("tile", gpu_config("A100-80GB"))
    dev, pair = noise_floor(rows)
    print(f"noise floor: {len(dev)} (shape, model) medians of shapes profiled under several models differ from "
          f"the median over models by {_fmt(dev)}")
    if len(pair):
        print(f"  Llama-2-7B vs Llama-3-8B on {len(pair)} identical shapes: {_fmt(pair)}")
    k_band_oracle(rows, np.array([backend.op_s(r.item) for r in rows]))
    if "--per-kernel" in argv:
        per_kernel_fit(rows, backend)


if __name__ == "__main__":
    main(sys.argv[1:])
