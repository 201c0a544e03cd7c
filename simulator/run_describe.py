"""What the CLI prints about a serving run beyond its summary: the deployment ``hwsim check``
describes, the progress of a long run, and why a run rejected its requests."""

from __future__ import annotations

import time
from pathlib import Path

import typer

from simulator.run_size import format_duration


def describe_serving(scenario: Path, resolved, sim, size) -> list[str]:
    """What ``hwsim check`` prints of a serving scenario: the deployment, pool by pool, and the run's size."""
    gib = 2.0**30

    def memory(mem, dp: int = 1) -> str:
        # with attention data parallelism the plan's KV blocks are the dp groups' together (dp x one GPU's)
        off = (f" (+ {mem.weight_host_bytes / gib:.1f} GiB in host DRAM, {mem.weight_disk_bytes / gib:.1f} GiB on "
               f"disk, streamed)") if mem.weight_host_bytes or mem.weight_disk_bytes else ""
        where = {"gpu": "GiB/GPU", "host": "GiB in host DRAM", "disk": "GiB on disk"}[mem.kv_tier]
        tokens = mem.kv_blocks * mem.block_size
        held = f" + {mem.kv_residual_bytes / gib:.1f} GiB held for the batch slots" if mem.kv_residual_bytes else ""
        if tokens >= 2**40:  # every layer's K/V bounded (windows, states): nothing grows per token
            return f"weights {mem.weight_bytes / gib:.1f} GiB/GPU{off}, KV bounded per sequence{held}"
        return (f"weights {mem.weight_bytes / gib:.1f} GiB/GPU{off}, KV {mem.kv_bytes / dp / gib:.1f} {where} = "
                f"{tokens} tokens per replica{held}")

    model = resolved.model.config.name
    if resolved.spec.cluster.pools is None:
        pool = resolved.pools[0]
        pp = f" x PP{pool.pipeline_parallel}" if pool.pipeline_parallel > 1 else ""
        lines = [f"ok: {scenario} — {model} on {pool.replicas} x {pool.tensor_parallel}{pp} x "
                 f"{pool.device.config.name}; {memory(sim.mem, pool.attention_data_parallel)}; "
                 f"{size.requests:,} requests"]
    else:
        lines = [f"ok: {scenario} — {model} on {len(sim.pools)} pools; {size.requests:,} requests"]
        for rt in sim.pools:
            p = rt.pool
            lines.append(f"  pool {p.name} ({p.role}): {p.replicas} x {p.tensor_parallel} x PP{p.pipeline_parallel} "
                         f"x {p.device.config.name}, scheduler {p.scheduler.kind}; "
                         f"{memory(rt.mem, p.attention_data_parallel)}")
        if resolved.kv_link is not None:
            lines.append(f"  KV transfer: {resolved.kv_link.config.name}")
    lines.append(f"  size: {size.describe()}")
    return lines


class RunProgress:
    """Progress of a long run on stderr: a bar on a terminal, otherwise a line every 10 %, with the
    time elapsed and an estimate of the time left."""

    def __init__(self, total: int, tty: bool) -> None:
        self.total, self.t0, self.next_pct, self.bar = total, time.perf_counter(), 10, None
        if tty:
            from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

            self.bar = Progress(TextColumn("simulating"), BarColumn(), TextColumn("{task.completed:,}/{task.total:,} "
                                                                                  "requests"),
                                TimeElapsedColumn(), TextColumn("left"), TimeRemainingColumn(), transient=True)
            self.task = self.bar.add_task("run", total=total)
            self.bar.start()

    def __call__(self, done: int, total: int) -> None:
        if self.bar is not None:
            self.bar.update(self.task, completed=done)
            return
        pct = 100 * done // max(total, 1)
        if pct < self.next_pct or done >= total:
            return
        self.next_pct = pct - pct % 10 + 10
        spent = time.perf_counter() - self.t0
        left = spent * (total - done) / max(done, 1)
        typer.echo(f"simulating: {pct}% ({done:,}/{total:,} requests), {format_duration(spent)} elapsed, "
                   f"about {format_duration(left)} left", err=True)

    def stop(self) -> None:
        if self.bar is not None:
            self.bar.stop()


def rejection_reason(sim) -> str:
    """Why the requests of a run were rejected, from their lengths and the engine's limits."""
    prompts = sim.table.prompt_tokens
    reasons = []
    over = int((prompts > sim.max_model_len).sum())
    if over:
        reasons.append(f"{over:,} prompts exceed max_model_len {sim.max_model_len} (engine.max_model_len)")
    budget = getattr(sim.scenario.scheduler.config, "max_num_batched_tokens", None)
    if budget:
        over = int((prompts > budget).sum())
        if over:
            reasons.append(f"{over:,} prompts exceed the scheduler's token budget {budget} "
                           f"(policies.scheduler.max_num_batched_tokens)")
    cache = min(rt.mem.kv_blocks * rt.mem.block_size for rt in sim.pools)
    over = int((prompts > cache).sum())
    if over:
        reasons.append(f"{over:,} prompts exceed the {cache:,}-token KV cache of a replica")
    return "; ".join(reasons) or "the scheduler rejected every request (see events.csv)"
