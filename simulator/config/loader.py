"""Load a scenario: YAML/TOML -> overrides -> presets merged -> strict validation -> resolved.

Each component block ``{kind, preset, <overrides>}`` is resolved by its registry: the preset
file(s) are loaded, the overrides merged over them, and the result validated by the plug-in's
strict config. Every error names its dotted path (``policies.scheduler.block_size: ...``).
"""

from __future__ import annotations

import copy
import difflib
import json
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, TypeAdapter, ValidationError

from simulator.config.errors import config_error
from simulator.config.framework import FrameworkProfile, parse_framework
from simulator.config.quantities import EmptyConfig
from simulator.config.scenario import ScenarioFile
from simulator.core import registry as reg
from simulator.core.errors import ConfigError
from simulator.core.files import read_text
from simulator.core.registry import Entry, Registry
from simulator.core.units import format_quantity

PRESET_SUFFIXES = (".yaml", ".yml", ".json", ".toml")


@dataclass(frozen=True)
class Component:
    """A resolved component: its kind, the presets it came from and its validated config."""

    kind: str
    config: BaseModel
    entry: Entry
    presets: tuple[str, ...] = ()
    where: str = ""

    @property
    def cls(self) -> Any:
        return self.entry.cls

    def dump(self) -> dict[str, Any]:
        return {"kind": self.kind, **self.config.model_dump(mode="json")}


@dataclass(frozen=True)
class Pool:
    """A resolved pool of identical replicas (the single pool when the scenario names none)."""

    name: str
    role: str  # both | prefill | decode
    replicas: int
    tensor_parallel: int
    device: Component
    interconnect: Component | None
    scheduler: Component
    pipeline_parallel: int = 1
    expert_parallel: int = 1
    attention_data_parallel: int = 1
    context_parallel: int = 1

    def dump(self) -> dict[str, Any]:
        return {"name": self.name, "role": self.role, "replicas": self.replicas,
                "tensor_parallel": self.tensor_parallel, "pipeline_parallel": self.pipeline_parallel,
                "expert_parallel": self.expert_parallel, "attention_data_parallel": self.attention_data_parallel,
                **({"context_parallel": self.context_parallel} if self.context_parallel != 1 else {}),
                "device": self.device.dump(),
                "interconnect": self.interconnect.dump() if self.interconnect else None,
                "scheduler": self.scheduler.dump()}


@dataclass(frozen=True)
class ResolvedScenario:
    spec: ScenarioFile
    device: Component
    interconnect: Component | None
    timing: Component
    model: Component
    workload: Component
    router: Component
    scheduler: Component
    source: str = "<dict>"
    base_dir: Path = Path(".")
    pools: tuple[Pool, ...] = ()
    decode_router: Component | None = None
    kv_link: Component | None = None
    quantization: Component | None = None
    kv_cache: Component | None = None
    framework: FrameworkProfile | None = None

    @property
    def disaggregated(self) -> bool:
        return any(p.role == "prefill" for p in self.pools)

    def dump(self) -> dict[str, Any]:
        """A mapping that, loaded again, gives this same scenario (presets already merged)."""
        s = self.spec.model_dump(mode="json")
        s["hardware"]["device"] = self.device.dump()
        s["hardware"]["interconnect"] = self.interconnect.dump() if self.interconnect else None
        s["hardware"]["timing"] = self.timing.dump()
        s["model"] = self.model.dump()
        s["workload"] = _absolute_paths(self.workload.dump(), self.base_dir)
        s["cluster"]["router"] = self.router.dump()
        s["policies"]["scheduler"] = self.scheduler.dump()
        if self.spec.cluster.pools is not None:
            s["cluster"]["pools"] = [p.dump() for p in self.pools]
        if self.decode_router is not None:
            s["cluster"]["decode_router"] = self.decode_router.dump()
        if self.kv_link is not None:
            s["cluster"]["kv_transfer"] = {"link": self.kv_link.dump()}
        if self.quantization is not None:
            s["policies"]["quantization"] = self.quantization.dump()
        if self.kv_cache is not None:
            s["policies"]["kv_cache"] = self.kv_cache.dump()
        return s

    def to_yaml(self) -> str:
        header = "# hwsim resolved scenario: presets merged, every value explicit\n"
        presets = {c.where: list(c.presets) for c in self.components() if c.presets}
        if presets:
            header += "# presets: " + json.dumps(presets) + "\n"
        return header + yaml.safe_dump(self.dump(), sort_keys=False)

    def components(self) -> list[Component]:
        out = [self.device, self.timing, self.model, self.workload, self.router, self.scheduler]
        for p in self.pools if self.spec.cluster.pools is not None else ():
            out += [p.device, p.scheduler] + ([p.interconnect] if p.interconnect else [])
        return out + [c for c in (self.interconnect, self.decode_router, self.kv_link, self.quantization,
                                  self.kv_cache) if c is not None]


def _absolute_paths(block: Any, base_dir: Path) -> Any:
    """``block`` with each relative file ``path`` (a trace, an empirical length table) made absolute,
    looked up as the workload does (beside the scenario file, then in the working directory), so a
    resolved scenario re-runs from any directory."""
    if isinstance(block, list):
        return [_absolute_paths(v, base_dir) for v in block]
    if not isinstance(block, dict):
        return block
    out = {k: _absolute_paths(v, base_dir) for k, v in block.items()}
    path = out.get("path")
    if isinstance(path, str) and path and not Path(path).is_absolute():
        for cand in (Path(base_dir) / path, Path.cwd() / path):
            if cand.exists():
                out["path"] = str(cand.resolve())
                break
    return out


# --------------------------------------------------------------------------------------------
# files


def read_mapping(path: Path, what: str = "scenario") -> dict[str, Any]:
    """Read a YAML, JSON or TOML file that must hold a mapping; errors name file and line."""
    text = read_text(path, f"{what} file")
    try:
        if path.suffix == ".toml":
            data = tomllib.loads(text)
        elif path.suffix == ".json":
            data = json.loads(text)
        else:
            data = yaml.safe_load(text)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark
        line = f":{mark.line + 1}:{mark.column + 1}" if mark else ""
        raise ConfigError(f"malformed YAML: {exc.problem or exc}", where=f"{path}{line}") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"malformed YAML: {exc}", where=str(path)) from None
    except json.JSONDecodeError as exc:
        raise ConfigError(f"malformed JSON: {exc.msg}", where=f"{path}:{exc.lineno}:{exc.colno}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"malformed TOML: {exc}", where=str(path)) from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"a {what} file must hold a mapping, found {type(data).__name__}", where=str(path))
    if what == "scenario":
        data.pop("$schema", None)  # the editor's pointer to `hwsim schema` output, not a scenario field
    return data


# --------------------------------------------------------------------------------------------
# --set a.b.c=value


def parse_override(text: str) -> tuple[list[str], Any]:
    if "=" not in text:
        raise ConfigError(f"override {text!r} must look like a.b.c=value", where="--set")
    key, _, value = text.partition("=")
    path = [p for p in key.strip().split(".")]
    if not key.strip() or any(not p for p in path):
        raise ConfigError(f"override {text!r} has an empty key", where="--set")
    try:
        parsed = yaml.safe_load(value) if value.strip() else ""
    except yaml.YAMLError:
        parsed = value
    return path, parsed


def apply_overrides(raw: dict[str, Any], overrides: list[str] | tuple[str, ...]) -> dict[str, Any]:
    out = copy.deepcopy(raw)
    for text in overrides:
        path, value = parse_override(text)
        cur = out
        for i, part in enumerate(path[:-1]):
            nxt = cur.get(part)
            if nxt is None:
                nxt = cur[part] = {}
            if not isinstance(nxt, dict):
                raise ConfigError(f"cannot set {'.'.join(path)}: {'.'.join(path[:i + 1])} is not a mapping",
                                  where="--set")
            cur = nxt
        if path[-1] == "kind" and cur.get("kind") not in (None, value):
            # a new kind starts a new block: the old kind's fields would not validate against it
            cur.clear()
        cur[path[-1]] = value
    return out


# --------------------------------------------------------------------------------------------
# components


def deep_merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for k, v in over.items():
        if isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = deep_merge(out[k], v)
        else:
            out[k] = v
    return out


def load_preset(entry: Entry, name: str, where: str, base_dir: Path) -> dict[str, Any]:
    path = None
    if name.endswith(PRESET_SUFFIXES):
        cand = Path(name)
        path = cand if cand.is_absolute() else base_dir / cand
        if not path.exists() and Path(name).exists():
            path = Path(name)
        if not path.exists():
            raise ConfigError(f"preset file {name!r} not found", where=where)
    else:
        names = entry.preset_names()
        if entry.presets is not None:
            for suffix in PRESET_SUFFIXES:
                if (entry.presets / f"{name}{suffix}").exists():
                    path = entry.presets / f"{name}{suffix}"
                    break
        if path is None:
            close = difflib.get_close_matches(name, names, n=1, cutoff=0.5)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            known = f" known: {', '.join(names)}" if names else f" ({entry.kind} has no presets)"
            raise ConfigError(f"unknown {entry.kind} preset {name!r}{hint}{known}", where=where)
    if entry.preset_reader is not None and path.suffix == ".json":
        try:
            return entry.preset_reader(path)
        except ConfigError:
            raise
        except (KeyError, ValueError, TypeError) as exc:
            raise ConfigError(f"preset {path.name} cannot be read: {exc}", where=where) from None
    data = read_mapping(path, what="preset")
    data.pop("kind", None)
    return data


def resolve_component(block: Any, registry: Registry, where: str, default_kind: str | None = None,
                      base_dir: Path = Path(".")) -> Component:
    """Resolve one ``{kind, preset, <overrides>}`` block against ``registry``."""
    if isinstance(block, str):
        block = {"kind": block}
    if not isinstance(block, dict):
        raise ConfigError(f"expected a mapping {{kind: ..., ...}}, got {type(block).__name__}", where=where)
    block = dict(block)
    kind = block.pop("kind", default_kind)
    if kind is None:
        raise ConfigError(f"missing 'kind' (known: {', '.join(registry.kinds())})", where=where)
    entry = registry.get(kind, where=f"{where}.kind")
    presets = block.pop("preset", None)
    preset_list: list[str] = [] if presets is None else [presets] if isinstance(presets, str) else presets
    if not isinstance(preset_list, list) or not all(isinstance(p, str) for p in preset_list):
        raise ConfigError("preset must be a name or a list of names", where=f"{where}.preset")
    data: dict[str, Any] = {}
    for name in preset_list:
        data = deep_merge(data, load_preset(entry, name, f"{where}.preset", base_dir))
    data = deep_merge(data, block)
    config_cls = entry.config or EmptyConfig
    try:
        config = config_cls.model_validate(data)
    except ValidationError as exc:
        raise config_error(exc, where, config_cls) from None
    return Component(kind=kind, config=config, entry=entry, presets=tuple(preset_list), where=where)


# --------------------------------------------------------------------------------------------
# scenario


def load_scenario(source: str | Path | dict[str, Any], overrides: list[str] | tuple[str, ...] = ()
                  ) -> ResolvedScenario:
    if isinstance(source, dict):
        raw, name, base_dir = source, "<dict>", Path(".")
    else:
        path = Path(source)
        raw, name, base_dir = read_mapping(path), str(path), path.resolve().parent
    raw = apply_overrides(raw, overrides)
    _serving_type(raw, name)
    framework = _framework_defaults(raw)
    if framework is not None:
        raw = framework[1]
    try:
        spec = ScenarioFile.model_validate(raw)
    except ValidationError as exc:
        raise config_error(exc, "", ScenarioFile) from None
    hw = spec.hardware
    device = resolve_component(hw.device, reg.HARDWARE, "hardware.device", base_dir=base_dir)
    interconnect = None
    if hw.interconnect is not None:
        interconnect = resolve_component(hw.interconnect, reg.HARDWARE, "hardware.interconnect",
                                         default_kind="link", base_dir=base_dir)
    scheduler = resolve_component(spec.policies.scheduler, reg.SCHEDULERS, "policies.scheduler", base_dir=base_dir)
    cl = spec.cluster
    if cl.pools is None:
        pools = (Pool("main", "both", cl.replicas, cl.tensor_parallel, device, interconnect, scheduler,
                      cl.pipeline_parallel, cl.expert_parallel, cl.attention_data_parallel, cl.context_parallel),)
    else:
        pools = tuple(_resolve_pool(p, i, device, interconnect, scheduler, base_dir) for i, p in enumerate(cl.pools))
    disaggregated = any(p.role == "prefill" for p in pools)
    return ResolvedScenario(
        spec=spec,
        device=device,
        interconnect=interconnect,
        timing=resolve_component(hw.timing, reg.TIMING, "hardware.timing", base_dir=base_dir),
        model=resolve_component(spec.model, reg.MODELS, "model", default_kind="transformer",
                                base_dir=base_dir),
        workload=resolve_component(spec.workload, reg.WORKLOADS, "workload", base_dir=base_dir),
        router=resolve_component(cl.router, reg.ROUTERS, "cluster.router", base_dir=base_dir),
        scheduler=scheduler,
        source=name,
        base_dir=base_dir,
        pools=pools,
        decode_router=resolve_component(cl.decode_router, reg.ROUTERS, "cluster.decode_router", base_dir=base_dir)
        if disaggregated else None,
        kv_link=resolve_component(cl.kv_transfer.link, reg.HARDWARE, "cluster.kv_transfer.link", default_kind="link",
                                  base_dir=base_dir) if disaggregated else None,
        quantization=resolve_component(spec.policies.quantization, reg.QUANTIZATION, "policies.quantization",
                                       default_kind="scheme", base_dir=base_dir)
        if spec.policies.quantization is not None else None,
        kv_cache=resolve_component(spec.policies.kv_cache, reg.CACHE_POLICIES, "policies.kv_cache", base_dir=base_dir)
        if spec.policies.kv_cache is not None else None,
        framework=framework[0] if framework is not None else None,
    )


def _serving_type(raw: dict[str, Any], name: str) -> None:
    """A serving scenario has no ``type``; an empty file or another type is named as such."""
    where = "type" if name == "<dict>" else f"{name}: type"
    if not raw:
        raise ConfigError("the scenario is empty: a serving scenario needs hardware, model and workload "
                          "(other types: set `type` to mcu or study)", where=where)
    if "type" in raw:
        raise ConfigError(f"this command takes a serving scenario (no `type`), not type {raw['type']!r}; "
                          f"hwsim run and hwsim check take every type (mcu, study, diffusion)", where=where)


def _framework_defaults(raw: dict[str, Any]) -> tuple[FrameworkProfile, dict[str, Any]] | None:
    """The profile named by ``engine.framework`` and ``raw`` with the profile's defaults filled in
    where the scenario gives none: the scheduler block, engine memory settings, and the tile /
    roofline backend's settings (kernel times without host launch cost: the step timer adds the
    framework's launches and host time)."""
    engine = raw.get("engine")
    name = engine.get("framework") if isinstance(engine, dict) else None
    if name is None:
        return None
    if not isinstance(name, (str, dict)):
        raise ConfigError(f"must be a framework name such as vllm-0.12 or a block {{preset: vllm-0.12, ...}}, "
                          f"got {name!r}", where="engine.framework")
    cluster = raw.get("cluster")
    tp = cluster.get("tensor_parallel", 1) if isinstance(cluster, dict) else 1
    try:  # the degree as the cluster section reads it (settings the framework derives from the GPU count)
        tp = TypeAdapter(int).validate_python(tp)
    except ValidationError:
        tp = 1  # not a degree: the cluster section reports it
    prof = parse_framework(name, tp=tp)
    out = copy.deepcopy(raw)
    eng = out["engine"]
    eng.setdefault("gpu_memory_utilization", prof.gpu_memory_utilization)
    eng.setdefault("activation_reserve", format_quantity(prof.activation_reserve, "bytes"))
    eng.setdefault("memory_rule", prof.memory_rule)
    pol = out.setdefault("policies", {})
    if isinstance(pol, dict) and pol.get("scheduler") is None:
        pol["scheduler"] = copy.deepcopy(prof.scheduler)
    hw = out.get("hardware")
    if isinstance(hw, dict):
        timing = hw.get("timing") or {"kind": "tile"}
        if isinstance(timing, dict) and timing.get("kind", "tile") == "tile":
            hw["timing"] = {"kind": "tile", **prof.timing, "cuda_graphs": True, **timing}
        elif isinstance(timing, dict) and timing.get("kind") == "roofline":
            hw["timing"] = {"launch_overhead": False, **timing}
    return prof, out


def _resolve_pool(p: Any, i: int, device: Component, interconnect: Component | None, scheduler: Component,
                  base_dir: Path) -> Pool:
    where = f"cluster.pools[{i}]"
    dev = device if p.device is None else resolve_component(p.device, reg.HARDWARE, f"{where}.device",
                                                            base_dir=base_dir)
    link = interconnect if p.interconnect is None else resolve_component(
        p.interconnect, reg.HARDWARE, f"{where}.interconnect", default_kind="link", base_dir=base_dir)
    sched = scheduler if p.scheduler is None else resolve_component(p.scheduler, reg.SCHEDULERS,
                                                                   f"{where}.scheduler", base_dir=base_dir)
    return Pool(p.name, p.role, p.replicas, p.tensor_parallel, dev, link, sched, p.pipeline_parallel,
                p.expert_parallel, p.attention_data_parallel, p.context_parallel)
