"""The case report opened in headless Chromium through Selenium.

The report is rendered from a hand-built FindRelatives answer whose relative photos
and candidate photos are real faces (insightface's sample images), cropped with the
report's own crop helper from boxes found by OpenCV's face detector. Skips with a
reason where chromium, chromedriver or selenium are missing, except in CI (CI=true).
"""

from __future__ import annotations

import base64
from pathlib import Path

import cv2
import numpy as np
import pytest

from kinship.reports.case import crop_face, render_case_report
from kinship.v1 import common_pb2
from tests.browser import assert_clean_and_offline, chromium
from tests.conftest import require_path, sample_image
from tests.unit.reports.test_case_report import build_request, build_response


@pytest.fixture(scope="module")
def driver():
    yield from chromium()


def real_faces(shared_dir: Path) -> list[bytes]:
    """JPEG crops of real faces: every face the embedder's YuNet detector finds in t1.jpg, then Tom Hanks."""
    from kinship.embedder.adapters.onnx_models import create_session, prepare_model
    from kinship.embedder.adapters.yunet import YuNetDetector

    model = require_path(shared_dir / "models" / "yunet_s_dynamic.onnx", "the YuNet face detector")
    detector = YuNetDetector(create_session(prepare_model(model.read_bytes())[0], intra_op_threads=1))
    crops = []
    for name in ("t1.jpg", "Tom_Hanks_54745.png"):
        image = sample_image(name)
        for found in detector.detect(cv2.imdecode(np.frombuffer(image, np.uint8), cv2.IMREAD_COLOR)):
            x0, y0, x1, y1 = found.box
            crops.append(crop_face(image, common_pb2.BoundingBox(x_min=x0, y_min=y0, x_max=x1, y_max=y1)))
    assert len(crops) >= 4, f"the detector found only {len(crops)} faces in the sample images"
    return crops


def test_case_report_in_headless_chromium(driver, shared_dir: Path, tmp_path: Path) -> None:
    faces = real_faces(shared_dir)
    response, request = build_response(), build_request()
    html = render_case_report(
        response,
        request,
        relative_crops={0: faces[0:2], 1: faces[2:3]},
        gallery_photos={"p-007": faces[3], "p-123": faces[-1]},
        case_id="CASE-BROWSER",
        software_version="test",
    )
    page = tmp_path / "case.html"
    page.write_text(html, encoding="utf-8")
    driver.get_log("performance")  # drop what came before this page
    driver.get(page.as_uri())

    images = driver.find_elements("css selector", "img")
    assert len(images) == 5
    for img in images:
        assert driver.execute_script("return arguments[0].complete && arguments[0].naturalWidth", img) > 0, (
            img.get_attribute("alt")
        )

    shown = driver.execute_script(
        "return [...document.querySelectorAll('tr.candidate')].map(r => ({"
        "person: r.dataset.personId, rank: r.dataset.rank,"
        "lr: r.querySelector('[data-field=log10-lr]').textContent,"
        "posterior: r.querySelector('[data-field=posterior]').textContent,"
        "strong: r.querySelector('[data-field=strong]').textContent}))"
    )
    expected = [
        {
            "person": c.person_id,
            "rank": str(c.rank),
            "lr": f"{c.log10_likelihood_ratio:+.2f}",
            "posterior": f"{c.posterior_probability:.3g}",
            "strong": "STRONG" if c.strong_candidate else "no",
        }
        for c in response.candidates
    ]
    assert shown == expected
    bars = driver.execute_script(
        "return [...document.querySelectorAll('svg.bar rect.value')].map(r => r.getBoundingClientRect().width)"
    )
    assert len(bars) == 6 and all(w > 0 for w in bars)  # every relative's bar is drawn, none is zero-width

    assert_clean_and_offline(driver)

    screenshot = tmp_path / "case-report.png"
    assert driver.save_screenshot(str(screenshot)) and screenshot.stat().st_size > 0
    print(f"case report screenshot: {screenshot}")

    pdf = driver.execute_cdp_cmd("Page.printToPDF", {"paperWidth": 8.27, "paperHeight": 11.69, "printBackground": True})
    data = base64.b64decode(pdf["data"])
    assert data.startswith(b"%PDF") and len(data) > 10_000
    (tmp_path / "case-report.pdf").write_bytes(data)
    print(f"case report PDF: {tmp_path / 'case-report.pdf'}")
