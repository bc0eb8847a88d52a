"""The case report of real FindRelatives answers, opened in headless Chromium.

`kinship serve all` runs as real processes on a fresh data directory (no trained
artifact: ACTIVE says none, so the ranker is uncalibrated and says so). The gallery holds the sample
gallery that `make run` enrols and ten KinFaceW-I sons (read from ../shared, never
copied into the repository). Two searches go through the real CLI with `--report`:
the sample query (an earlier photo of Tom Hanks, "self") with the sample gallery's
photos, and a KinFaceW-I father with his sons' photos. Each report must load every
image, log no console error, request nothing but data: and file: URLs, show every
candidate of the `--json` answer in rank order with one evidence bar per relative,
show the UNCALIBRATED notice and print to an A4 PDF. Skips with a reason where
chromium, chromedriver, selenium or ../shared are missing, except in CI (CI=true).
"""

from __future__ import annotations

import base64
import json
import re
from pathlib import Path

import cv2
import pytest

from kinship.cli.sample import ensure_sample_gallery
from kinship.reports.case import UNCALIBRATED_NOTICE, load_gallery_photos
from tests.browser import assert_clean_and_offline
from tests.e2e import test_case_report_browser as browser
from tests.e2e.test_suite_end_to_end import as_portrait, father_son_pairs, kinship_cli, serve_all
from tests.kinship_artifact import no_artifact

SONS = 10
A4_POINTS = (595.28, 841.89)  # 210 x 297 mm in PDF points (1/72 inch)

driver = browser.driver  # the module-scoped headless Chromium (skips, or fails in CI, without it)


@pytest.fixture(scope="module")
def suite(driver, kinfacew_dir: Path, tmp_path_factory):
    """The three services with the sample gallery and SONS KinFaceW-I sons enrolled."""
    data_dir = tmp_path_factory.mktemp("data")
    no_artifact(data_dir / "artifacts")  # ACTIVE says none: the uncalibrated page is what is checked here
    sons_dir = tmp_path_factory.mktemp("sons")
    pairs = father_son_pairs(kinfacew_dir, SONS)
    with serve_all(data_dir) as running:
        ensure_sample_gallery(data_dir, running["addresses"])
        for _father, son in pairs:
            assert cv2.imwrite(str(sons_dir / f"{son.stem}.jpg"), as_portrait(cv2.imread(str(son))))
        enrolled = kinship_cli(
            "enroll",
            str(sons_dir),
            "--sex",
            "m",
            "--birth-year",
            "1990",
            "--source",
            "kinfacew-i",
            "--json",
            env=running["env"],
        )
        assert enrolled.returncode == 0, enrolled.stderr
        assert len(json.loads(enrolled.stdout)["enrolled"]) == SONS
        yield {**running, "pairs": pairs, "sons_dir": sons_dir, "sample_dir": data_dir / "sample"}


def find_with_report(suite, relatives: list[str], photos: Path, report: Path, case_id: str) -> dict:
    """`kinship find --relative R... --report REPORT --gallery-photos PHOTOS --json`: the answer."""
    result = kinship_cli(
        "find",
        *(arg for relative in relatives for arg in ("--relative", relative)),
        "--report",
        str(report),
        "--gallery-photos",
        str(photos),
        "--case-id",
        case_id,
        "--json",
        env=suite["env"],
    )
    assert result.returncode == 0, result.stderr
    assert report.is_file() and report.stat().st_size > 0
    reply = json.loads(result.stdout)
    assert reply["candidates"], "the search found no candidate at all"
    return reply


def check_report_in_chromium(driver, report: Path, reply: dict, relatives: int, photos: Path, out: Path) -> None:
    driver.get_log("performance")  # drop what came before this page
    driver.get_log("browser")
    driver.get(report.as_uri())
    candidates = reply["candidates"]
    supplied = load_gallery_photos(photos)

    # Every image loads: the relative's face crop and each candidate's supplied photo.
    images = driver.find_elements("css selector", "img")
    with_photo = [c["person_id"] for c in candidates if c["person_id"] in supplied]
    assert with_photo, "no candidate of this search has a supplied photo"
    assert len(images) == relatives + len(with_photo), [i.get_attribute("alt") for i in images]
    for img in images:
        width = driver.execute_script("return arguments[0].complete && arguments[0].naturalWidth", img)
        assert width > 0, img.get_attribute("alt")

    # One row per candidate of the answer, in rank order, and one evidence bar per relative each.
    rows = driver.execute_script(
        "return [...document.querySelectorAll('tr.candidate')].map(r => ({person: r.dataset.personId,"
        " rank: r.dataset.rank, lr: r.querySelector('[data-field=log10-lr]').textContent}))"
    )
    assert rows == [
        {"person": c["person_id"], "rank": str(c["rank"]), "lr": f"{c['log10_likelihood_ratio']:+.2f}"}
        for c in candidates
    ]
    assert [c["rank"] for c in candidates] == list(range(1, len(candidates) + 1))
    bars = driver.execute_script(
        "return [...document.querySelectorAll('section.candidate-evidence')].map(s => ({rank: s.dataset.rank,"
        " bars: s.querySelectorAll('svg.bar').length, labels: [...s.querySelectorAll('tr.evidence')]"
        ".map(t => t.dataset.label)}))"
    )
    assert bars == [
        {
            "rank": str(c["rank"]),
            "bars": len(c["evidence"]),
            "labels": [e["label"] or e["relation"].removeprefix("RELATION_").lower() for e in c["evidence"]],
        }
        for c in candidates
    ]
    assert all(len(c["evidence"]) == relatives for c in candidates), "every relative gives evidence on every candidate"

    # Uncalibrated (no artifact in this data directory), and the page says so.
    assert reply["scoring"]["calibrated"] is False
    notice = driver.find_element("css selector", "p.notice.uncalibrated")
    assert notice.is_displayed() and notice.text == UNCALIBRATED_NOTICE

    assert_clean_and_offline(driver)

    screenshot = out.with_suffix(".png")
    assert driver.save_screenshot(str(screenshot)) and screenshot.stat().st_size > 0
    pdf = driver.execute_cdp_cmd("Page.printToPDF", {"paperWidth": 8.27, "paperHeight": 11.69, "printBackground": True})
    data = base64.b64decode(pdf["data"])
    assert data.startswith(b"%PDF") and len(data) > 10_000
    boxes = [(float(w), float(h)) for w, h in re.findall(rb"/MediaBox\s*\[\s*0 0 ([\d.]+) ([\d.]+)\s*\]", data)]
    assert boxes and all(abs(w - A4_POINTS[0]) < 2 and abs(h - A4_POINTS[1]) < 2 for w, h in boxes), boxes
    out.with_suffix(".pdf").write_bytes(data)
    print(f"case report {report}: screenshot {screenshot}, PDF {out.with_suffix('.pdf')}")


def test_sample_gallery_case_report(suite, driver, tmp_path: Path) -> None:
    query = suite["sample_dir"] / "queries" / "tom-hanks-mirrored.jpg"
    gallery = suite["sample_dir"] / "gallery"
    report = tmp_path / "A.html"
    reply = find_with_report(suite, [f"self={query}"], gallery, report, "CASE-SAMPLE")
    assert reply["candidates"][0]["person_id"] == "tom-hanks", "a mirrored photo of a gallery face must rank first"
    check_report_in_chromium(driver, report, reply, 1, gallery, tmp_path / "sample-case-report")


def test_kinfacew_family_case_report(suite, driver, tmp_path: Path) -> None:
    """A KinFaceW-I family: the father's photo and an earlier (mirrored, rescaled) photo of his enrolled son."""
    father_crop, son = suite["pairs"][3]
    father, earlier = tmp_path / "father.jpg", tmp_path / "son-earlier.jpg"
    assert cv2.imwrite(str(father), as_portrait(cv2.imread(str(father_crop))))
    assert cv2.imwrite(str(earlier), as_portrait(cv2.imread(str(son)), scale=2.5, mirror=True))
    report = tmp_path / "B.html"
    relatives = [f"father={father}", f"self={earlier}"]
    reply = find_with_report(suite, relatives, suite["sons_dir"], report, "CASE-KINFACEW")
    assert reply["candidates"][0]["person_id"] == son.stem, "the son, seen in the self photo, must rank first"
    check_report_in_chromium(driver, report, reply, 2, suite["sons_dir"], tmp_path / "kinfacew-case-report")
