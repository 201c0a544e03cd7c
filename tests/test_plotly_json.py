"""report.html's figures are plain plotly.js specs (simulator/plotly_json.py): the same pages as
plotly's own figure objects would write.

First principles: a subplot grid's layout is the text plotly's ``make_subplots`` gives, for a range
of grids (Hypothesis); every figure of real reports, read back through ``plotly.graph_objects``
(which validates and coerces every property), serialises to the same JSON values and the same
``<div>`` as ours; numpy arrays become plotly's typed-array specs.
"""

from __future__ import annotations

import base64
import datetime
import json
import re
from pathlib import Path

import numpy as np
import plotly.graph_objects as go
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from plotly.io.json import to_json_plotly
from plotly.subplots import make_subplots as plotly_subplots

from simulator import dashboard_figures as figs
from simulator import plotly_json as pj
from simulator.config.loader import load_scenario
from simulator.dashboard import _slo_limits
from simulator.dashboard_ops import op_phases, ops_figure
from simulator.runner import Simulation

ROOT = Path(__file__).resolve().parents[1]
DIV = re.compile(r'Plotly\.newPlot\(\s*"[^"]+",\s*(\[.*\]),\s*(\{.*\}),\s*(\{"displaylogo".*?\})\s*\)', re.S)


@settings(max_examples=25, deadline=None)
@given(rows=st.integers(1, 4), cols=st.integers(1, 3), shared=st.booleans(), titled=st.booleans(),
       hs=st.none() | st.floats(0.0, 0.3), vs=st.none() | st.floats(0.0, 0.3),
       heights=st.none() | st.lists(st.floats(0.1, 3.0), min_size=4, max_size=4))
def test_a_subplot_grid_is_the_text_plotly_writes(rows, cols, shared, titled, hs, vs, heights):
    titles = [f"panel {i}" if i % 3 else "" for i in range(rows * cols)] if titled else None
    kw = {"rows": rows, "cols": cols, "shared_xaxes": shared, "subplot_titles": titles,
          "horizontal_spacing": hs, "vertical_spacing": vs,
          "row_heights": heights[:rows] if heights else None}
    ours = pj.make_subplots(**kw)
    theirs = plotly_subplots(**kw)
    theirs.update_layout(template=go.layout.Template(figs.template()))
    ours.update_layout(template=figs.template())
    assert pj.to_json(ours.to_dict()["layout"]) == to_json_plotly(theirs.to_dict()["layout"], engine="json")
    for r in range(1, rows + 1):
        for c in range(1, cols + 1):
            ours.add_trace("scatter", x=[1, 2], y=[3, 4], row=r, col=c)
            theirs.add_trace(go.Scatter(x=[1, 2], y=[3, 4]), row=r, col=c)
    assert pj.to_json(ours.to_dict()["data"]) == to_json_plotly(theirs.to_dict()["data"], engine="json")


def test_updates_nest_objects_first_and_keep_existing_keys_in_place():
    ours = pj.make_subplots(rows=2, cols=1, subplot_titles=("a", "b"))
    theirs = plotly_subplots(rows=2, cols=1, subplot_titles=("a", "b"))
    for fig in (ours, theirs):
        fig.update_yaxes(title_text="ms", rangemode="tozero", row=2, col=1)
        fig.update_yaxes(range=[0, 1], tickformat=".0%", title_text="s", row=2, col=1)
        fig.update_layout(barmode="stack", legend={"orientation": "v", "x": 1.02, "y": 1},
                          margin={"l": 70, "r": 20, "t": 40, "b": 50})
        fig.update_layout(legend={"orientation": "h", "y": -0.15}, height=300)
        fig.update_xaxes(title_text="t")
        fig.add_annotation(text="none", showarrow=False, xref="paper", yref="paper", x=0.5, y=0.5)
        fig.add_annotation(x=1.0, y=0.5, text="SLO", font={"color": "#d62728"}, showarrow=False, row=1, col=1)
    ours.add_vline(x=2.0, line={"color": "red"}, row=1, col=1)  # no trace there: no line, as plotly
    ours.add_trace("scatter", x=np.array([1.0, 2.0]), y=[3, 4], row=2, col=1)
    theirs.add_trace(go.Scatter(x=np.array([1.0, 2.0]), y=[3, 4]), row=2, col=1)
    ours.add_vline(x=2.0, line={"color": "red", "dash": "dash", "width": 1.5}, row=2, col=1)
    theirs.add_vline(x=2.0, line={"color": "red", "dash": "dash", "width": 1.5}, row=2, col=1)
    theirs_layout = theirs.to_dict()["layout"]
    theirs_layout.pop("template")
    assert pj.to_json(ours.to_dict()["layout"]) == to_json_plotly(theirs_layout, engine="json")


def test_numpy_arrays_become_plotlys_typed_arrays():
    x = np.array([1.5, np.nan, 3.0])
    assert pj.to_json({"x": x}) == '{"x":{"dtype":"f8","bdata":"' + base64.b64encode(x.tobytes()).decode() + '"}}'
    assert json.loads(pj.to_json({"y": np.array([1, 300])}))["y"]["dtype"] == "i2"  # int64 narrowed
    assert json.loads(pj.to_json({"y": np.array([2**40])}))["y"] == [2**40]  # too wide: a list
    assert json.loads(pj.to_json({"z": np.zeros((2, 3), np.float32)}))["z"]["shape"] == "2, 3"
    assert pj.to_json({"range": np.array([0.0, 1.0]), "e": np.empty(0)}) == '{"range":[0.0,1.0],"e":[]}'
    assert pj.to_json({"v": [float("nan"), float("inf"), 1.0], "t": "a</b>"}) == \
        '{"v":[null,null,1.0],"t":"a\\u003c\\u002fb\\u003e"}'


def _run(name: str, *overrides: str):
    return Simulation(load_scenario(ROOT / "scenarios" / name, list(overrides))).run()


@pytest.fixture(scope="module")
def results():
    return {"single": _run("quickstart.yaml", "workload.num_requests=200"),
            "disagg": _run("disaggregated.yaml", "workload.num_requests=200")}


def _figures(result):
    cols = figs.batch_columns(result)
    return [figs.cdf_figure(result, _slo_limits(result.summary)), figs.throughput_figure(result, cols),
            figs.timeline_figure(result, cols), figs.busy_figure(result, cols), figs.replicas_figure(result, cols),
            figs.batches_figure(cols), ops_figure(op_phases(result, cols)), figs.lengths_figure(result),
            ops_figure([])]


@pytest.mark.parametrize("name", ["single", "disagg"])
def test_every_report_figure_is_what_plotly_writes_for_it(results, name):
    for i, fig in enumerate(_figures(results[name])):
        ours = pj.to_html(fig, f"fig-{i}", {"displaylogo": False})
        theirs = go.Figure(fig.to_dict()).to_html(full_html=False, include_plotlyjs=False, div_id=f"fig-{i}",
                                                  config={"displaylogo": False})
        a, b = DIV.search(ours), DIV.search(theirs)
        assert a is not None and b is not None
        assert DIV.sub("", ours) == DIV.sub("", theirs)  # the div and script around the figure
        for j in range(3):  # data, layout, config: the same values once plotly validated them
            assert json.loads(a.group(j + 1)) == json.loads(b.group(j + 1)), (i, j)


_BIG = np.arange(200_000, dtype=np.int64)
TRACE_VALUES = {  # trace properties of every kind of value a figure may hold
    "int64 narrowed": {"x": np.array([1, 2, 3]), "y": np.array([-1, 300, 70_000])},
    "bool": {"x": np.array([True, False]), "y": [1, 2]},
    "float32 with NaN and inf": {"x": np.array([1.5, np.nan, np.inf], np.float32), "y": [1, 2, 3]},
    "list with NaN, None, inf": {"x": [1.0, float("nan"), None, float("inf")], "y": [1, 2, 3, 4]},
    "empty": {"x": np.array([]), "y": np.array([], dtype=np.int64)},
    "long": {"x": _BIG, "y": _BIG.astype(float)},
    "uint64 too wide": {"x": np.array([2**40], np.uint64), "y": np.array([3], np.uint64)},
    "float16": {"x": np.array([1.5], np.float16), "y": [1]},
    "strided": {"x": np.arange(10.0)[::2], "y": np.arange(10)[::3]},
    "big-endian": {"x": np.array([1.0, 2.0], ">f8"), "y": np.array([1, 2], ">i8")},
    "strings": {"x": np.array(["a", "b"]), "y": [1, 2]},
    "datetime64": {"x": np.array(["2020-01-01", "2020-01-02T03:04"], dtype="datetime64[ns]"), "y": [1, 2]},
    "datetime64 days": {"x": np.array(["2020-01-01"], dtype="datetime64[D]"), "y": [1]},
    "datetimes": {"x": [datetime.datetime(2020, 1, 1, 12, 30), datetime.date(2020, 1, 2)], "y": [1, 2]},
    "numpy scalars": {"x": [np.float32(0.1), np.int64(3), np.bool_(True)], "y": [1, 2, 3]},
    "hover template": {"x": [1], "y": [2], "hovertemplate": "%{x}<br>%{y:.1%} </script>{}<extra></extra>",
                       "text": ["a&b"]},
    "colorscale": {"x": [1], "y": [2], "marker": {"color": [0.5], "colorscale": [(0, "red"), (1, "blue")]}},
    "2-d customdata": {"x": [1, 2], "y": [2, 3], "customdata": np.array([[1, 2], [3, 4]])},
    "list of arrays": {"x": [1, 2], "y": [2, 3], "customdata": [np.array([1, 2]), np.array([3, 4])]},
}


@pytest.mark.parametrize("case", list(TRACE_VALUES))
def test_a_trace_is_the_text_plotly_writes_for_it(case):
    props = TRACE_VALUES[case]
    ours = pj.Figure()
    ours.add_trace("scatter", **props)
    theirs = go.Figure(go.Scatter(**props))
    assert pj.to_json(ours.to_dict()["data"]) == to_json_plotly(theirs.to_dict()["data"], engine="json")


@pytest.mark.parametrize("call", [
    lambda f: f.add_trace("scatter", x=[1], y=[2], marker_color="red"),
    lambda f: f.update_layout(legend_title_text="runs"),
    lambda f: f.update_xaxes(tickfont_size=10),
    lambda f: f.add_annotation(text="a", font_size=12, x=0, y=0),
])
def test_a_magic_underscore_plotly_would_nest_is_refused_not_written_as_is(call):
    with pytest.raises(ValueError, match="not a plotly property"):  # plotly.js would ignore the key
        call(pj.Figure())


def test_property_names_with_an_underscore_are_plotlys():
    fig = pj.Figure()
    fig.update_layout(paper_bgcolor="white", plot_bgcolor="white", title_text="t")
    fig.add_trace("scatter", x=[1], y=[2], error_y={"array": [0.1]}, line_shape="hv")
    go.Figure(fig.to_dict())  # plotly validates every property name
    assert fig.layout["paper_bgcolor"] == "white" and fig.data[0]["line"] == {"shape": "hv"}


@pytest.mark.parametrize("size", [{"height": np.int64(400)}, {"height": 300, "width": 500},
                                  {"template": {"layout": {"height": 250, "width": 640}}}, {}])
def test_the_div_is_sized_as_plotly_sizes_it(size):
    fig = pj.Figure()
    fig.add_trace("scatter", x=[1, 2], y=[3, 4])
    fig.update_layout(**size)
    ours = pj.to_html(fig, "fig-0", {"displaylogo": False})
    theirs = go.Figure(fig.to_dict()).to_html(full_html=False, include_plotlyjs=False, div_id="fig-0",
                                              config={"displaylogo": False})
    assert DIV.sub("", ours) == DIV.sub("", theirs)
