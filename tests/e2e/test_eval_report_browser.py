"""The evaluation report of a real, shortened `kinship eval`, opened in headless Chromium.

Skips with the reason where chromium, chromedriver, selenium or PyTorch are absent,
except in CI (CI=true), where their absence is a failure. The run: one test fold,
20 epochs, no augmented views (about 1-2 minutes on two CPU threads).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.browser import assert_clean_and_offline, chromium, need

EVAL_TIMEOUT = 900


@pytest.fixture(scope="module")
def evaluated(kinfacew_dir: Path, tmp_path_factory) -> tuple[dict, Path]:
    try:
        import torch  # noqa: F401
    except ImportError:
        need(False, "PyTorch is not installed (pip install 'kinship-search[train]')")
    out = tmp_path_factory.mktemp("eval-report")
    report = out / "eval.html"
    cmd = [sys.executable, "-m", "kinship.cli.main", "eval", "--dataset", str(kinfacew_dir), "--folds", "1"]
    cmd += ["--epochs", "20", "--augmented-views", "0", "--quiet", "--json", "--report", str(report)]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=EVAL_TIMEOUT)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout), report


@pytest.fixture(scope="module")
def driver():
    yield from chromium()


def test_eval_report_opens_cleanly_and_shows_the_runs_figures(evaluated, driver, tmp_path):
    result, report = evaluated
    assert report.exists()
    driver.get(report.as_uri())
    assert driver.title.startswith("Kinship model evaluation")

    assert_clean_and_offline(driver)

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
