"""Diffusion serving scenarios (``type: diffusion``): image requests served by denoising replicas.

    type: diffusion
    hardware: {device: {kind: gpu, preset: H100-SXM}, timing: {kind: tile}}
    model: {preset: DiT-XL/2}            # workloads.diffusion.DenoiserConfig
    resolution_px: 512                   # latent side = 512 / 8; DiT tokens = (side / patch)^2
    steps: 50
    guidance: true                       # classifier-free guidance: every pass runs 2 x the batch
    cluster: {replicas: 2, router: {kind: least_outstanding}}
    scheduler: {batching: stream, max_batch: 16}
    workload: {kind: synthetic, num_requests: 200, arrival: {process: poisson, rate: 3/s}}
    slo: {latency: 30s}

The workload source, router, device and timing backend are the serving engine's plug-ins (a synthetic
or closed-loop source needs no token lengths here: each request is one image). Each replica is a
:class:`simulator.serving.diffusion_replica.DiffusionReplica` behind the engine's
:class:`~simulator.serving.cluster.Cluster`. The memory plan: the denoiser's weights plus the peak
activations of a pass at ``max_batch`` (``workloads.diffusion.activation_bytes``) must fit in
``gpu_memory_utilization`` x the device's memory, else one line, exit 2.
"""

from __future__ import annotations

import copy
import json
import platform
import time
from pathlib import Path
from typing import Any, Literal

import numpy as np
import simpy
import yaml
from pydantic import Field, ValidationError, model_validator

from simulator.config.errors import config_error
from simulator.config.loader import apply_overrides, read_mapping, resolve_component
from simulator.config.quantities import PositiveSeconds, Seconds, StrictConfig
from simulator.core import registry as reg
from simulator.core.clock import s_to_ps
from simulator.core.errors import CapacityError, ConfigError
from simulator.core.events import Recorder
from simulator.core.rng import RngStreams
from simulator.serving.cluster import Cluster
from simulator.serving.diffusion_replica import DenoiseTimer, DiffusionReplica
from workloads.diffusion import DenoiserConfig, activation_bytes, step_flops, weight_bytes

GiB = 2**30


class HardwareBlock(StrictConfig):
    device: Any = Field(default_factory=lambda: {"kind": "gpu", "preset": "H100-SXM"})
    timing: Any = Field(default_factory=lambda: {"kind": "tile"})


class ClusterBlock(StrictConfig):
    replicas: int = Field(default=1, gt=0)
    router: Any = Field(default_factory=lambda: {"kind": "round_robin"})


class SchedulerBlock(StrictConfig):
    batching: Literal["stream", "request"] = Field(
        default="stream", description="stream: requests join and leave between passes; request: a batch runs "
                                      "all its steps together")
    max_batch: int = Field(default=16, gt=0, description="images per pass (before guidance doubles it)")


class EngineBlock(StrictConfig):
    gpu_memory_utilization: float = Field(default=0.9, gt=0, le=1)


class SloBlock(StrictConfig):
    latency: PositiveSeconds = Field(default="60s", description="latency per image (arrival to last pass)")


class RunBlock(StrictConfig):
    max_time: Seconds | None = None


class DiffusionScenario(StrictConfig):
    name: str = "diffusion"
    description: str = ""
    seed: int = 0
    hardware: HardwareBlock = Field(default_factory=HardwareBlock)
    model: DenoiserConfig = Field(default_factory=lambda: DenoiserConfig(preset="DiT-XL/2"))
    resolution_px: int = Field(default=512, gt=0)
    steps: int = Field(default=50, gt=0, description="denoising passes per image")
    guidance: bool = Field(default=True, description="classifier-free guidance: each pass runs twice the batch")
    cluster: ClusterBlock = Field(default_factory=ClusterBlock)
    scheduler: SchedulerBlock = Field(default_factory=SchedulerBlock)
    engine: EngineBlock = Field(default_factory=EngineBlock)
    workload: dict[str, Any]
    slo: SloBlock = Field(default_factory=SloBlock)
    run: RunBlock = Field(default_factory=RunBlock)

    @model_validator(mode="after")
    def _resolution(self) -> DiffusionScenario:
        self.model.tokens(self.resolution_px)  # a resolution the latent / patches cannot take: one line, exit 2
        return self


def _workload_block(block: dict[str, Any]) -> dict[str, Any]:
    """A synthetic or closed-loop source without token lengths: one (text) token in, one out per image."""
    out = copy.deepcopy(block)
    if out.get("kind") in ("synthetic", "closed_loop"):
        out.setdefault("prompt_tokens", {"dist": "fixed", "value": 1})
        out.setdefault("output_tokens", {"dist": "fixed", "value": 1})
    return out


class DiffusionSimulation:
    """The scenario's device, timing backend, workload, router, cluster and replicas, built and checked."""

    def __init__(self, spec: DiffusionScenario, base_dir: Path = Path(".")) -> None:
        self.spec = spec
        dev = resolve_component(spec.hardware.device, reg.HARDWARE, "hardware.device", base_dir=base_dir)
        timing = resolve_component(spec.hardware.timing, reg.TIMING, "hardware.timing", base_dir=base_dir)
        self.device = dev.config
        self.backend = timing.cls(timing.config, dev.config, None)
        self.timer = DenoiseTimer(spec.model, spec.resolution_px, spec.guidance, self.backend)
        self.memory = self.memory_plan()
        source = resolve_component(_workload_block(spec.workload), reg.WORKLOADS, "workload", base_dir=base_dir)
        self.table = source.cls(source.config, base_dir=base_dir).generate(RngStreams(spec.seed)).validate("workload")
        self.env = simpy.Environment()
        self.recorder = Recorder(spec.cluster.replicas)
        router = resolve_component(spec.cluster.router, reg.ROUTERS, "cluster.router", base_dir=base_dir)
        self.cluster = Cluster(self.env, self.recorder, router.cls(router.config), router.kind)
        for i in range(spec.cluster.replicas):
            self.cluster.add_replica(DiffusionReplica(self.cluster, i, self.timer, spec.steps,
                                                      spec.scheduler.batching, spec.scheduler.max_batch))

    def memory_plan(self) -> dict[str, float]:
        s, dev = self.spec, self.device
        usable = dev.memory_bytes * s.engine.gpu_memory_utilization - getattr(dev, "extra_memory_bytes", 0.0)
        w = weight_bytes(s.model)
        act = activation_bytes(s.model, s.scheduler.max_batch, s.resolution_px, s.guidance)
        if w + act > usable:
            raise CapacityError(
                f"{s.model.preset or s.model.kind} needs {w / GiB:.2f} GiB of weights plus {act / GiB:.2f} GiB of "
                f"activations for a pass of {s.scheduler.max_batch} images at {s.resolution_px} px, but "
                f"{getattr(dev, 'name', 'the device')} gives {usable / GiB:.1f} GiB; lower scheduler.max_batch or "
                f"the resolution", where="scheduler.max_batch")
        return {"usable_bytes": usable, "weight_bytes": w, "activation_bytes": act}

    def run(self) -> dict[str, Any]:
        t0 = time.perf_counter()
        if self.table.closed_loop:
            self.cluster.start_closed_loop(self.table)
        else:
            self.cluster.start_open_loop(self.table)
        mt = self.spec.run.max_time
        self.env.run(until=s_to_ps(mt) if mt else None)
        self.wall_s = time.perf_counter() - t0
        return summarize(self)


def _pct(x: np.ndarray) -> dict[str, float]:
    if not len(x):
        return {"mean": float("nan"), "p50": float("nan"), "p90": float("nan"), "p99": float("nan")}
    return {"mean": float(x.mean()), "p50": float(np.percentile(x, 50)), "p90": float(np.percentile(x, 90)),
            "p99": float(np.percentile(x, 99))}


def summarize(sim: DiffusionSimulation) -> dict[str, Any]:
    """Per-image metrics: queueing delay, latency, throughput (images/s), SLO attainment; per pass: batch."""
    spec, reqs = sim.spec, sim.cluster.requests
    done = [r for r in reqs if r.finish_ps >= 0]
    arr = np.array([r.arrival_ps for r in done], dtype=np.float64) / 1e12
    fin = np.array([r.finish_ps for r in done], dtype=np.float64) / 1e12
    start = np.array([r.first_scheduled_ps for r in done], dtype=np.float64) / 1e12
    lat = fin - arr
    first = min((r.arrival_ps for r in reqs), default=0) / 1e12
    span = float(fin.max() - first) if len(done) else 0.0
    reps = sim.cluster.replicas
    iters = sum(r.iterations for r in reps)
    end_s = sim.env.now / 1e12
    out: dict[str, Any] = {
        "requests_total": len(sim.table), "images_arrived": len(reqs), "images_completed": len(done),
        "images_unfinished": len(reqs) - len(done),
        "throughput_images_per_s": len(done) / span if span > 0 else float("nan"),
        "latency_s": _pct(lat), "queueing_delay_s": _pct(start - arr),
        "slo_latency_s": spec.slo.latency,
        "slo_attainment": float((lat <= spec.slo.latency).sum() / len(reqs)) if reqs else float("nan"),
        "passes": iters, "mean_batch_images": sum(r.images_passed for r in reps) / iters if iters else 0.0,
        "gpu_busy_fraction": sum(r.busy_ps for r in reps) / 1e12 / (end_s * len(reps)) if end_s > 0 else 0.0,
        "simulated_s": end_s,
        "tokens_per_image": spec.model.tokens(spec.resolution_px),
        "pass_flop_per_image": step_flops(spec.model, 1, spec.resolution_px, spec.guidance),
        "pass_s_by_batch": {str(b): sim.timer.pass_s(b) for b in sorted({1, 2, 4, 8, spec.scheduler.max_batch})
                            if b <= spec.scheduler.max_batch},
        "memory": dict(sim.memory),
        "pass_ops_us_one_image": {op.name: sim.backend.op_s(op) * 1e6 for op in sim.timer.ops(1)},
    }
    return out


def load_diffusion(path: Path | dict, overrides: list[str] | tuple[str, ...] = ()) -> tuple[DiffusionScenario, Path]:
    raw = read_mapping(Path(path)) if not isinstance(path, dict) else path
    raw = dict(apply_overrides(raw, overrides))
    raw.pop("type", None)
    base = Path(path).resolve().parent if not isinstance(path, dict) else Path(".")
    if isinstance(path, Path):
        raw.setdefault("name", path.stem)
    try:
        return DiffusionScenario.model_validate(raw), base
    except ValidationError as exc:
        raise config_error(exc, "", DiffusionScenario) from None


def check_diffusion(path: Path, overrides: list[str] | None, show: bool) -> list[str]:
    """Build everything a run builds (memory plan, workload, replicas) and describe it."""
    spec, base = load_diffusion(path, overrides or [])
    sim = DiffusionSimulation(spec, base)
    m = sim.memory
    lines = [f"ok: {path} — diffusion: {spec.model.preset or spec.model.kind} at {spec.resolution_px} px "
             f"({spec.model.tokens(spec.resolution_px)} tokens), {spec.steps} steps"
             f"{' with guidance' if spec.guidance else ''}, {spec.cluster.replicas} x "
             f"{getattr(sim.device, 'name', 'device')}, {spec.scheduler.batching} batching up to "
             f"{spec.scheduler.max_batch}; {len(sim.table):,} requests",
             f"  memory per replica: weights {m['weight_bytes'] / GiB:.2f} GiB + activations "
             f"{m['activation_bytes'] / GiB:.2f} GiB of {m['usable_bytes'] / GiB:.1f} GiB",
             f"  pass time: {sim.timer.pass_s(1) * 1e3:.2f} ms at 1 image, "
             f"{sim.timer.pass_s(spec.scheduler.max_batch) * 1e3:.2f} ms at {spec.scheduler.max_batch}"]
    if show:
        lines.append(yaml.safe_dump({"type": "diffusion", **spec.model_dump(mode="json")}, sort_keys=False))
    return lines


def run_diffusion_scenario(path: Path | dict, overrides: list[str] | None, out: Path | None,
                           quiet: bool = True) -> dict[str, Any]:
    """Run; write summary.json, requests.csv, scenario.resolved.yaml, report.html, run_info.json to ``out``."""
    import typer

    from simulator import __version__

    spec, base = load_diffusion(path, overrides or [])
    sim = DiffusionSimulation(spec, base)
    result = sim.run()
    if out is not None:
        from simulator.studies.report import render_study_report

        out = Path(out)
        out.mkdir(parents=True, exist_ok=True)
        options = spec.model_dump(mode="json")
        (out / "summary.json").write_text(json.dumps({"type": "diffusion", **result}, indent=2))
        (out / "scenario.resolved.yaml").write_text(yaml.safe_dump({"type": "diffusion", **options},
                                                                   sort_keys=False))
        rows = ["rid,replica,arrival_s,start_s,finish_s,passes"]
        rows += [f"{r.rid},{r.replica},{r.arrival_ps / 1e12:.9f},{r.first_scheduled_ps / 1e12:.9f},"
                 f"{r.finish_ps / 1e12:.9f},{r.num_generated}" for r in sim.cluster.requests]
        (out / "requests.csv").write_text("\n".join(rows) + "\n")
        page = render_study_report(spec.name, "diffusion", spec.description, result, options, __version__)
        page = page.replace("<title>hwsim study:", "<title>hwsim diffusion:", 1).replace(
            "<p class=meta>study diffusion", "<p class=meta>diffusion serving (type: diffusion)", 1)
        (out / "report.html").write_text(page, encoding="utf-8")
        info = {"wall_s": sim.wall_s, "hwsim": __version__, "python": platform.python_version(),
                "platform": platform.platform(), "type": "diffusion"}
        (out / "run_info.json").write_text(json.dumps(info, indent=2) + "\n", encoding="utf-8")
    if not quiet:
        lat, q = result["latency_s"], result["queueing_delay_s"]
        lines = [f"hwsim: {spec.name}  ({result['images_completed']:,} of {result['requests_total']:,} images, "
                 f"{result['simulated_s']:.1f} simulated s in {sim.wall_s:.2f} s)",
                 f"  throughput {result['throughput_images_per_s']:.3f} images/s, mean batch "
                 f"{result['mean_batch_images']:.2f} images/pass, GPU busy {result['gpu_busy_fraction']:.1%}",
                 f"  latency mean {lat['mean']:.2f} s, p50 {lat['p50']:.2f} s, p90 {lat['p90']:.2f} s, "
                 f"p99 {lat['p99']:.2f} s; queueing mean {q['mean']:.2f} s",
                 f"  SLO latency <= {spec.slo.latency:g} s: {result['slo_attainment']:.1%} of images"]
        if out is not None:
            lines.append(f"results: {out}/ (open {out / 'report.html'})")
        typer.echo("\n".join(lines))
    return result


def print_pass_ops(path: Path, overrides: list[str] | tuple[str, ...], images: int = 1) -> None:
    """``hwsim ops`` of a diffusion scenario: each kernel of one denoising pass of ``images`` images."""
    import typer

    from simulator.op_breakdown import precision_of, shape_of

    if images <= 0:
        raise ConfigError(f"--images must be >= 1, got {images}", where="--images")
    spec, base = load_diffusion(path, overrides)
    sim = DiffusionSimulation(spec, base)
    ops = sim.timer.ops(images)
    times = [sim.backend.op_s(op) for op in ops]
    total = sum(times) or 1.0
    typer.echo(f"{spec.model.preset or spec.model.kind} on {getattr(sim.device, 'name', 'device')}, "
               f"{spec.hardware.timing.get('kind', 'tile') if isinstance(spec.hardware.timing, dict) else ''} timing;"
               f" one denoising pass of {images} image(s) at {spec.resolution_px} px"
               f"{' (x2 rows: classifier-free guidance)' if spec.guidance else ''}")
    head = f"{'op':<30}{'kind':<13}{'shape':<30}{'precision':<14}{'x':>4}{'MB':>10}{'GFLOP':>10}{'us':>10}{'%':>6}"
    typer.echo(head)
    typer.echo("-" * len(head))
    for op, t in zip(ops, times):
        typer.echo(f"{op.name:<30}{op.kind:<13}{shape_of(op):<30}{precision_of(op):<14}{op.count:>4}"
                   f"{op.bytes_moved() / 1e6:>10.2f}{op.flops() / 1e9:>10.2f}{t * 1e6:>10.1f}{100 * t / total:>6.1f}")
    typer.echo("-" * len(head))
    typer.echo(f"{'total':<101}{sum(op.bytes_moved() for op in ops) / 1e6:>10.2f}"
               f"{sum(op.flops() for op in ops) / 1e9:>10.2f}{total * 1e6:>10.1f}")
