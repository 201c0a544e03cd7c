"""A kind is looked up by importing the file named after it, not the whole package
(simulator/core/registry.py ``_import_named``); the entry is the one a full scan finds.

Checked in fresh interpreters (what is imported depends on what ran before): no kind is
registered by two files (so which file is imported first cannot change the entry) nor from outside
its registry's packages (so the fallback scan finds every kind the name does not); every kind
found lazily is the class the scan finds; a run's scenario imports none of the other plug-ins.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

PROBE = r"""
import json, sys
from simulator.core import registry as reg
seen, twice = {}, []
original = reg.Registry.register
def register(self, kind, *a, **k):
    deco = original(self, kind, *a, **k)
    def wrap(cls):
        key = (self.name, kind)
        if key in seen and seen[key] != cls.__module__:
            twice.append([self.name, kind, seen[key], cls.__module__])
        seen[key] = cls.__module__
        return deco(cls)
    return wrap
reg.Registry.register = register
mode = sys.argv[1]
if mode == "scan":
    kinds = {r.name: [k for k, e in sorted(r._entries.items()) if e.origin == "builtin"]
             for r in reg.ALL_REGISTRIES if r.kinds() is not None}
    # registered from outside the registry's own packages: a lookup's fallback scan would not find it
    foreign = [[r.name, k, e.origin] for r in reg.ALL_REGISTRIES for k, e in r._entries.items()
               if e.origin != "builtin"]
    print(json.dumps({"kinds": kinds, "twice": twice, "foreign": foreign}))
else:
    kinds = json.loads(sys.argv[2])
    got = {}
    for r in reg.ALL_REGISTRIES:
        for kind in kinds[r.name]:
            e = r.get(kind)
            got[f"{r.name}:{kind}"] = f"{e.cls.__module__}.{e.cls.__qualname__}"
    for r in reg.ALL_REGISTRIES:
        r.kinds()
    scanned = {f"{r.name}:{k}": f"{r._entries[k].cls.__module__}.{r._entries[k].cls.__qualname__}"
               for r in reg.ALL_REGISTRIES for k in kinds[r.name]}
    print(json.dumps({"lazy": got, "scanned": scanned, "twice": twice}))
"""


def _probe(*args: str) -> dict:
    out = subprocess.run([sys.executable, "-c", PROBE, *args], cwd=ROOT, capture_output=True, text=True,
                         check=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def test_no_kind_is_registered_by_two_files_and_a_lazy_lookup_finds_the_scanned_class():
    scan = _probe("scan")
    assert scan["twice"] == [] and scan["foreign"] == []
    assert sum(len(k) for k in scan["kinds"].values()) > 40  # every built-in of every registry
    lazy = _probe("lazy", json.dumps(scan["kinds"]))
    assert lazy["twice"] == []
    assert lazy["lazy"] == lazy["scanned"]


def test_loading_a_scenario_imports_only_its_own_plugins():
    code = ("import sys; from pathlib import Path; from simulator.config.loader import load_scenario; "
            "load_scenario(Path('benchmarks/splitwise_conv_10k.yaml'), []); "
            "print(' '.join(m for m in sys.modules if m.startswith('policies.schedulers.') and '._' not in m))")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["policies.schedulers.vllm"]


def test_a_private_module_is_not_imported_by_a_lookup_as_the_scan_skips_it(tmp_path, monkeypatch):
    """A kind named like a private file (``_helpers``) is unknown whether or not the package was
    scanned before: the lookup by name skips ``_`` files as the scan does."""
    import importlib

    from simulator.core.errors import UnknownKindError
    from simulator.core.registry import Registry

    pkg = tmp_path / "private_kinds_pkg"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    for file, kind, cls in (("_hidden.py", "_hidden", "Hidden"), ("shown.py", "shown", "Shown")):
        (pkg / file).write_text(f"from private_kinds_pkg import REG\n\n@REG.register({kind!r})\nclass {cls}: ...\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    package = importlib.import_module("private_kinds_pkg")
    outcomes = []
    for scan_first in (True, False):
        for name in [n for n in sys.modules if n.startswith("private_kinds_pkg.")]:
            del sys.modules[name]
        package.REG = Registry("thing", "hwsim.no-such-group", ("private_kinds_pkg",))
        if scan_first:
            assert package.REG.kinds() == ["shown"]
        try:
            package.REG.get("_hidden")
            outcomes.append("found")
        except UnknownKindError:
            outcomes.append("unknown")
        assert package.REG.get("shown").cls.__name__ == "Shown"
    imported = [n for n in sys.modules if n.startswith("private_kinds_pkg")]
    for name in imported:
        del sys.modules[name]
    assert outcomes == ["unknown", "unknown"]
    assert "private_kinds_pkg._hidden" not in imported
