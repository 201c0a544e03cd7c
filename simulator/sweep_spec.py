"""A sweep file: a base scenario, the axes to vary, the objectives and constraints; its points.

    type: sweep                       # tells hwsim check (and editors) it is a sweep file
    name: gpu_and_replicas
    base: ../quickstart.yaml          # a scenario file (relative to this file) or an inline mapping
    set: {workload.num_requests: 500} # fixed overrides for every point (dotted path: value)
    grid:                             # every combination (or `random:` / `points:`, exactly one)
      hardware.device.preset: [H100-SXM, A100-80GB]
      cluster.replicas: [1, 2]
    objectives: [{metric: cost_usd_per_mtok, goal: min}, {metric: ttft_s.p90, goal: min}]
    constraints: ["slo_attainment >= 0.9", {metric: tpot_s.p90, op: "<=", value: 0.05}]
    capacity: {slo_ttft: 2s, slo_tpot: 100ms, attainment: 0.9, lo: 1/s, hi: 40/s, iterations: 6}

``random: {seed, count, axes: {PATH: {low, high, log, integer, unit} | {choices: [...]}}}`` draws
``count`` points from a seeded generator; ``points: [{PATH: value, ...}, ...]`` lists them.
An axis value is set at its dotted path as ``hwsim run --set PATH=VALUE`` would set it (a mapping
replaces the whole block; a new ``kind`` starts a new block, and ``kind`` overrides apply first, so
an axis may set a field of the block another axis switches to). Each point resolves to a full
scenario, identified by the SHA-256 of its resolved form (presets merged, every value explicit).
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from itertools import product
from pathlib import Path
from typing import Annotated, Any, Literal

import numpy as np
from pydantic import Field, ValidationError, WithJsonSchema, field_validator, model_validator

from simulator.config.errors import config_error
from simulator.config.loader import load_scenario, read_mapping
from simulator.config.quantities import PositivePerS, PositiveSeconds, StrictConfig
from simulator.core.errors import ConfigError, HwsimError
from simulator.runner import check_warmup

OPS = {">=": np.greater_equal, "<=": np.less_equal, ">": np.greater, "<": np.less, "==": np.equal}
_CONSTRAINT = re.compile(r"^\s*([A-Za-z_][\w.]*)\s*(>=|<=|==|>|<)\s*(\S+)\s*$")


class RandomAxis(StrictConfig):
    low: float | None = None
    high: float | None = None
    log: bool = Field(default=False, description="draw uniformly in log space (low > 0)")
    integer: bool = Field(default=False, description="round to an integer")
    unit: str = Field(default="", description="appended to the drawn number, e.g. '/s' for a rate")
    choices: list[Any] | None = Field(default=None, description="draw one of these instead of a number")

    @model_validator(mode="after")
    def _range(self) -> RandomAxis:
        if self.choices is not None:
            if not self.choices:
                raise ValueError("choices is empty")
            return self
        if self.low is None or self.high is None:
            raise ValueError("give low and high, or choices")
        if not self.low <= self.high:
            raise ValueError(f"low ({self.low:g}) must not exceed high ({self.high:g})")
        if self.log and self.low <= 0:
            raise ValueError("a log axis needs low > 0")
        return self


class RandomSpec(StrictConfig):
    seed: int = 0
    count: int = Field(gt=0, description="number of points drawn")
    axes: dict[str, RandomAxis]


class Constraint(StrictConfig):
    metric: str
    op: Literal[">=", "<=", ">", "<", "=="]
    value: float

    def holds(self, metrics: dict[str, Any]) -> bool:
        v = metrics.get(self.metric)
        if v is None or not isinstance(v, (int, float)) or v != v:  # missing or NaN: not met
            return False
        return bool(OPS[self.op](float(v), self.value))

    def label(self) -> str:
        return f"{self.metric} {self.op} {self.value:g}"


class Objective(StrictConfig):
    metric: str
    goal: Literal["min", "max"] = "min"


class CapacitySpec(StrictConfig):
    """Per-point capacity search (simulator/capacity.py) with these criteria."""

    slo_ttft: PositiveSeconds | None = None
    slo_tpot: PositiveSeconds | None = None
    attainment: float = Field(default=0.9, gt=0, le=1)
    p99_itl: PositiveSeconds | None = None
    p50_queue: PositiveSeconds | None = None
    lo: PositivePerS | None = None
    hi: PositivePerS | None = None
    rates: list[PositivePerS] | None = None
    iterations: int = Field(default=6, ge=1)

    @model_validator(mode="after")
    def _some_slo(self) -> CapacitySpec:
        if all(v is None for v in (self.slo_ttft, self.slo_tpot, self.p99_itl, self.p50_queue)):
            raise ValueError("give at least one SLO: slo_ttft, slo_tpot, p99_itl or p50_queue")
        return self


_OBJECTIVE_SCHEMA = {"anyOf": [
    {"type": "string", "pattern": r"^\s*(min|max)\s+\S+\s*$", "description": "'min METRIC' or 'max METRIC'"},
    {"type": "object", "additionalProperties": False, "required": ["metric"],
     "properties": {"metric": {"type": "string"}, "goal": {"enum": ["min", "max"]}}}]}
_CONSTRAINT_SCHEMA = {"anyOf": [
    {"type": "string", "pattern": _CONSTRAINT.pattern, "description": "'METRIC >= NUMBER' (or <=, >, <, ==)"},
    {"type": "object", "additionalProperties": False, "required": ["metric", "op", "value"],
     "properties": {"metric": {"type": "string"}, "op": {"enum": list(OPS)}, "value": {"type": "number"}}}]}


class SweepFile(StrictConfig):
    type: Literal["sweep"] | None = Field(default=None, description="sweep: tells a sweep file from a scenario")
    name: str = "sweep"
    description: str = ""
    base: str | dict[str, Any] = Field(description="scenario file (relative to the sweep file) or inline mapping")
    set: dict[str, Any] = Field(default_factory=dict, description="overrides applied to every point")
    grid: dict[str, list[Any]] | None = None
    random: RandomSpec | None = None
    points: list[dict[str, Any]] | None = None
    objectives: list[Annotated[Objective, WithJsonSchema(_OBJECTIVE_SCHEMA)]] = Field(default_factory=list)
    constraints: list[Annotated[Constraint, WithJsonSchema(_CONSTRAINT_SCHEMA)]] = Field(default_factory=list)
    capacity: CapacitySpec | None = None

    @field_validator("constraints", mode="before")
    @classmethod
    def _constraint_strings(cls, v: Any) -> Any:
        if not isinstance(v, list):
            return v
        out = []
        for item in v:
            if isinstance(item, str):
                m = _CONSTRAINT.match(item)
                if not m:
                    raise ValueError(f"constraint {item!r} must look like 'metric >= number'")
                try:
                    value = float(m.group(3))
                except ValueError:
                    raise ValueError(f"constraint {item!r}: {m.group(3)!r} is not a number") from None
                item = {"metric": m.group(1), "op": m.group(2), "value": value}
            out.append(item)
        return out

    @field_validator("objectives", mode="before")
    @classmethod
    def _objective_strings(cls, v: Any) -> Any:  # "min cost_usd_per_mtok"
        if not isinstance(v, list):
            return v
        out = []
        for item in v:
            if isinstance(item, str):
                goal, _, metric = item.strip().partition(" ")
                if goal not in ("min", "max") or not metric.strip():
                    raise ValueError(f"objective {item!r} must look like 'min METRIC' or 'max METRIC'")
                item = {"metric": metric.strip(), "goal": goal}
            out.append(item)
        return out

    @model_validator(mode="after")
    def _one_design(self) -> SweepFile:
        given = [k for k in ("grid", "random", "points") if getattr(self, k) is not None]
        if len(given) != 1:
            raise ValueError(f"give exactly one of grid, random, points (got {', '.join(given) or 'none'})")
        return self


@dataclass(frozen=True)
class Point:
    """One point of a sweep: its id, its axis values and the resolved scenario's hash."""

    point_id: int
    axes: dict[str, Any]
    overrides: tuple[str, ...]
    scenario_hash: str


@dataclass
class Sweep:
    """A validated sweep: the base (what load_scenario is called with) and every point."""

    spec: SweepFile
    source: str | dict[str, Any]  # a scenario path (absolute) or the inline mapping
    points: list[Point]
    axis_names: list[str]
    path: Path | None = None
    spec_hash: str = ""
    metric_names: list[str] = field(default_factory=list)

    def load(self, point: Point):
        return load_scenario(self.source if isinstance(self.source, dict) else Path(self.source), point.overrides)


def override(path: str, value: Any) -> str:
    """``--set`` text that sets ``value`` at ``path`` (JSON is YAML, so every type round-trips)."""
    return f"{path}={json.dumps(value)}"


def ordered(sets: list[str]) -> list[str]:
    """``kind`` overrides first: a new kind starts a new block, which must not drop the fields set
    beside it (``policies.scheduler.chunk_size`` with ``policies.scheduler.kind``)."""
    kinds = [s for s in sets if s.partition("=")[0].strip().endswith("kind")]
    return kinds + [s for s in sets if s not in kinds]


_FILE_DIGESTS: dict[tuple[str, int, int], str] = {}  # (path, size, mtime) -> SHA-256 of the bytes


def _file_digest(path: Path) -> str:
    st = path.stat()
    key = (str(path), st.st_size, st.st_mtime_ns)
    digest = _FILE_DIGESTS.get(key)
    if digest is None:
        h = hashlib.sha256()
        with path.open("rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                h.update(chunk)
        digest = _FILE_DIGESTS[key] = "sha256:" + h.hexdigest()
    return digest


def _by_content(block: Any, base_dir: Path) -> Any:
    """``block`` with each file ``path`` (a trace, a table) replaced by the SHA-256 of the file's bytes:
    the hash then follows what a point reads, not where the file lies."""
    if isinstance(block, list):
        return [_by_content(v, base_dir) for v in block]
    if not isinstance(block, dict):
        return block
    out = {k: _by_content(v, base_dir) for k, v in block.items()}
    for k, v in out.items():
        if (k == "path" or k.endswith("_path")) and isinstance(v, str) and v:
            f = Path(v) if Path(v).is_absolute() else Path(base_dir) / v
            if f.is_file():
                out[k] = _file_digest(f)
    return out


def scenario_hash(resolved) -> str:
    """SHA-256 of the resolved scenario (keys sorted; files by their content, not their path)."""
    dumped = _by_content(resolved.dump(), Path(getattr(resolved, "base_dir", ".")))
    text = json.dumps(dumped, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def read_sweep(source: str | Path | dict[str, Any]) -> tuple[SweepFile, Path | None]:
    if isinstance(source, dict):
        raw, path = source, None
    else:
        path = Path(source)
        raw = read_mapping(path, what="sweep")
    try:
        return SweepFile.model_validate(raw), path
    except ValidationError as exc:
        raise config_error(exc, "sweep", SweepFile) from None


def design(spec: SweepFile) -> Iterator[dict[str, Any]]:
    """The axis values of every point, in a stable order."""
    if spec.grid is not None:
        for name, values in spec.grid.items():
            if not values:
                raise ConfigError("the axis is empty: give at least one value", where=f"sweep.grid.{name}")
        names = list(spec.grid)
        for combo in product(*(spec.grid[n] for n in names)):
            yield dict(zip(names, combo))
    elif spec.random is not None:
        if not spec.random.axes:
            raise ConfigError("no axes to draw", where="sweep.random.axes")
        rng = np.random.default_rng(spec.random.seed)
        for _ in range(spec.random.count):
            yield {name: _draw(ax, rng) for name, ax in spec.random.axes.items()}
    else:
        if not spec.points:
            raise ConfigError("the list of points is empty", where="sweep.points")
        for i, p in enumerate(spec.points):
            if not p:
                raise ConfigError("the point sets nothing", where=f"sweep.points[{i}]")
            yield dict(p)


def _draw(ax: RandomAxis, rng: np.random.Generator) -> Any:
    if ax.choices is not None:
        return ax.choices[int(rng.integers(len(ax.choices)))]
    x = float(np.exp(rng.uniform(np.log(ax.low), np.log(ax.high))) if ax.log else rng.uniform(ax.low, ax.high))
    x = int(round(x)) if ax.integer else float(f"{x:.6g}")
    return f"{x}{ax.unit}" if ax.unit else x


def _has_path(tree: Any, path: str) -> bool:
    cur = tree
    for part in path.split("."):
        if not isinstance(cur, dict) or part not in cur:
            return False
        cur = cur[part]
    return True


def _axis_where(spec: SweepFile, name: str) -> str:
    kind = "grid" if spec.grid is not None else "random.axes" if spec.random is not None else "points"
    return f"sweep.{kind}.{name}"


def build_sweep(source: str | Path | dict[str, Any]) -> Sweep:
    """Read and validate a sweep and resolve every point; raise ConfigError naming the first problem."""
    spec, path = read_sweep(source)
    base_dir = path.resolve().parent if path is not None else Path.cwd()
    if isinstance(spec.base, str):
        base_path = Path(spec.base)
        base_path = base_path if base_path.is_absolute() else base_dir / base_path
        if not base_path.exists():
            raise ConfigError(f"base scenario {spec.base!r} not found (looked at {base_path})", where="sweep.base")
        raw_base = read_mapping(base_path)
        base: str | dict[str, Any] = str(base_path)
    else:
        raw_base = json.loads(json.dumps(spec.base))
        wl = raw_base.get("workload")
        if isinstance(wl, dict) and isinstance(wl.get("path"), str) and not Path(wl["path"]).is_absolute():
            wl["path"] = str(base_dir / wl["path"])  # an inline base's trace is relative to the sweep file
        base = raw_base
    fixed = ordered([override(k, v) for k, v in spec.set.items()])
    try:
        resolved_base = load_scenario(base if isinstance(base, dict) else Path(base), fixed)
    except HwsimError as exc:
        raise ConfigError(exc.message, where=f"sweep.base: {exc.where}" if exc.where else "sweep.base") from None
    dumped = resolved_base.dump()
    for name in spec.set:
        if not (_has_path(raw_base, name) or _has_path(dumped, name)):
            raise ConfigError(f"the path {name!r} does not exist in the base scenario", where=f"sweep.set.{name}")
    values = list(design(spec))
    axis_names: list[str] = []
    for v in values:
        axis_names += [n for n in v if n not in axis_names]
    # a path the base lacks may belong to a block an axis switches to (chunk_size beside kind: sarathi):
    # it must then exist in a point's resolved scenario, and a point that fails on it names the path
    unseen = {n for n in axis_names if not (_has_path(raw_base, n) or _has_path(dumped, n))}

    def no_path(name: str) -> ConfigError:
        return ConfigError(f"the axis path {name!r} does not exist in the base scenario", where=_axis_where(spec, name))

    points = []
    for i, axes in enumerate(values):
        sets = tuple(ordered(fixed + [override(k, v) for k, v in axes.items()]))
        try:
            resolved = load_scenario(base if isinstance(base, dict) else Path(base), sets)
            n = getattr(resolved.workload.config, "num_requests", None)
            if isinstance(n, int):
                check_warmup(resolved, n)
        except HwsimError as exc:
            bad = next((u for u in unseen if exc.where and (exc.where == u or exc.where.startswith(u + "."))), None)
            if bad is not None:
                raise no_path(bad) from None
            at = ", ".join(f"{k}={v}" for k, v in axes.items())
            raise ConfigError(exc.message, where=f"sweep point {i} ({at}): {exc.where}") from None
        if unseen:
            resolved_dump = resolved.dump()
            unseen = {u for u in unseen if not (u in axes and _has_path(resolved_dump, u))}
        points.append(Point(i, axes, sets, scenario_hash(resolved)))
    if unseen:
        raise no_path(sorted(unseen)[0])
    spec_text = json.dumps({"spec": spec.model_dump(mode="json"), "points": [p.scenario_hash for p in points]},
                           sort_keys=True)
    return Sweep(spec, base, points, axis_names, path, hashlib.sha256(spec_text.encode()).hexdigest())
