"""The published-result reproductions (simulator/reproduce.py) run as tests: each row's hwsim figure
must lie in the band derived from the paper's figure, a row reported as missed must stay outside
it (strict xfail: it fails the day it starts passing), and docs/reproductions.md must be what
`hwsim reproduce --write-doc` renders from the same rows."""

from __future__ import annotations

from functools import cache

import pytest
from typer.testing import CliRunner

from simulator import reproduce_cli
from simulator.reproduce import ANALYTIC, EXPECTATIONS, INPUT_BOUND, MECHANISM, evaluate, get
from simulator.reproduce_measure import MEASURES


@cache
def outcome(name: str):
    return evaluate(get(name))


def _param(e):
    marks = [pytest.mark.xfail(strict=True, reason=e.missed)] if e.missed else []
    return pytest.param(e.name, marks=marks, id=e.name)


@pytest.mark.parametrize("name", [_param(e) for e in EXPECTATIONS])
def test_each_reproduction_lands_in_the_band_derived_from_its_papers_figure(name):
    o = outcome(name)
    lo, hi = o.expectation.bounds()
    assert lo <= o.value <= hi, f"{name}: hwsim {o.value:.4g} outside [{lo:.4g}, {hi:.4g}] ({o.detail})"


def test_every_band_contains_the_papers_own_figure_and_comes_from_it():
    for e in EXPECTATIONS:
        lo, hi = e.bounds()
        p_lo, p_hi = e.paper_range
        assert lo <= p_lo <= p_hi <= hi, e.name
        if e.band is None:  # a tolerance factor around the paper's figure, by class
            assert (lo, hi) == pytest.approx((p_lo / e.factor, p_hi * e.factor)), e.name


def test_every_row_has_a_known_metric_a_class_and_a_reason_when_missed():
    assert len({e.name for e in EXPECTATIONS}) == len(EXPECTATIONS)
    for e in EXPECTATIONS:
        assert e.measure in MEASURES, e.name
        assert e.cls in (MECHANISM, ANALYTIC, INPUT_BOUND), e.name
        assert e.claim and e.where and e.metric, e.name
        if e.cls == INPUT_BOUND:
            assert e.driver, f"{e.name}: an input-bound row must name the input that sets it"


@pytest.mark.parametrize("name", [e.name for e in EXPECTATIONS if e.cls == INPUT_BOUND and e.inputs])
def test_an_input_bound_figure_moves_with_its_first_driving_input(name):
    # an input-bound row depends on the input it names: 25 % more of it moves the figure by >= 2 %
    # (KIVI's group size is the weakest such lever: the per-group scale bits are a small part of an element)
    e = get(name)
    first = e.inputs[0]
    up = first.value * 1.25
    moved = evaluate(e, **{first.name: float(round(up)) if first.integer else up}).value
    assert abs(moved / outcome(name).value - 1.0) > 0.02, (name, moved, outcome(name).value)


def test_cachegen_gain_is_about_the_compression_ratio_input():
    o = outcome("cachegen_delay")
    assert o.value / get("cachegen_delay").params()["compression_ratio"] == pytest.approx(0.98, abs=0.02)


def test_docs_reproductions_md_is_generated_from_the_registry_and_not_stale():
    results = [outcome(e.name) for e in EXPECTATIONS]
    fresh = reproduce_cli.render_doc(results)
    committed = reproduce_cli.DOC.read_text(encoding="utf-8")
    assert reproduce_cli.SENSITIVITY_MARKER in committed
    assert reproduce_cli.head(committed) == reproduce_cli.head(fresh), \
        "docs/reproductions.md is stale: run `hwsim reproduce --write-doc`"


def test_hwsim_reproduce_prints_paper_and_hwsim_figures_and_names_the_reason_of_a_miss():
    from simulator.cli import app

    r = CliRunner().invoke(app, ["reproduce", "cachegen_delay", "quantmcu_bitops"])
    assert r.exit_code == 0, r.output
    assert "cachegen_delay" in r.output and "in band" in r.output
    assert "MISSED quantmcu_bitops: with 8-bit weights" in r.output
    bad = CliRunner().invoke(app, ["reproduce", "cachegen"])
    assert bad.exit_code == 2 and "did you mean cachegen_delay" in bad.output
