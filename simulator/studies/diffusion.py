"""Diffusion serving study: denoising requests batched across their steps (stream batching) or by request.

Models: requests (one image each at ``resolution_px``) arrive as a Poisson process; each needs
    ``steps`` denoising steps of the ``model`` (``workloads.diffusion``: DiT or UNet, classifier-free
    guidance doubling the step's batch when ``guidance``). One GPU runs one step at a time, its time
    the tile backend's time of the step's ops for that batch (memoised per batch size).
    ``stream``: every iteration takes up to ``max_batch`` requests, each at its own step (new ones
    join at the next iteration, finished ones leave), as StreamDiffusion's stream batching does;
    ``request``: a batch of up to ``max_batch`` waiting requests runs all its steps together and the
    next batch starts when it is done. Reported per policy: throughput (images/s), latency p50 / p90,
    mean batch; and the step time by batch.
Ignores: the text encoder and VAE decoder (outside the step loop), different step counts or
    resolutions in one batch, preemption, multi-GPU.
Sources: Kodaira et al., "StreamDiffusion" (2023) for batching denoising steps of different
    requests; the denoisers' sources in ``workloads.diffusion``.
"""

from __future__ import annotations

from collections import deque
from typing import Literal

import numpy as np
from pydantic import Field, model_validator

from simulator.config.quantities import StrictConfig
from workloads.diffusion import DenoiserConfig, step_ops


class Config(StrictConfig):
    model: DenoiserConfig = Field(default_factory=lambda: DenoiserConfig(preset="DiT-XL/2"))
    gpu: str = "H100-SXM"
    resolution_px: int = Field(default=512, gt=0)
    steps: int = Field(default=50, gt=0)
    guidance: bool = True
    max_batch: int = Field(default=16, gt=0)
    rate_per_s: float = Field(default=2.0, gt=0, description="mean Poisson arrival rate, requests per second")
    num_requests: int = Field(default=200, gt=0)
    policies: list[Literal["stream", "request"]] = Field(default_factory=lambda: ["stream", "request"])
    seed: int = 0

    @model_validator(mode="after")
    def _resolution(self) -> Config:
        self.model.tokens(self.resolution_px)  # a resolution the latent / patches cannot take: one line, exit 2
        return self


def _step_timer(cfg: Config):
    from simulator.validation.kernels import gpu_config, make_backend

    backend = make_backend("tile", gpu_config(cfg.gpu))
    memo: dict[int, float] = {}

    def step_s(n: int) -> float:
        if n not in memo:
            memo[n] = sum(backend.op_s(op) for op in step_ops(cfg.model, n, cfg.resolution_px, cfg.guidance))
        return memo[n]

    return step_s


def simulate(cfg: Config, policy: str, step_s) -> dict:
    rng = np.random.default_rng(cfg.seed)
    arrivals = np.concatenate([[0.0], np.cumsum(rng.exponential(1.0 / cfg.rate_per_s, cfg.num_requests - 1))])
    waiting: deque[int] = deque()
    left = np.full(cfg.num_requests, cfg.steps)
    done = np.zeros(cfg.num_requests)
    running: list[int] = []
    t, nxt, finished, iters, batch_sum = 0.0, 0, 0, 0, 0
    while finished < cfg.num_requests:
        while nxt < cfg.num_requests and arrivals[nxt] <= t:
            waiting.append(nxt)
            nxt += 1
        if policy == "stream" or not running:
            while waiting and len(running) < cfg.max_batch:
                running.append(waiting.popleft())
        if not running:
            t = arrivals[nxt]
            continue
        t += step_s(len(running))
        iters += 1
        batch_sum += len(running)
        for r in running:
            left[r] -= 1
        for r in [r for r in running if left[r] == 0]:
            running.remove(r)
            done[r] = t
            finished += 1
    lat = done - arrivals
    return {"throughput_img_s": cfg.num_requests / t, "latency_p50_s": float(np.percentile(lat, 50)),
            "latency_p90_s": float(np.percentile(lat, 90)), "mean_batch": batch_sum / iters, "iterations": iters}


def run(cfg: Config) -> dict:
    step_s = _step_timer(cfg)
    out: dict = {"tokens_per_image": cfg.model.tokens(cfg.resolution_px),
                 "step_s_by_batch": {n: step_s(n) for n in sorted({1, 2, 4, 8, cfg.max_batch})}}
    from simulator.validation.kernels import gpu_config, make_backend

    backend = make_backend("tile", gpu_config(cfg.gpu))  # the step's kernels, one image, per op (all counts)
    out["step_ops_us_one_image"] = {op.name: backend.op_s(op) * 1e6
                                    for op in step_ops(cfg.model, 1, cfg.resolution_px, cfg.guidance)}
    for policy in cfg.policies:
        for k, v in simulate(cfg, policy, step_s).items():
            out[f"{policy}_{k}"] = v
    return out
