"""Session hooks. Under pytest-xdist with ``--dist loadfile`` (the README's ``pytest -q -n 2 --dist
loadfile``) every test of a file runs in one worker, so module fixtures and a file's memoised runs are
computed once as in a serial run; the files that share the reproduction measures' memoised capacity
searches and serving runs (simulator/reproduce*.py) are one unit, run in one worker together."""

from __future__ import annotations

import pytest

# test files that call the memoised measures of simulator/reproduce*.py (besides test_reproductions_*.py)
REPRODUCE = {"test_reproduce.py", "test_expert_offload.py", "test_fragmentation.py", "test_overlap.py",
             "test_weight_offload.py"}


def unit_of(nodeid: str) -> str:
    """The work unit of a test: its file, or "reproduce" for the files sharing the memoised measures."""
    path = nodeid.split("::", 1)[0]
    name = path.rsplit("/", 1)[-1]
    return "reproduce" if name in REPRODUCE or name.startswith("test_reproductions_") else path


@pytest.hookimpl(optionalhook=True, tryfirst=True)
def pytest_xdist_make_scheduler(config, log):
    if config.getvalue("dist") != "loadfile":
        return None
    from xdist.scheduler import LoadScopeScheduling

    class FileUnits(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            return unit_of(nodeid)

    return FileUnits(config, log)
