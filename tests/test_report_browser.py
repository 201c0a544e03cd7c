"""The HTML reports rendered in a real headless Chromium: no JavaScript error, every plot drawn.

Each page comes from a small real run through the CLI (report.html of a single-replica, a
disaggregated and a KV-tiered run, capacity.html of a capacity search, the MCU report, and the
calibration page of a fit on the committed CPU capture). A screenshot of every page
is written to ``$HWSIM_SCREENSHOT_DIR`` (default: a temporary folder, printed) for a person to
look at. Skipped only where Debian's ``chromium`` package is not installed (.ci/run installs it).
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from simulator.cli import app
from simulator.dashboard import FIGURE_TITLES, TITLE_TIERS
from simulator.html_assets import plotly_js_name

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--disable-dev-shm-usage", "--hide-scrollbars")
WIDTH = 1400
MAX_HEIGHT = 16_000

pytestmark = pytest.mark.skipif(not CHROMIUM.exists(),
                                reason="/usr/bin/chromium is absent (apt-get install chromium chromium-driver)")

# For every plot div: is it rendered (plotly's class and its svg), and how many traces it drew.
PLOTS_JS = """
return Array.from(document.querySelectorAll('div.plotly-graph-div')).map(d => ({
  id: d.id,
  rendered: d.classList.contains('js-plotly-plot') && d.querySelector('svg.main-svg') !== null,
  traces: (d._fullData || []).length,
  width: d.getBoundingClientRect().width,
  height: d.getBoundingClientRect().height,
}));
"""


@pytest.fixture(scope="module")
def screenshot_dir(tmp_path_factory) -> Path:
    env = os.environ.get("HWSIM_SCREENSHOT_DIR")
    path = Path(env) if env else tmp_path_factory.mktemp("screenshots")
    path.mkdir(parents=True, exist_ok=True)
    print(f"\nreport screenshots: {path}")
    return path


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    opts.binary_location = str(CHROMIUM)
    for flag in FLAGS:
        opts.add_argument(flag)
    opts.add_argument(f"--user-data-dir={tmp_path_factory.mktemp('chromium-profile')}")
    opts.add_argument(f"--window-size={WIDTH},1000")
    opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=opts)
    driver.set_page_load_timeout(60)
    yield driver
    driver.quit()


@pytest.fixture(scope="module")
def pages(tmp_path_factory) -> dict[str, Path]:
    """The pages to render, each written by the CLI from a small real run."""
    out = tmp_path_factory.mktemp("reports")
    runner = CliRunner()
    calls = {
        "report_single": ["run", str(ROOT / "scenarios/quickstart.yaml"), "--set", "workload.num_requests=200",
                          "--out", str(out / "single"), "--quiet"],
        "report_disaggregated": ["run", str(ROOT / "scenarios/disaggregated.yaml"), "--set",
                                 "workload.num_requests=200", "--out", str(out / "disaggregated"), "--quiet"],
        "capacity": ["capacity", str(ROOT / "scenarios/quickstart.yaml"), "--slo-ttft", "200ms", "--slo-tpot",
                     "30ms", "--num-requests", "150", "--steps", "4", "--lo", "2/s", "--hi", "40/s",
                     "--out", str(out / "capacity")],
        "mcu": ["run", str(ROOT / "scenarios/mcu/mbv2_035_h743_patch.yaml"), "--out", str(out / "mcu"), "--quiet"],
        # KV swapped to host DRAM and SSD: the report gains its memory-tier section
        "report_kv_tiers": ["run", str(ROOT / "scenarios/quickstart.yaml"), "--set", "workload.num_requests=150",
                            "--set", "policies.kv_cache.kind=tiered", "--set", "policies.kv_cache.host_capacity=300MiB",
                            "--set", "engine.gpu_memory_utilization=0.23", "--set", "engine.max_model_len=4096",
                            "--set", "workload.prompt_tokens.max=3000", "--set", "workload.arrival.rate=20/s",
                            "--out", str(out / "tiers"), "--quiet"],
    }
    files = {"report_single": out / "single/report.html",
             "report_disaggregated": out / "disaggregated/report.html",
             "capacity": out / "capacity/capacity.html", "mcu": out / "mcu/report.html",
             "report_kv_tiers": out / "tiers/report.html"}
    # the calibration page of a fit on the committed CPU capture
    calls["calibration_fit"] = ["calibrate", "fit", str(ROOT / "tests/data/calibration/cpu-quick"), "--hardware",
                                "generic-x86-2core", "-o", str(out / "calibration/calibrated.yaml")]
    calls["calibration"] = ["calibrate", "report", str(out / "calibration/calibrated.fit.json"), "-o",
                            str(out / "calibration/calibration.html")]
    files["calibration"] = out / "calibration/calibration.html"
    for name, args in calls.items():
        res = runner.invoke(app, args)
        assert res.exit_code == 0, f"{name}: {res.output}"
        assert name not in files or files[name].is_file()
    return files


def render(driver, page: Path, shot: Path) -> tuple[list[dict], list[str]]:
    """Open ``page``, wait for every plot, save a full-page screenshot; return (plots, JS errors)."""
    from selenium.webdriver.support.ui import WebDriverWait

    driver.get_log("browser")  # drop what an earlier page logged
    driver.set_window_size(WIDTH, 1000)
    driver.get(page.as_uri())
    WebDriverWait(driver, 30).until(lambda d: d.execute_script("return document.readyState") == "complete")
    try:
        WebDriverWait(driver, 30).until(lambda d: all(p["rendered"] for p in d.execute_script(PLOTS_JS)))
    except Exception:  # noqa: BLE001 - the assertions below say which plot did not render
        pass
    for _ in range(4):  # grow the window to the whole page (plots resize with it), until it stops growing
        height = min(max(int(driver.execute_script("return document.documentElement.scrollHeight")), 600),
                     MAX_HEIGHT)
        if driver.execute_script("return window.innerHeight") >= height:
            break
        driver.set_window_size(WIDTH, height + 200)
        driver.execute_script("window.dispatchEvent(new Event('resize'));")
    WebDriverWait(driver, 10).until(lambda d: all(p["rendered"] for p in d.execute_script(PLOTS_JS)))
    plots = driver.execute_script(PLOTS_JS)
    driver.save_screenshot(str(shot))
    errors = [f"{e.get('level')}: {e.get('message')}" for e in driver.get_log("browser")
              if e.get("level") == "SEVERE"]
    return plots, errors


EXPECTED_PLOTS = {"report_single": 8, "report_disaggregated": 8, "report_kv_tiers": 9, "capacity": 1, "mcu": 2,
                  "calibration": 4}
HEADINGS = ["Configuration", "Summary", "Run", *FIGURE_TITLES]


@pytest.mark.parametrize("name", sorted(EXPECTED_PLOTS))
def test_each_report_renders_in_chromium_without_javascript_errors(name, pages, browser, screenshot_dir):
    page = pages[name]
    assert (page.parent / plotly_js_name()).is_file()  # the library beside the page, loaded offline
    shot = screenshot_dir / f"{name}.png"
    plots, errors = render(browser, page, shot)
    assert errors == [], f"{name}: JavaScript errors: {errors}"
    assert len(plots) == EXPECTED_PLOTS[name], plots
    for p in plots:
        assert p["rendered"], f"{name}: plot {p['id']} did not render"
        assert p["traces"] > 0, f"{name}: plot {p['id']} has no traces"
        assert p["width"] > 300 and p["height"] > 200, p
    assert shot.stat().st_size > 20_000  # a real picture, not a blank page
    if name.startswith("report_"):
        headings = browser.execute_script("return Array.from(document.querySelectorAll('h2')).map(h => h.textContent)")
        assert headings[:len(HEADINGS)] == HEADINGS
        if name == "report_kv_tiers":
            assert headings[-1] == TITLE_TIERS


def test_a_page_without_its_library_reports_a_javascript_error(pages, browser, tmp_path, screenshot_dir):
    """The check above can fail: the same page with plotly.js missing logs errors and draws nothing."""
    lonely = tmp_path / "report.html"
    shutil.copy(pages["capacity"], lonely)
    from selenium.webdriver.support.ui import WebDriverWait

    browser.get_log("browser")
    browser.get(lonely.as_uri())
    WebDriverWait(browser, 30).until(lambda d: d.execute_script("return document.readyState") == "complete")
    plots = browser.execute_script(PLOTS_JS)
    errors = [e for e in browser.get_log("browser") if e.get("level") == "SEVERE"]
    assert errors and not any(p["rendered"] for p in plots)
