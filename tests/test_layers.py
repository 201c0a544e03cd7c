"""The import rule of DESIGN.md section 1, checked by parsing every module's imports with `ast`.

    top     every simulator.* module not in bottom (cli, runner, serving, metrics, ...)
    middle  hw_models  workloads  policies          (independent of one another)
    bottom  simulator.core  simulator.config

Top may import middle and bottom; a middle package imports only bottom and itself; bottom imports
nothing of ours outside bottom. Every static import counts, including those inside functions and
under ``if TYPE_CHECKING:`` (the registry's lazy ``importlib.import_module("policies...")`` of
built-ins is data, not an import statement, and is not checked).
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("simulator", "hw_models", "workloads", "policies")
BOTTOM = ("simulator.core", "simulator.config")
MIDDLE = ("hw_models", "workloads", "policies")
MAX_LINES = 500
# Modules allowed over MAX_LINES, each with the reason. Keep this empty; split a module instead.
LONG_MODULE_ALLOW_LIST: dict[str, str] = {
    "simulator.calibration.capture": "the capture runner is one standalone file (numpy + stdlib only) that is "
                                        "copied alone to a bare GPU machine, so it cannot be split",
}


def module_files() -> dict[str, Path]:
    out = {}
    for pkg in PACKAGES:
        for path in sorted((ROOT / pkg).rglob("*.py")):
            parts = list(path.relative_to(ROOT).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            out[".".join(parts)] = path
    return out


MODULES = module_files()


def within(name: str, prefix: str) -> bool:
    return name == prefix or name.startswith(prefix + ".")


def layer(name: str) -> str:
    """'bottom', 'middle:<package>' or 'top' for one of our modules."""
    if any(within(name, b) for b in BOTTOM):
        return "bottom"
    for m in MIDDLE:
        if within(name, m):
            return f"middle:{m}"
    return "top"


def ours(name: str) -> bool:
    return any(within(name, p) for p in PACKAGES)


def imported_modules(module: str, path: Path) -> list[tuple[int, str]]:
    """(line, module) for every import in ``path``; ``from a import b`` gives ``a.b`` when that is a
    module of ours, else ``a``; relative imports are resolved against ``module``."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found: list[tuple[int, str]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.extend((node.lineno, alias.name) for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")
                anchor = anchor[:len(anchor) - (node.level - 1)]
                base = ".".join(anchor + ([base] if base else []))
            for alias in node.names:
                sub = f"{base}.{alias.name}"
                found.append((node.lineno, sub if sub in MODULES else base))
    return [(line, name) for line, name in found if ours(name)]


def allowed(src: str, dst: str) -> bool:
    s, d = layer(src), layer(dst)
    if s == "top":
        return True
    if s == "bottom":
        return d == "bottom"
    return d == "bottom" or d == s  # a middle package: bottom and itself only


def test_the_scan_finds_modules_of_every_layer():
    layers = {layer(m).split(":")[0] for m in MODULES}
    assert layers == {"top", "middle", "bottom"}
    assert {"simulator.core.registry", "simulator.config.loader", "simulator.cli",
            "policies.schedulers.vllm", "hw_models.gpu", "workloads.llm"} <= set(MODULES)


def test_the_classifier_follows_the_design():
    assert layer("simulator.core.errors") == "bottom" and layer("simulator.config") == "bottom"
    assert layer("simulator.serving.replica") == "top" and layer("simulator") == "top"
    assert layer("policies.api") == "middle:policies"
    assert not allowed("hw_models.gpu", "workloads.llm")
    assert not allowed("policies.schedulers.vllm", "hw_models.gpu")
    assert not allowed("simulator.core.registry", "policies.api")
    assert not allowed("workloads.llm", "simulator.runner")
    assert allowed("simulator.runner", "workloads.llm") and allowed("policies.api", "simulator.core.contracts")


def test_the_parser_sees_imports_inside_functions_relative_ones_and_from_imports(tmp_path):
    fake = tmp_path / "fake.py"
    fake.write_text(
        "import numpy\n"
        "from . import link\n"
        "def f():\n"
        "    from workloads import llm\n"
        "    import simulator.runner as r\n"
        "    from ..policies.api import BatchPlan\n",
        encoding="utf-8")
    found = imported_modules("hw_models.fake", fake)
    found = sorted(found)
    assert found == [(2, "hw_models.link"), (4, "workloads.llm"), (5, "simulator.runner"), (6, "policies.api")]
    assert [allowed("hw_models.fake", m) for _, m in found] == [True, False, False, False]


def test_every_import_follows_the_layer_rule():
    violations = []
    for module, path in MODULES.items():
        for line, target in imported_modules(module, path):
            if not allowed(module, target):
                violations.append(f"{path.relative_to(ROOT)}:{line}: {module} ({layer(module)}) imports "
                                  f"{target} ({layer(target)})")
    assert not violations, "layer rule broken (DESIGN.md section 1):\n" + "\n".join(violations)


def test_no_module_is_over_500_lines_unless_allow_listed():
    long = []
    for module, path in MODULES.items():
        n = len(path.read_text(encoding="utf-8").splitlines())
        if n > MAX_LINES and module not in LONG_MODULE_ALLOW_LIST:
            long.append(f"{path.relative_to(ROOT)}: {n} lines")
    assert not long, f"modules over {MAX_LINES} lines (split them, or allow-list with a reason):\n" + "\n".join(long)
    stale = [m for m in LONG_MODULE_ALLOW_LIST if m not in MODULES]
    assert not stale, f"allow-listed modules that no longer exist: {stale}"
