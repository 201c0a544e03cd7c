"""The plotly.js library that every HTML page of ours loads, written once per output directory.

A page references ``plotly-<version>.min.js`` beside it with a relative ``<script src>``, so it
opens offline and a results directory copied alone still works; the library is not repeated
inside each page (it is about 4.7 MB). :func:`write_page` writes a page and makes sure the
library is beside it: an identical copy already there is kept; otherwise an identical copy in a
sibling directory is hard-linked (one copy on disk for a folder of runs), or the file is written.
"""

from __future__ import annotations

import os
from functools import cache
from pathlib import Path


@cache
def plotly_js() -> str:
    """The minified plotly.js bundled with the installed plotly package."""
    from plotly.offline import get_plotlyjs

    return get_plotlyjs()


@cache
def plotly_js_name() -> str:
    """File name of the library beside a page, versioned so that pages written by an older plotly
    keep their own copy."""
    from plotly.offline import get_plotlyjs_version

    return f"plotly-{get_plotlyjs_version()}.min.js"


def plotly_script_tag() -> str:
    """The ``<script>`` element that loads the library from beside the page."""
    return f'<script src="{plotly_js_name()}" charset="utf-8"></script>'


@cache
def _plotly_bytes() -> bytes:
    """The library's file as the plotly package ships it: the UTF-8 bytes of :func:`plotly_js`,
    read without decoding and re-encoding 4.7 MB (the same file ``get_plotlyjs`` reads)."""
    import pkgutil

    data = pkgutil.get_data("plotly", "package_data/plotly.min.js")
    return data if data is not None else plotly_js().encode("utf-8")


def _same(path: Path, data: bytes) -> bool:
    try:
        return path.stat().st_size == len(data) and path.read_bytes() == data
    except OSError:
        return False


def ensure_plotly_js(directory: Path) -> Path:
    """Make sure ``directory`` holds the library (see the module docstring); return its path."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    name = plotly_js_name()
    target = directory / name
    data = _plotly_bytes()
    if _same(target, data):
        return target
    tmp = directory / f".{name}.{os.getpid()}.tmp"
    tmp.unlink(missing_ok=True)
    here = directory.resolve()
    try:
        sibling = next((p for p in here.parent.glob(f"*/{name}") if p.parent != here and _same(p, data)), None)
        if sibling is None:
            raise OSError("no sibling copy")
        os.link(sibling, tmp)
    except OSError:  # no identical sibling, or no hard links here: write the file
        tmp.write_bytes(data)
    os.replace(tmp, target)  # atomic: a concurrent writer never leaves a half-written library
    return target


def write_page(path: Path, page: str) -> Path:
    """Write the HTML ``page`` to ``path`` and the library beside it; return ``path``."""
    path = Path(path)
    ensure_plotly_js(path.parent)
    with open(path, "w", encoding="utf-8", newline="\n") as fh:
        fh.write(page)
    return path
