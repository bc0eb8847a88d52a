"""The evaluation report of a real, shortened `kinship eval`, opened in headless Chromium.

Skips with the reason where chromium, chromedriver, selenium or PyTorch are absent,
except in CI (CI=true), where their absence is a failure. The run: one test fold,
20 epochs, no augmented views (about 1-2 minutes on two CPU threads).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import IN_CI

CHROMEDRIVER = Path("/usr/bin/chromedriver")
EVAL_TIMEOUT = 900


def _need(ok: bool, what: str) -> None:
    if ok:
        return
    if IN_CI:
        pytest.fail(f"{what}; CI must have it", pytrace=False)
    pytest.skip(what)


def _chromium() -> str | None:
    return next((p for p in (shutil.which(n) for n in ("chromium", "chromium-browser")) if p), None)


@pytest.fixture(scope="module")
def evaluated(kinfacew_dir: Path, tmp_path_factory) -> tuple[dict, Path]:
    try:
        import torch  # noqa: F401
    except ImportError:
        _need(False, "PyTorch is not installed (pip install 'kinship-search[train]')")
    out = tmp_path_factory.mktemp("eval-report")
    report = out / "eval.html"
    cmd = [sys.executable, "-m", "kinship.cli.main", "eval", "--dataset", str(kinfacew_dir), "--folds", "1"]
    cmd += ["--epochs", "20", "--augmented-views", "0", "--quiet", "--json", "--report", str(report)]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=EVAL_TIMEOUT)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout), report


@pytest.fixture(scope="module")
def driver():
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
    except ImportError:
        _need(False, "selenium is not installed (pip install selenium)")
    chromium = _chromium()
    _need(chromium is not None, "chromium is not installed (apt-get install chromium)")
    _need(CHROMEDRIVER.exists(), f"chromedriver not found at {CHROMEDRIVER} (apt-get install chromium-driver)")
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--window-size=1200,1600"):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL", "performance": "ALL"})
    browser = webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=options)
    try:
        yield browser
    finally:
        browser.quit()


def test_eval_report_opens_cleanly_and_shows_the_runs_figures(evaluated, driver, tmp_path):
    result, report = evaluated
    assert report.exists()
    driver.get(report.as_uri())
    assert driver.title.startswith("Kinship model evaluation")

    severe = [e for e in driver.get_log("browser") if e.get("level") == "SEVERE"]
    assert not severe, severe
    requested = []
    for entry in driver.get_log("performance"):
        message = json.loads(entry["message"])["message"]
        if message.get("method") == "Network.requestWillBeSent":
            requested.append(message["params"]["request"]["url"])
    assert requested, "the performance log saw no request at all (not even the page)"
    assert all(url.startswith(("data:", "file:")) for url in requested), requested

    sizes = driver.execute_script(
        "return Array.from(document.querySelectorAll('svg')).map(s => {"
        "const r = s.getBoundingClientRect(); return [r.width, r.height,"
        " s.querySelector('title') ? s.querySelector('title').textContent : ''];});"
    )
    assert len(sizes) == 31, len(sizes)
    for width, height, title in sizes:
        assert width > 0 and height > 0 and title, (width, height, title)

    shown = driver.execute_script(
        "const o = {}; document.querySelectorAll('#summary td[data-key]').forEach(td => {"
        "o[td.dataset.key] = [td.dataset.value, td.textContent.trim()];}); return o;"
    )
    expected = {
        "retrieval.map": result["retrieval"]["map"],
        "baseline.retrieval.map": result["baseline"]["retrieval"]["map"],
    }
    for code in result["verification"]:
        expected[f"verification.{code}.auc"] = result["verification"][code]["auc"]
        expected[f"baseline.verification.{code}.auc"] = result["baseline"]["verification"][code]["auc"]
    for key, value in expected.items():
        raw, text = shown[key]
        assert float(raw) == value and text == f"{value:.3f}", (key, raw, text, value)
    # the same AUC, as shown text, sits in each relation's ROC table too
    body = driver.find_element("tag name", "body").text
    assert f"{result['verification']['mean']['auc']:.3f}" in body
    assert "never an identification" in body

    shot = Path(os.environ.get("KINSHIP_TEST_ARTIFACTS", tmp_path)) / "eval-report.png"
    shot.parent.mkdir(parents=True, exist_ok=True)
    driver.set_window_size(1200, int(driver.execute_script("return document.body.scrollHeight")) or 1600)
    assert driver.save_screenshot(str(shot)) and shot.stat().st_size > 10_000
