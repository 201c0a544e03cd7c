"""hwsim compare: the page of a sweep and of run directories rendered in a real headless Chromium:
every plot drawn, no JavaScript error, and the table sorts by the clicked column. Bad input to
hwsim compare is one line and exit 2."""

from __future__ import annotations

import math
import shutil
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from simulator.cli import app
from simulator.html_assets import plotly_js_name

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--disable-dev-shm-usage", "--hide-scrollbars")
needs_browser = pytest.mark.skipif(not CHROMIUM.exists(), reason="/usr/bin/chromium is absent "
                                                                 "(apt-get install chromium chromium-driver)")
PLOTS_JS = """
return Array.from(document.querySelectorAll('div.plotly-graph-div')).map(d => ({
  id: d.id,
  rendered: d.classList.contains('js-plotly-plot') && d.querySelector('svg.main-svg') !== null,
  traces: (d._fullData || []).length,
}));
"""
COLUMN_JS = """
var t = document.getElementById('compare-table');
var col = Array.from(t.tHead.rows[0].cells).findIndex(c => c.textContent === arguments[0]);
return Array.from(t.tBodies[0].rows).map(r => r.cells[col].dataset.v);
"""


@pytest.fixture(scope="module")
def pages(tmp_path_factory) -> dict[str, Path]:
    out = tmp_path_factory.mktemp("compare")
    sweep = {"name": "browser", "base": str(ROOT / "scenarios/quickstart.yaml"),
             "set": {"workload.num_requests": 80, "run.warmup_requests": 5},
             "grid": {"cluster.replicas": [1, 2], "workload.arrival.rate": ["4/s", "12/s", "30/s"]},
             "objectives": ["min cost_usd_per_mtok", "min ttft_s.p90"], "constraints": ["slo_attainment >= 0.95"]}
    (out / "sweep.yaml").write_text(yaml.safe_dump(sweep))
    runner = CliRunner()
    res = runner.invoke(app, ["sweep", str(out / "sweep.yaml"), "-o", str(out / "sweep"), "-q", "-j", "2"])
    assert res.exit_code == 0, res.output
    for name, rate in (("run_4", "4/s"), ("run_12", "12/s")):
        res = runner.invoke(app, ["run", str(ROOT / "scenarios/quickstart.yaml"), "-q", "--no-report", "-o",
                                  str(out / name), "--set", "workload.num_requests=80", "--set",
                                  "run.warmup_requests=5", "--set", f"workload.arrival.rate={rate}"])
        assert res.exit_code == 0, res.output
    res = runner.invoke(app, ["compare", str(out / "run_4"), str(out / "run_12"), "-o", str(out / "runs.html")])
    assert res.exit_code == 0 and "runs.html" in res.output, res.output
    return {"sweep": out / "sweep/compare.html", "runs": out / "runs.html"}


def test_the_sweep_writes_its_page_with_plotly_beside_it(pages):
    for page in pages.values():
        assert page.is_file() and (page.parent / plotly_js_name()).is_file()
    text = pages["sweep"].read_text()
    assert text.count('<tr') == 7 and "compare-pareto" in text  # a header and six points


@pytest.mark.parametrize("args, message", [
    (["compare"], "Missing argument"),
    (["compare", "/nonexistent/dir"], "/nonexistent/dir: not a directory"),
    (["compare", str(ROOT / "scenarios")], "neither a run directory (no summary.json) nor a sweep directory"),
])
def test_bad_compare_input_is_one_line_and_exit_2(args, message):
    res = CliRunner().invoke(app, args)
    assert res.exit_code == 2 and message in res.output, res.output
    if args[1:]:
        assert len(res.output.strip().splitlines()) == 1


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    opts.binary_location = str(CHROMIUM)
    for flag in FLAGS:
        opts.add_argument(flag)
    opts.add_argument(f"--user-data-dir={tmp_path_factory.mktemp('chromium-profile')}")
    opts.add_argument("--window-size=1400,1200")
    opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(str(CHROMEDRIVER) if CHROMEDRIVER.exists()
                                              else shutil.which("chromedriver")), options=opts)
    driver.set_page_load_timeout(60)
    yield driver
    driver.quit()


def _open(driver, page: Path) -> list[dict]:
    from selenium.webdriver.support.ui import WebDriverWait

    driver.get_log("browser")
    driver.get(page.as_uri())
    WebDriverWait(driver, 30).until(lambda d: d.execute_script("return document.readyState") == "complete")
    WebDriverWait(driver, 30).until(lambda d: all(p["rendered"] for p in d.execute_script(PLOTS_JS)))
    errors = [e["message"] for e in driver.get_log("browser") if e.get("level") == "SEVERE"]
    assert not errors, errors
    return driver.execute_script(PLOTS_JS)


def _numbers(values: list[str]) -> list[float]:
    return [float(v) if v not in ("", "nan") else math.nan for v in values]


@needs_browser
def test_the_sweep_page_draws_every_plot_and_its_table_sorts_by_a_clicked_column(browser, pages):
    from selenium.webdriver.common.by import By

    plots = _open(browser, pages["sweep"])
    assert [p["id"] for p in plots] == ["compare-pareto", "compare-slo", "compare-cdf"]
    assert all(p["rendered"] for p in plots), plots
    by_id = {p["id"]: p["traces"] for p in plots}
    assert by_id["compare-slo"] == 2  # one line per replica count, over the three rates
    assert by_id["compare-cdf"] == 12  # TTFT and TPOT of each of the six points
    assert by_id["compare-pareto"] >= 6
    before = browser.execute_script(COLUMN_JS, "configuration")
    header = next(th for th in browser.find_elements(By.CSS_SELECTOR, "#compare-table th")
                  if th.text == "p90 TTFT s")
    header.click()
    up = _numbers(browser.execute_script(COLUMN_JS, "p90 TTFT s"))
    assert up == sorted(up) and len(up) == 6
    header.click()
    down = _numbers(browser.execute_script(COLUMN_JS, "p90 TTFT s"))
    assert down == sorted(up, reverse=True)
    after = browser.execute_script(COLUMN_JS, "configuration")
    assert after != before and sorted(after) == sorted(before) and len(set(before)) == 6  # rows moved, none lost


@needs_browser
def test_the_page_of_two_runs_draws_every_plot(browser, pages):
    plots = _open(browser, pages["runs"])
    assert all(p["rendered"] and p["traces"] > 0 for p in plots), plots
    by_id = {p["id"]: p["traces"] for p in plots}
    assert by_id["compare-cdf"] == 4
    assert by_id["compare-slo"] == 1  # one configuration at two rates: one line of two points
    xs = browser.execute_script("return document.getElementById('compare-slo')._fullData[0].x")
    assert list(xs) == [4, 12]
