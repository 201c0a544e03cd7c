"""Plotly figures as plain plotly.js specs (``data`` and ``layout`` dicts), without plotly's Python
figure objects.

report.html's figures are built here and serialised the way plotly's ``Figure.to_html`` does, so
a page is the same text as one built with ``plotly.graph_objects`` and ``make_subplots`` (the
tests compare the two for every figure of the report and for a range of subplot grids). Building
``graph_objects`` figures was most of the report's time (object model, property validation, deep
copies of the template); this module does only what plotly.js reads.

What is reproduced of plotly (plotly==7.1.0):
- ``plotly/_subplots.py make_subplots``: axis domains, anchors, shared x axes, subplot titles;
- the key order of ``to_dict``: a trace's (and an annotation's or shape's) properties sorted by
  name, then ``type``, then the ``xaxis``/``yaxis`` of its subplot; a layout update adds nested
  objects before plain values, each group in the order given;
- ``_plotly_utils/utils.py to_typed_array_spec``: numpy arrays as ``{"dtype", "bdata"}`` (int64
  narrowed to the smallest integer type that holds the values), other arrays as JSON lists;
- ``plotly/io/_json.py to_json_plotly`` (the ``json`` engine): compact separators, NaN and
  infinities as ``null``, ``<``, ``>`` and ``/`` escaped; ``plotly/io/_html.py to_html``: the div
  and script around it.
"""

from __future__ import annotations

import base64
import datetime
import json
from typing import Any

import numpy as np

# plotly's named colorscales used here (_plotly_utils/colors/sequential.py: Blues, from ColorBrewer)
COLORSCALES = {"Blues": ("rgb(247,251,255)", "rgb(222,235,247)", "rgb(198,219,239)", "rgb(158,202,225)",
                         "rgb(107,174,214)", "rgb(66,146,198)", "rgb(33,113,181)", "rgb(8,81,156)",
                         "rgb(8,48,107)")}

_SHORT_TYPES = {"int8": "i1", "uint8": "u1", "int16": "i2", "uint16": "u2", "int32": "i4", "uint32": "u4",
                "float32": "f4", "float64": "f8"}
_NOT_TYPED = ("geojson", "layer", "layers", "range")  # keys whose arrays plotly keeps as lists


def colorscale(name: str) -> list[list]:
    """A named colorscale as plotly's validator expands it: [[i / (n - 1), colour], ...]."""
    colours = COLORSCALES[name]
    d = len(colours) - 1
    return [[(1.0 * i) / (1.0 * d), c] for i, c in enumerate(colours)]


def _sorted(obj: Any) -> Any:
    """A plotly object built from a dict: its properties in name order, nested objects too."""
    if isinstance(obj, dict):
        return {k: _sorted(obj[k]) for k in sorted(obj)}
    return obj


# plotly property names with an underscore (plotly==7.1.0 graph objects: scatter, bar, heatmap, layout)
_UNDERSCORED = frozenset({"copy_ystyle", "error_x", "error_y", "paper_bgcolor", "plot_bgcolor"})


def _no_magic(props: dict) -> None:
    """Another "magic underscore" (``marker_color=``) would be written as a property of that name,
    which plotly.js ignores: refused, so a figure cannot silently lose a setting."""
    for key in props:
        if "_" in key and key not in _UNDERSCORED:
            raise ValueError(f"plotly_json: {key!r} is not a plotly property; write it nested "
                             f"({key.split('_')[0]}={{...}})")


def _magic(key: str, value: Any) -> tuple[str, Any]:
    """plotly's "magic underscore": ``title_text=v`` is ``title={"text": v}``."""
    if key == "title_text":
        return "title", {"text": value}
    if key == "title_font":
        return "title", {"font": value}
    _no_magic({key: value})
    return key, value


def update(target: dict, kwargs: dict) -> None:
    """Merge ``kwargs`` into ``target`` as plotly's ``update`` does: nested objects merged,
    objects before plain values (each group in the order given), new keys appended."""
    items = [_magic(k, v) for k, v in kwargs.items()]
    for key, value in [i for i in items if isinstance(i[1], dict)] + [i for i in items if not isinstance(i[1], dict)]:
        if key == "template":  # a template object is set whole, not merged
            target[key] = value
        elif isinstance(value, dict):
            if not isinstance(target.get(key), dict):
                target[key] = {}
            update(target[key], value)
        else:
            target[key] = value


class Figure:
    """``data`` (trace dicts) and ``layout``; the subplot grid when made by :func:`make_subplots`."""

    def __init__(self) -> None:
        self.data: list[dict] = []
        self.layout: dict[str, Any] = {"template": None}  # plotly puts the template first
        self.grid: list[list[tuple[str, str]]] | None = None  # (x, y) axis ids per row and column

    # -- traces -----------------------------------------------------------------------------
    def add_trace(self, trace_type: str, row: int | None = None, col: int | None = None, **props: Any) -> None:
        if "line_shape" in props:  # magic underscore, merged into ``line``
            props["line"] = {**props.get("line", {}), "shape": props.pop("line_shape")}
        _no_magic(props)
        trace = _sorted(props)
        trace["type"] = trace_type
        if row is not None and self.grid is not None:
            x, y = self.grid[row - 1][col - 1]
            trace["xaxis"], trace["yaxis"] = x, y
        self.data.append(trace)

    # -- layout -----------------------------------------------------------------------------
    def update_layout(self, **kwargs: Any) -> None:
        update(self.layout, kwargs)

    def _axes(self, letter: str, row: int | None, col: int | None) -> list[str]:
        if self.grid is None:
            return [f"{letter}axis"]
        if row is not None:
            ref = self.grid[row - 1][col - 1][0 if letter == "x" else 1]
            return [f"{letter}axis{ref[1:]}"]
        return [k for k in self.layout if k.startswith(f"{letter}axis")]

    def update_xaxes(self, row: int | None = None, col: int | None = None, **kwargs: Any) -> None:
        for name in self._axes("x", row, col):
            update(self.layout.setdefault(name, {}), kwargs)

    def update_yaxes(self, row: int | None = None, col: int | None = None, **kwargs: Any) -> None:
        for name in self._axes("y", row, col):
            update(self.layout.setdefault(name, {}), kwargs)

    def add_annotation(self, row: int | None = None, col: int | None = None, **props: Any) -> None:
        if row is not None and self.grid is not None:
            props["xref"], props["yref"] = self.grid[row - 1][col - 1]
        _no_magic(props)
        self.layout.setdefault("annotations", []).append(_sorted(props))

    def add_vline(self, x: float, line: dict, row: int, col: int) -> None:
        """A vertical line across one subplot (plotly's ``add_vline``: y in the axis domain; none
        on a subplot without a trace, as plotly's ``exclude_empty_subplots``)."""
        xref, yref = self.grid[row - 1][col - 1]
        if not any(t.get("xaxis") == xref and t.get("yaxis") == yref for t in self.data):
            return
        shape = {"line": line, "type": "line", "x0": x, "x1": x, "xref": xref, "y0": 0, "y1": 1,
                 "yref": f"{yref} domain"}
        self.layout.setdefault("shapes", []).append(_sorted(shape))

    @property
    def height(self) -> Any:
        return self.layout.get("height")

    def to_dict(self) -> dict[str, Any]:
        layout = {k: v for k, v in self.layout.items() if not (k == "template" and v is None)}
        return {"data": self.data, "layout": layout}


def make_subplots(rows: int = 1, cols: int = 1, shared_xaxes: bool = False, subplot_titles=None,
                  horizontal_spacing: float | None = None, vertical_spacing: float | None = None,
                  row_heights: list[float] | None = None) -> Figure:
    """plotly's ``make_subplots`` for a plain grid (start cell top-left, one x-y subplot per cell)."""
    if horizontal_spacing is None:
        horizontal_spacing = 0.2 / cols
    if vertical_spacing is None:
        vertical_spacing = 0.5 / rows if subplot_titles is not None else 0.3 / rows
    titles = list(subplot_titles) if subplot_titles is not None else [""] * rows * cols
    widths = [(1.0 - horizontal_spacing * (cols - 1)) / cols] * cols
    if row_heights is None:
        heights = [(1.0 - vertical_spacing * (rows - 1)) / rows] * rows
    else:
        cum_sum = float(sum(row_heights))
        heights = list(reversed([(1.0 - vertical_spacing * (rows - 1)) * (h / cum_sum) for h in row_heights]))
    grid = [[((sum(widths[:c]) + c * horizontal_spacing), (sum(heights[:r]) + r * vertical_spacing))
             for c in range(cols)] for r in range(rows)[::-1]]
    fig = Figure()
    fig.grid = [[("", "")] * cols for _ in range(rows)]
    domains: list[list[float]] = []
    n = 0
    for r in range(rows):
        for c in range(cols):
            x_domain = [grid[r][c][0], grid[r][c][0] + widths[c]]
            y_s, y_e = grid[r][c][1], grid[r][c][1] + heights[-1 - r]
            y_s = min(max(y_s, 0.0), 1.0) if -0.01 < y_s < 1.01 else y_s
            y_e = min(max(y_e, 0.0), 1.0) if -0.01 < y_e < 1.01 else y_e
            y_domain = [y_s, y_e]
            domains += [x_domain, y_domain]
            n += 1
            suffix = str(n) if n > 1 else ""
            fig.layout[f"xaxis{suffix}"] = {"anchor": f"y{suffix}", "domain": x_domain}
            fig.layout[f"yaxis{suffix}"] = {"anchor": f"x{suffix}", "domain": y_domain}
            fig.grid[r][c] = (f"x{suffix}", f"y{suffix}")
    if shared_xaxes:  # each column's axes match its bottom one, whose tick labels stay; the others' go
        for c in range(cols):
            first = None
            for r in range(rows - 1, -1, -1):
                x = fig.grid[r][c][0]
                if first is None:
                    first = x
                else:
                    axis = fig.layout[f"xaxis{x[1:]}"]
                    axis["matches"] = first
                    axis["showticklabels"] = False
    annotations = []
    for i, text in enumerate(titles):
        if text and i < len(domains) // 2:
            x_dom, y_dom = domains[2 * i], domains[2 * i + 1]
            annotations.append({"font": {"size": 16}, "showarrow": False, "text": text, "x": sum(x_dom) / 2.0,
                                "xanchor": "center", "xref": "paper", "y": y_dom[1], "yanchor": "bottom",
                                "yref": "paper"})
    if annotations:  # plotly leaves an empty list out
        fig.layout["annotations"] = annotations
    return fig


# ----------------------------------------------------------------------------- serialisation
def _typed(v: np.ndarray) -> Any:
    """plotly's typed-array spec of a numpy array (``to_typed_array_spec``)."""
    if v.size == 0:
        return []
    if v.dtype == np.int64:
        lo, hi = v.min(), v.max()
        for t in (np.int8, np.int16, np.int32):
            info = np.iinfo(t)
            if info.min <= lo and hi <= info.max:
                v = v.astype(t)
                break
        else:
            return v.tolist()
    elif v.dtype == np.uint64:
        hi = v.max()
        for t in (np.uint8, np.uint16, np.uint32):
            if hi <= np.iinfo(t).max:
                v = v.astype(t)
                break
        else:
            return v.tolist()
    short = _SHORT_TYPES.get(str(v.dtype))
    if short is None:
        return v.tolist()
    spec: dict[str, Any] = {"dtype": short, "bdata": base64.b64encode(np.ascontiguousarray(v)).decode("ascii")}
    if v.ndim > 1:
        spec["shape"] = str(v.shape)[1:-1]
    return spec


def _plain(obj: Any, key: str | None = None, in_list: bool = False) -> Any:
    """JSON-ready copy: numpy arrays as typed-array specs when they are an object's value (as lists
    under plotly's skipped keys and inside lists, which ``convert_to_base64`` leaves alone), numpy
    scalars as Python values, dates and times as ISO text (``PlotlyJSONEncoder``:
    ``encode_as_numpy`` writes datetime64 arrays with ``numpy.datetime_as_string``,
    ``encode_as_datetime`` calls ``isoformat``)."""
    if isinstance(obj, dict):
        return {k: _plain(v, k) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_plain(v, in_list=True) for v in obj]
    if isinstance(obj, np.ndarray):
        if obj.dtype.kind == "M":
            return np.datetime_as_string(obj).tolist()
        if in_list or key in _NOT_TYPED:
            return _plain(obj.tolist())
        return _typed(obj)
    if isinstance(obj, np.generic):
        return _plain(obj.item())
    if isinstance(obj, (datetime.date, datetime.time)):
        return obj.isoformat()
    return obj


def _strict(value: Any) -> Any:
    return None


def to_json(obj: Any) -> str:
    """plotly's ``to_json_plotly`` with the ``json`` engine."""
    text = json.dumps(_plain(obj), separators=(",", ":"))
    if "NaN" in text or "Infinity" in text:  # as PlotlyJSONEncoder: NaN and infinities become null
        text = json.dumps(json.loads(text, parse_constant=_strict), separators=(",", ":"))
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("/", "\\u002f")


_SCRIPT = """\
                if (document.getElementById("{id}")) {{\
                    Plotly.newPlot(\
                        "{id}",\
                        {data},\
                        {layout},\
                        {config}\
                    )\
                }}"""

_DIV = """\
<div style="height:{height}; width:{width};">\
        \
        \
            <div id="{id}" class="plotly-graph-div" \
style="height:100%; width:100%;"></div>\
            <script>\
                window.PLOTLYENV=window.PLOTLYENV || {{}};\
                {script};\
            </script>\
        </div>"""


def to_html(fig: Figure, div_id: str, config: dict[str, Any]) -> str:
    """The ``<div>`` that ``plotly.io.to_html(fig, full_html=False, include_plotlyjs=False)`` writes
    (``plotly/io/_html.py``: the same templates, no MathJax, no library)."""
    spec = fig.to_dict()
    config = dict(config)
    config.setdefault("responsive", True)
    layout = spec["layout"]
    template = (layout.get("template") or {}).get("layout", {})
    height = _css_size(layout.get("height", template.get("height", "100%")))
    width = _css_size(layout.get("width", template.get("width", "100%")))
    script = _SCRIPT.format(id=div_id, data=to_json(spec["data"]), layout=to_json(layout),
                            config=json.dumps(config))
    return _DIV.format(height=height, width=width, id=div_id, script=script).strip()


def _css_size(value: Any) -> str:
    """A div size as ``to_html`` writes it: a number (numpy's too) in px, anything else as is."""
    try:
        float(value)
    except (TypeError, ValueError):
        return str(value)
    return f"{value}px"
