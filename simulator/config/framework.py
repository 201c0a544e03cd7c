"""Serving-framework profiles: what the engine around the scheduler does (vLLM, SGLang, TensorRT-LLM).

A profile is a preset file (``simulator/config/frameworks/<framework>-<version>.yaml``) selected
by ``engine: {framework: vllm-0.12}``. It describes the engine, not the policy: which kernels the
framework fuses, which all-reduce and attention kernels it runs (timing-backend settings), when it
replays CUDA graphs (and pads the batch to a captured size), its host work per step, its default
scheduler (a policy block, used when the scenario names none), how it sizes the KV cache and the
KV dtype it picks; a ``tensor_parallel`` block holds what the framework sets by GPU count. Every
number in a preset cites its source.

Models: a framework as data consumed by the loader (scheduler and timing defaults, memory rule),
    the lowering (``fusion``) and the step timer (CUDA graphs, host time per step).
Ignores: framework features outside that list (prefix caching, speculative decoding, async
    output processing beyond what ``host`` states, sampling parameters).
Sources: each preset's ``# source:`` comments (framework code constants and documentation).
"""

from __future__ import annotations

import functools
import re
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import Field, TypeAdapter, ValidationError

from simulator.config.errors import config_error
from simulator.config.quantities import Bytes, Seconds, StrictConfig
from simulator.core.errors import ConfigError

PRESETS = Path(__file__).with_name("frameworks")
FRAMEWORKS = ("vllm", "sglang", "trtllm")


class FusionConfig(StrictConfig):
    """Kernels the framework fuses (true) or runs on their own (false)."""

    add_norm: bool = Field(default=False, description="residual add fused into the next RMSNorm (one kernel)")
    rope_in_attention: bool = Field(default=False, description="rotary embedding inside the attention kernel")
    act_quant_in_producer: bool = Field(default=False,
                                        description="fp8/int8 activation quantization fused into the kernel "
                                                    "that produces the GEMM input (norm, activation)")
    group_act_quant_in_producer: bool | None = Field(
        default=None, description="per-group (block-scaled fp8) activation quantization fused into its producer "
                                  "as well; None: as act_quant_in_producer")
    per_token_act_quant: bool = Field(default=True,
                                      description="activation quantization with a scale per token (one thread "
                                                  "block per row); false: per-tensor scales (a flat kernel)")
    allreduce_norm: bool = Field(default=False,
                                 description="tensor-parallel all-reduce fused with the residual add + norm "
                                             "that follows it (no separate add/norm kernel)")
    shared_experts_in_moe: bool = Field(default=False,
                                        description="a MoE model's one shared expert run as one more expert of "
                                                    "the fused MoE kernel, without expert parallelism "
                                                    "(workloads.moe.fuse_shared_expert)")


class CudaGraphConfig(StrictConfig):
    max_batch: int = Field(default=0, ge=0, description="decode-only batches of at most this many rows replay a "
                                                        "captured graph (0: no graphs)")
    sizes: list[int] = Field(default_factory=list, description="captured batch sizes (a batch is padded up to the "
                                                               "next one); empty: every size up to max_batch")
    mixed: Literal["eager", "piecewise"] = Field(
        default="eager", description="batches with prefill rows: eager (every kernel launched from the host) or "
                                     "piecewise (graphs around everything but attention)")


class HostConfig(StrictConfig):
    step_s: Seconds = Field(default="0s", description="host time per engine step not hidden behind the GPU "
                                                      "(scheduling, input preparation, sampling, detokenization)")
    per_seq_s: Seconds = Field(default="0s", description="host time per running request per step")
    request_s: Seconds = Field(default="0s", description="a request's way from the client into the engine (HTTP, "
                                                         "tokenization, inter-process queues); in TTFT and "
                                                         "end-to-end time, not on the GPU")
    overlap: bool = Field(default=False, description="the host prepares step n+1 while the GPU runs step n (SGLang's "
                                                     "overlap scheduler, TRT-LLM's overlap scheduler): a step takes "
                                                     "max(GPU, host) instead of GPU + host")


class FrontendConfig(StrictConfig):
    """The frontend process(es) in front of the engine as a queue (``simulator/serving/frontend.py``)."""

    processes: int = Field(default=1, ge=1, description="frontend processes serving requests in parallel (each "
                                                        "one request at a time, first come first served)")
    request_s: Seconds = Field(default="0s", description="a frontend process's time per request (HTTP handling, "
                                                         "request setup)")
    prompt_token_s: Seconds = Field(default="0s", description="a frontend process's time per prompt token "
                                                              "(tokenization)")
    output_token_s: Seconds = Field(default="0s", description="a frontend process's time per output token the "
                                                              "engine emits (detokenized output relayed to the "
                                                              "client), competing with arriving requests")


class FrameworkProfile(StrictConfig):
    name: str
    framework: Literal["vllm", "sglang", "trtllm"]
    version: str = Field(description="first framework version this profile describes")
    default: bool = Field(default=False, description="the profile used when a version is not given")
    scheduler: dict[str, Any] = Field(description="default scheduler block when the scenario names none")
    timing: dict[str, Any] = Field(default_factory=dict,
                                   description="tile-backend settings (merged under the scenario's timing block)")
    fusion: FusionConfig = Field(default_factory=FusionConfig)
    cuda_graphs: CudaGraphConfig = Field(default_factory=CudaGraphConfig)
    host: HostConfig = Field(default_factory=HostConfig)
    frontend: FrontendConfig = Field(default_factory=FrontendConfig)
    gpu_memory_utilization: float = Field(gt=0, le=1)
    memory_rule: Literal["total", "free_after_weights"] = Field(
        default="total", description="total: KV = utilization x memory - weights - reserve (vLLM, SGLang); "
                                     "free_after_weights: KV = utilization x (memory - weights - reserve) (TRT-LLM)")
    activation_reserve: Bytes = Field(default="1GiB", description="memory kept for activations and workspace")
    kv_cache_dtype: Literal["auto", "fp8"] = Field(
        default="auto", description="auto: the model's dtype; fp8: fp8 KV when the weights are fp8")
    tensor_parallel: dict[int, dict[str, Any]] = Field(
        default_factory=dict, description="fields merged over the profile (one level deep) at a tensor-parallel "
                                          "degree of at least the key, the largest such key winning (settings a "
                                          "framework derives from the GPU count, e.g. SGLang's CUDA-graph batch "
                                          "limit and memory fraction)")

    versions: dict[str, dict[str, Any]] = Field(
        default_factory=dict, description="fields merged over the profile (one level deep) for a framework version "
                                          "at least the key (a release number), every such key in version order: "
                                          "defaults a later release changed, within the profile's line")

    def for_version(self, version: str | None) -> FrameworkProfile:
        """The profile as release ``version`` of the framework configures itself (its ``versions`` blocks
        not newer than it applied in order; None or an unparsable version: unchanged)."""
        key = release_key(str(version)) if version else None
        if key is None or not self.versions:
            return self
        for block in self.versions:
            if version_key(block) is None:
                raise ConfigError(f"versions key {block!r} is not a release number", where=f"framework {self.name}")
        prof = self
        for block in sorted((b for b in self.versions if release_key(b) <= key), key=release_key):
            prof = prof._merged(self.versions[block], f"versions.{block}")
        return prof

    def _merged(self, fields: dict[str, Any], where: str) -> FrameworkProfile:
        """The profile with ``fields`` merged over it, one level deep (a dict merges into a block)."""
        update: dict[str, Any] = {}
        try:
            for key, val in fields.items():
                cur = getattr(self, key, None)
                if isinstance(val, dict) and isinstance(cur, StrictConfig):  # only the fields given change
                    part = type(cur).model_validate(val)
                    update[key] = cur.model_copy(update={k: getattr(part, k) for k in val})
                elif isinstance(val, dict) and isinstance(cur, dict):
                    update[key] = {**cur, **val}
                elif key in FrameworkProfile.model_fields and key not in ("tensor_parallel", "versions"):
                    info = FrameworkProfile.model_fields[key]
                    update[key] = TypeAdapter(Annotated[(info.annotation, *info.metadata)]).validate_python(val)
                else:
                    raise ConfigError(f"unknown profile field {key!r}", where=f"framework {self.name}: {where}")
        except ValidationError as exc:
            raise ConfigError(f"{exc.errors()[0]['msg']}", where=f"framework {self.name}: {where}") from None
        return self.model_copy(update=update)

    def for_tp(self, tp: int) -> FrameworkProfile:
        """The profile as the framework configures itself at tensor-parallel degree ``tp``."""
        keys = [k for k in self.tensor_parallel if k <= tp]
        if not keys:
            return self
        block = max(keys)
        return self._merged(self.tensor_parallel[block], f"tensor_parallel.{block}")

    def padded_batch(self, rows: int) -> int:
        """Rows a CUDA-graph replay of a decode batch of ``rows`` runs (the next captured size)."""
        g = self.cuda_graphs
        if rows > g.max_batch:
            return rows
        for s in g.sizes:
            if s >= rows:
                return s
        return rows


def version_key(version: str) -> tuple[int, ...] | None:
    """(0, 12, 0) for '0.12.0', '0.5.6.post2' -> (0, 5, 6); None when not a dotted release number."""
    m = re.match(r"^v?(\d+(?:\.\d+)*)(?:(?:rc|\.post|post|\.dev|dev)\d*)*(?:\.post\d+)?$", version.strip())
    if not m:
        return None
    return tuple(int(x) for x in m.group(1).split("."))


def release_key(version: str) -> tuple[int, ...] | None:
    """``version_key`` without trailing zeros, for ordering releases: '0.16' and '0.16.0' are one release
    (as tuples (0, 16) sorts below (0, 16, 0))."""
    key = version_key(version)
    if key is None:
        return None
    n = len(key)
    while n > 1 and key[n - 1] == 0:
        n -= 1
    return key[:n]


def profile_names() -> list[str]:
    return sorted(p.stem for p in PRESETS.glob("*.yaml"))


def _read(path: Path, overrides: dict[str, Any] | None = None) -> FrameworkProfile:
    import yaml

    with open(path) as f:
        data = yaml.safe_load(f)
    for key, val in (overrides or {}).items():  # one level deep: {host: {per_seq_s: 40us}} merges into host
        data[key] = {**data[key], **val} if isinstance(val, dict) and isinstance(data.get(key), dict) else val
    try:
        return FrameworkProfile.model_validate(data)
    except ValidationError as exc:
        raise config_error(exc, "engine.framework" if overrides else f"framework preset {path.name}",
                           FrameworkProfile) from None


def all_profiles() -> list[FrameworkProfile]:
    return [p for _, p in _profiles()]


@functools.cache
def _profiles() -> tuple[tuple[Path, FrameworkProfile], ...]:
    """The shipped presets, read once per process (profiles are frozen)."""
    return tuple((p, _read(p)) for p in sorted(PRESETS.glob("*.yaml")))


def resolve_profile(framework: str, version: str | None = None, where: str = "engine.framework") -> FrameworkProfile:
    return _resolve(framework, version, where)[1]


def _resolve(framework: str, version: str | None, where: str) -> tuple[Path, FrameworkProfile]:
    """The profile of ``framework`` for ``version``: the newest profile whose version is not newer
    than ``version`` within the same major.minor-or-older line; ``version`` None: the framework's
    default profile. An unknown framework or a version older than every profile is an error."""
    fw = framework.strip().lower()
    if fw not in FRAMEWORKS:
        raise ConfigError(f"unknown framework {framework!r}; known: {', '.join(FRAMEWORKS)}", where=where)
    found = [(path, p) for path, p in _profiles() if p.framework == fw]
    profiles = [p for _, p in found]
    if version is None or not str(version).strip():
        for path, p in found:
            if p.default:
                return path, p
        raise ConfigError(f"framework {fw} has no default profile", where=where)
    key = release_key(str(version))
    if key is None:
        raise ConfigError(f"unknown {fw} version {version!r} (not a release number); profiles: "
                          f"{', '.join(p.version for p in profiles)}", where=where)
    older = [(path, p) for path, p in found if release_key(p.version) <= key]
    if not older:
        raise ConfigError(f"unknown {fw} version {version!r}: older than every profile "
                          f"({', '.join(p.version for p in profiles)})", where=where)
    path, prof = max(older, key=lambda pair: release_key(pair[1].version))
    return path, prof.for_version(version)


def parse_framework(spec: str | dict[str, Any], where: str = "engine.framework", tp: int = 1) -> FrameworkProfile:
    """``vllm``, ``vllm-0.12``, ``sglang-0.5.6.post2``, a preset file stem, or a block
    ``{preset: sglang-0.5, host: {per_seq_s: 40us}}`` whose other fields override the preset's, at
    tensor-parallel degree ``tp``. A field takes, first found: the block's value, the profile's
    ``tensor_parallel`` block for ``tp``, its ``versions`` blocks for the named release, the preset."""
    overrides: dict[str, Any] = {}
    if isinstance(spec, dict):
        overrides = {k: v for k, v in spec.items() if k != "preset"}
        if not isinstance(spec.get("preset"), str):
            raise ConfigError("a framework block needs preset: <framework>[-<version>]", where=where)
        spec = spec["preset"]
    t = spec.strip()
    if (PRESETS / f"{t}.yaml").exists():
        path, ver = PRESETS / f"{t}.yaml", ""
        prof = dict(_profiles())[path]
    else:
        fw, _, ver = t.partition("-")
        path, prof = _resolve(fw, ver or None, where)
    if overrides:  # read with the block's fields as a preset is (errors name the field), the blocks applied
        prof = _read(path, overrides).for_version(ver or None)
    prof = prof.for_tp(tp)
    # the block's own fields win over what the release and tensor-parallel blocks set
    own = {k: v for k, v in overrides.items() if k not in ("tensor_parallel", "versions")}
    return prof._merged(own, where) if own else prof
