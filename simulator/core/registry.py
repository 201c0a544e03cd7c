"""One plug-in mechanism for every extension point.

Each extension point has one :class:`Registry`. An implementation is one file named after its
``kind`` holding a strict pydantic config and the class::

    @register_scheduler("vllm", config=VllmConfig)
    class VllmScheduler: ...

Built-ins are found by scanning the registry's package (imported lazily, by name, the first time
a kind is looked up, so the bottom layer never imports the middle one statically); third-party
packages plug in through the entry-point group (``[project.entry-points."hwsim.schedulers"]``);
a scenario may also name ``module:Class`` directly. An unknown kind fails with a did-you-mean and
the list of known kinds.
"""

from __future__ import annotations

import difflib
import importlib
import importlib.metadata
import pkgutil
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from simulator.core.errors import ConfigError, UnknownKindError


@dataclass(frozen=True)
class Entry:
    kind: str
    cls: Any
    config: Any  # a pydantic model class (strict, frozen) or None
    presets: Path | None = None
    origin: str = "builtin"
    preset_reader: Callable[[Path], dict] | None = None  # reads one preset file into a mapping

    def preset_names(self) -> list[str]:
        if self.presets is None or not self.presets.is_dir():
            return []
        return sorted(p.stem for p in self.presets.iterdir() if p.suffix in (".yaml", ".yml", ".json"))


@dataclass
class Registry:
    name: str  # singular, e.g. "scheduler"
    group: str  # entry-point group, e.g. "hwsim.schedulers"
    packages: tuple[str, ...]  # packages scanned for built-ins, e.g. ("policies.schedulers",)
    _entries: dict[str, Entry] = field(default_factory=dict)
    _scanned: bool = False
    _entry_points_loaded: bool = False

    def register(self, kind: str, config: Any = None, presets: str | Path | None = None,
                 preset_reader: Callable[[Path], dict] | None = None) -> Callable:
        def deco(cls: Any) -> Any:
            preset_dir = None
            if presets is not None:
                preset_dir = Path(presets)
                if not preset_dir.is_absolute():
                    mod = importlib.import_module(cls.__module__)
                    preset_dir = Path(mod.__file__).resolve().parent / preset_dir
            origin = "builtin" if any(cls.__module__.startswith(p) for p in self.packages) else cls.__module__
            self._entries[kind] = Entry(kind, cls, config, preset_dir, origin, preset_reader)
            cls.__hwsim_kind__ = kind
            cls.__hwsim_registry__ = self.name
            return cls

        return deco

    # -- discovery -------------------------------------------------------------------------
    def _scan(self) -> None:
        if self._scanned:
            return
        self._scanned = True
        for pkg_name in self.packages:
            pkg = importlib.import_module(pkg_name)
            for info in pkgutil.iter_modules(pkg.__path__):
                if not info.name.startswith("_"):
                    importlib.import_module(f"{pkg_name}.{info.name}")

    def _import_named(self, kind: str) -> None:
        """Import only the built-in module named after ``kind`` (one file per kind), not the
        whole package: a run needs a handful of the package's modules. A kind registered in a
        file of another name is found by the scan that follows; no kind is registered by two
        files (tests/test_registry_lazy.py), so the entry found is the one a scan finds."""
        if not kind.isidentifier() or kind.startswith("_"):  # the scan skips private files too
            return
        for pkg_name in self.packages:
            name = f"{pkg_name}.{kind}"
            try:
                importlib.import_module(name)
            except ModuleNotFoundError as exc:
                if exc.name != name:  # the module exists but lacks something it imports
                    raise
            if kind in self._entries:
                return

    def _load_entry_points(self) -> None:
        if self._entry_points_loaded:
            return
        self._entry_points_loaded = True
        for ep in importlib.metadata.entry_points(group=self.group):
            if ep.name in self._entries:
                continue
            try:
                obj = ep.load()
            except Exception as exc:  # a broken third-party plug-in must not hide the others
                raise ConfigError(f"entry point {ep.name!r} ({ep.value}) failed to load: {exc}",
                                  where=f"plug-in group {self.group}") from None
            if ep.name not in self._entries:
                self._entries[ep.name] = Entry(ep.name, obj, getattr(obj, "Config", None), None, ep.value)

    def _from_path(self, spec: str, where: str | None) -> Entry:
        module_name, _, attr = spec.partition(":")
        try:
            module = importlib.import_module(module_name)
        except ImportError as exc:
            raise UnknownKindError(f"cannot import module {module_name!r} for {self.name} {spec!r}: {exc}",
                                   where=where) from None
        obj = getattr(module, attr, None)
        if obj is None:
            close = difflib.get_close_matches(attr, [n for n in dir(module) if not n.startswith("_")], n=1)
            hint = f"; did you mean '{module_name}:{close[0]}'?" if close else ""
            raise UnknownKindError(f"module {module_name!r} has no attribute {attr!r}{hint}", where=where)
        kind = getattr(obj, "__hwsim_kind__", None)
        if kind is not None and getattr(obj, "__hwsim_registry__", None) == self.name:
            return self._entries[kind]
        return Entry(spec, obj, getattr(obj, "Config", None), None, module_name)

    def get(self, kind: str, where: str | None = None) -> Entry:
        if not isinstance(kind, str) or not kind:
            raise UnknownKindError(f"{self.name} kind must be a non-empty string, got {kind!r}", where=where)
        if ":" in kind:
            return self._from_path(kind, where)
        if kind not in self._entries and not self._scanned:
            self._import_named(kind)
        if kind not in self._entries:
            self._scan()
        if kind not in self._entries:
            self._load_entry_points()
        entry = self._entries.get(kind)
        if entry is None:
            known = self.kinds()
            close = difflib.get_close_matches(kind, known, n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            raise UnknownKindError(f"unknown {self.name} kind {kind!r}{hint} known: {', '.join(known)}",
                                   where=where)
        return entry

    def kinds(self) -> list[str]:
        self._scan()
        self._load_entry_points()
        return sorted(self._entries)

    def entries(self) -> list[Entry]:
        return [self._entries[k] for k in self.kinds()]


SCHEDULERS = Registry("scheduler", "hwsim.schedulers", ("policies.schedulers",))
ROUTERS = Registry("router", "hwsim.routers", ("policies.routers",))
CACHE_POLICIES = Registry("cache policy", "hwsim.cache_policies", ("policies.caching",))
QUANTIZATION = Registry("quantization scheme", "hwsim.quantization", ("policies.quantization",))
WORKLOADS = Registry("workload source", "hwsim.workloads", ("workloads.sources",))
TIMING = Registry("timing backend", "hwsim.timing", ("hw_models.timing",))
HARDWARE = Registry("hardware", "hwsim.hardware", ("hw_models",))
MODELS = Registry("model", "hwsim.models", ("workloads.architectures",))

ALL_REGISTRIES = (HARDWARE, TIMING, MODELS, WORKLOADS, SCHEDULERS, ROUTERS, CACHE_POLICIES, QUANTIZATION)

register_scheduler = SCHEDULERS.register
register_router = ROUTERS.register
register_cache_policy = CACHE_POLICIES.register
register_quantization = QUANTIZATION.register
register_workload = WORKLOADS.register
register_timing = TIMING.register
register_hardware = HARDWARE.register
register_model = MODELS.register
