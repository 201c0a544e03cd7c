"""Pipeline parallelism: the stages of one replica, shared by its virtual engines.

Models: a replica split into ``stages`` pipeline stages (layers divided evenly, so each stage
    takes 1/stages of an iteration's time), each stage a SimPy resource that runs one micro-batch
    at a time; between stages the activations (tokens x hidden x dtype bytes) cross the
    interconnect. Several virtual engines (vLLM's scheme: one scheduler per micro-batch in
    flight) feed the pipeline, so while one micro-batch is in stage 2 the next can be in stage 1;
    with too few micro-batches the stages idle — the pipeline bubble.
Ignores: uneven stage loads (embedding and LM head on the end stages), overlap of the send with
    compute.
Sources: GPipe (Huang et al. 2019); Megatron-LM pipeline schedules (Narayanan et al. 2021);
    vLLM pipeline-parallel virtual engines.
"""

from __future__ import annotations

import simpy

from simulator.core.clock import s_to_ps


class Pipeline:
    def __init__(self, env: simpy.Environment, stages: int, link, act_bytes_per_token: float, index: int) -> None:
        self.env = env
        self.stages = [simpy.Resource(env, capacity=1) for _ in range(stages)]
        self.link = link
        self.act_bytes_per_token = act_bytes_per_token
        self.index = index
        self.spans: list[tuple[int, int, int, int]] = []  # (stage, engine, start_ps, end_ps)

    def run(self, engine: int, step_ps: int, tokens: int):
        """Process: one micro-batch of ``tokens`` tokens through every stage."""
        env = self.env
        n = len(self.stages)
        stage_ps = -(-step_ps // n)
        send_ps = s_to_ps(self.link.send_s(tokens * self.act_bytes_per_token)) if self.link is not None else 0
        for s, stage in enumerate(self.stages):
            with stage.request() as req:
                yield req
                start = env.now
                yield env.timeout(stage_ps)
                self.spans.append((s, engine, start, env.now))
            if s < n - 1 and send_ps:
                yield env.timeout(send_ps)
