"""The case report rendered from a hand-built FindRelatives answer, read back with html.parser."""

from __future__ import annotations

from html.parser import HTMLParser
from pathlib import Path

import cv2
import numpy as np
import pytest

from kinship.domain.verbal import verbal_scale
from kinship.reports.case import (
    UNCALIBRATED_NOTICE,
    crop_face,
    load_gallery_photos,
    relation_name,
    render_case_report,
)
from kinship.reports.page import LEAD_NOT_IDENTIFICATION
from kinship.v1 import common_pb2, ranker_pb2

HOSTILE = '<script>alert("x")</script>'


def _jpeg(width: int = 80, height: int = 60) -> bytes:
    pixels = np.zeros((height, width, 3), np.uint8)
    pixels[:, : width // 2] = (0, 0, 255)
    return cv2.imencode(".jpg", pixels)[1].tobytes()


def build_request(hostile_label: str = "father") -> ranker_pb2.FindRelativesRequest:
    father = ranker_pb2.Relative(
        label=hostile_label,
        relation=common_pb2.RELATION_FATHER,
        photos=[ranker_pb2.Photo(image=b"x", capture_year=1985), ranker_pb2.Photo(image=b"y", age_at_photo=40)],
    )
    sister = ranker_pb2.Relative(
        label="sister-anna", relation=common_pb2.RELATION_SISTER, photos=[ranker_pb2.Photo(image=b"z")]
    )
    missing = ranker_pb2.MissingPerson(sex=common_pb2.SEX_MALE, regions=["north", "coast"])
    missing.birth_year.min = 1990
    missing.birth_year.max = 1994
    return ranker_pb2.FindRelativesRequest(relatives=[father, sister], missing_person=missing, top_n=3)


def build_response(
    *, calibrated: bool = True, strong: bool = True, label: str = "father"
) -> ranker_pb2.FindRelativesResponse:
    rows = [  # person, fused, posterior, strong, (father LR, sister LR)
        ("p-007", 3.41, 0.716, strong, (2.9, 0.51)),
        ("p-123", 1.25, 0.0175, False, (1.75, -0.5)),
        ("p-042", -0.80, 0.000158, False, (-1.2, 0.4)),
    ]
    scoring = ranker_pb2.ScoringInfo(
        calibrated=calibrated,
        artifact_id="art-2024-kfw" if calibrated else "",
        calibration_id="cal-9f3e" if calibrated else "",
        identity_model_id="sface-int8",
        kinship_model_id="kin-head-1" if calibrated else "",
        fusion_method="weighted-sum-log10-lr",
        prior_probability=0.001,
        strong_candidate_log10_lr=3.0,
    )
    response = ranker_pb2.FindRelativesResponse(
        model_id="sface-int8", fusion_method="weighted-sum-log10-lr", candidates_considered=57, scoring=scoring
    )
    for rank, (pid, fused, post, is_strong, (f_lr, s_lr)) in enumerate(rows, start=1):
        cand = response.candidates.add(
            person_id=pid,
            rank=rank,
            score=fused,
            log10_likelihood_ratio=fused if calibrated else 0.0,
            posterior_probability=post if calibrated else 0.001,
            strong_candidate=is_strong and calibrated,
        )
        cand.attributes.birth_year = 1991
        cand.attributes.region = "north"
        for lab, rel, lr in (
            (label, common_pb2.RELATION_FATHER, f_lr),
            ("sister-anna", common_pb2.RELATION_SISTER, s_lr),
        ):
            cand.evidence.add(
                label=lab,
                relation=rel,
                similarity=0.3,
                log10_likelihood_ratio=lr if calibrated else 0.0,
                fusion_weight=1.0,
                retrieved=True,
                calibration="father-son",
            )
    response.strong_candidates = sum(c.strong_candidate for c in response.candidates)
    return response


class Collector(HTMLParser):
    """Tags with their attributes, text per data-field cell, and the whole visible text."""

    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict]] = []
        self.text: list[str] = []
        self.rows: list[dict] = []  # candidate rows: data-rank, data-person-id and each data-field's text
        self.evidence: list[dict] = []  # evidence rows: rank (section), label, bar, number
        self._field: str | None = None
        self._section_rank: str | None = None
        self._in_script = False

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        self.tags.append((tag, a))
        cls = a.get("class") or ""
        if tag == "script":
            self._in_script = True
        if tag == "tr" and cls == "candidate":
            self.rows.append({"rank": a["data-rank"], "person": a["data-person-id"]})
        if tag == "section" and "candidate-evidence" in cls:
            self._section_rank = a["data-rank"]
        if tag == "tr" and cls == "evidence":
            self.evidence.append({"rank": self._section_rank, "label": a["data-label"]})
        if tag == "svg" and "bar" in cls and self.evidence:
            self.evidence[-1]["bar"] = a
        if tag == "rect" and a.get("class") == "value" and self.evidence:
            self.evidence[-1]["rect"] = a
        if tag == "td" and "data-field" in a:
            self._field = a["data-field"]

    def handle_endtag(self, tag):
        if tag == "td":
            self._field = None
        if tag == "script":
            self._in_script = False

    def handle_data(self, data):
        self.text.append(data)
        if self._field is None:
            return
        if self.evidence and self._section_rank is not None and self._field == "log10-lr":
            self.evidence[-1]["number"] = data.strip()
        elif self.rows:
            self.rows[-1][self._field] = self.rows[-1].get(self._field, "") + data.strip()


def parse(html: str) -> Collector:
    collector = Collector()
    collector.feed(html)
    collector.close()
    return collector


def render(response=None, request=None, **kwargs) -> str:
    return render_case_report(
        response or build_response(),
        request or build_request(),
        relative_crops=kwargs.pop("relative_crops", {0: [_jpeg(), _jpeg()], 1: [_jpeg()]}),
        gallery_photos=kwargs.pop("gallery_photos", {"p-007": _jpeg(), "p-042": _jpeg()}),
        case_id=kwargs.pop("case_id", "CASE-17"),
        software_version="9.9.9-test",
    )


def test_every_candidate_in_rank_order_with_its_numbers() -> None:
    response = build_response()
    page = parse(render(response))
    assert [r["person"] for r in page.rows] == ["p-007", "p-123", "p-042"]
    assert [r["rank"] for r in page.rows] == ["1", "2", "3"]
    for row, cand in zip(page.rows, response.candidates, strict=True):
        assert row["log10-lr"] == f"{cand.log10_likelihood_ratio:+.2f}"
        assert row["posterior"] == f"{cand.posterior_probability:.3g}"
        assert row["verbal"] == verbal_scale(cand.log10_likelihood_ratio)
        assert row["strong"] == ("STRONG" if cand.strong_candidate else "no")
    assert page.rows[0]["log10-lr"] == "+3.41" and page.rows[2]["verbal"] == "supports not kin"


def test_candidates_are_shown_by_rank_even_when_the_response_lists_them_out_of_order() -> None:
    response = build_response()
    shuffled = ranker_pb2.FindRelativesResponse()
    shuffled.CopyFrom(response)
    del shuffled.candidates[:]
    shuffled.candidates.extend(reversed(response.candidates))
    assert [r["person"] for r in parse(render(shuffled)).rows] == ["p-007", "p-123", "p-042"]


def test_one_signed_bar_per_relative_with_its_number() -> None:
    response = build_response()
    page = parse(render(response))
    assert len(page.evidence) == 6
    for ev, (cand, e) in zip(page.evidence, [(c, e) for c in response.candidates for e in c.evidence], strict=True):
        assert ev["rank"] == str(cand.rank) and ev["label"] == e.label
        assert ev["number"] == f"{e.log10_likelihood_ratio:+.2f}"
        assert float(ev["bar"]["data-log10-lr"]) == pytest.approx(e.log10_likelihood_ratio, abs=1e-4)
        centre = int(ev["bar"]["width"]) / 2
        x, width = float(ev["rect"]["x"]), float(ev["rect"]["width"])
        if e.log10_likelihood_ratio > 0:
            assert ev["bar"]["data-direction"] == "right" and x == centre and width > 0
        else:
            assert ev["bar"]["data-direction"] == "left" and x + width == pytest.approx(centre, abs=0.1) and width > 0
        assert f"log10 LR {e.log10_likelihood_ratio:+.2f}" in ev["bar"]["aria-label"]
    # Longer evidence, longer bar: the father's +2.90 outgrows the sister's +0.51.
    assert float(page.evidence[0]["rect"]["width"]) > float(page.evidence[1]["rect"]["width"])


def test_nothing_is_fetched_from_anywhere() -> None:
    page = parse(render())
    for tag, attrs in page.tags:
        for name in ("src", "href"):
            value = attrs.get(name) or ""
            assert not value.lower().startswith(("http:", "https:", "//")), (tag, name, value[:60])
        assert not (tag == "script" and "src" in attrs)
        assert tag != "link"
    images = [a for t, a in page.tags if t == "img"]
    assert len(images) == 5  # three relative crops, two candidate photos
    assert all(a["src"].startswith("data:image/jpeg;base64,") and a["alt"] for a in images)


def test_strong_and_no_strong_lines() -> None:
    strong = "".join(parse(render(build_response(strong=True))).text)
    assert "1 strong candidate(s)" in strong and "No strong candidate" not in strong
    none = "".join(parse(render(build_response(strong=False))).text)
    assert "No strong candidate: no one reaches log10 LR 3" in none


def test_uncalibrated_says_so_prominently_and_calibrated_does_not() -> None:
    html = render(build_response(calibrated=False))
    assert UNCALIBRATED_NOTICE in html
    assert html.index("UNCALIBRATED") < html.index('id="candidates"')
    assert "UNCALIBRATED" not in render(build_response(calibrated=True))


def test_lead_statement_at_top_and_foot_with_ids() -> None:
    html = render()
    assert html.count(LEAD_NOT_IDENTIFICATION) >= 2
    assert html.index(LEAD_NOT_IDENTIFICATION) < html.index('id="question"')
    footer = html[html.index("<footer>") :]
    for needle in ("art-2024-kfw", "cal-9f3e", "sface-int8", "kin-head-1", "weighted-sum-log10-lr", "9.9.9-test"):
        assert needle in footer
    assert LEAD_NOT_IDENTIFICATION in footer


def test_question_and_family_are_shown() -> None:
    text = " ".join(parse(render()).text)
    for needle in ("CASE-17", "male", "1990 to 1994", "north, coast", "sister-anna", "taken 1985", "age 40"):
        assert needle in text


def test_tables_have_captions_and_scoped_headers() -> None:
    page = parse(render())
    tables = sum(1 for t, _ in page.tags if t == "table")
    assert tables == sum(1 for t, _ in page.tags if t == "caption") == 6  # question, family, candidates, 3 evidence
    headers = [a for t, a in page.tags if t == "th"]
    assert headers and all(a.get("scope") in ("row", "col") for a in headers)
    assert [t for t, _ in page.tags if t in ("h1", "h2")][:2] == ["h1", "h2"]


def test_hostile_strings_are_escaped() -> None:
    html = render(build_response(label=HOSTILE), build_request(hostile_label=HOSTILE), case_id=HOSTILE)
    page = parse(html)
    assert not any(t == "script" for t, _ in page.tags)
    assert "&lt;script&gt;" in html and HOSTILE not in html
    assert HOSTILE in "".join(page.text)  # shown to the reader as text


def test_missing_crops_and_photos_are_said_not_broken() -> None:
    html = render(relative_crops=None, gallery_photos=None)
    assert "<img" not in html and "(no face crop)" in html and "(no photo supplied)" in html


def test_crop_face_cuts_the_box_with_a_margin() -> None:
    image = _jpeg(200, 100)
    box = common_pb2.BoundingBox(x_min=50, y_min=20, x_max=90, y_max=60)
    crop = cv2.imdecode(np.frombuffer(crop_face(image, box, margin=0.25), np.uint8), cv2.IMREAD_COLOR)
    assert crop.shape[:2] == (60, 60)  # 40 px box plus 10 px each side
    big = crop_face(_jpeg(800, 800), common_pb2.BoundingBox(x_min=0, y_min=0, x_max=800, y_max=800), max_side=100)
    assert max(cv2.imdecode(np.frombuffer(big, np.uint8), cv2.IMREAD_COLOR).shape[:2]) == 100
    with pytest.raises(ValueError, match="decoded"):
        crop_face(b"not an image", box)
    with pytest.raises(ValueError, match="outside"):
        crop_face(image, common_pb2.BoundingBox(x_min=500, y_min=500, x_max=600, y_max=600))


def test_gallery_photos_follow_the_enroll_layout(tmp_path: Path) -> None:
    (tmp_path / "bob").mkdir()
    (tmp_path / "alice.jpg").write_bytes(b"A")
    (tmp_path / "bob" / "2.png").write_bytes(b"B2")
    (tmp_path / "bob" / "1.jpg").write_bytes(b"B1")
    (tmp_path / "notes.txt").write_bytes(b"N")
    assert load_gallery_photos(tmp_path) == {"alice": b"A", "bob": b"B1"}
    with pytest.raises(ValueError, match="not a folder"):
        load_gallery_photos(tmp_path / "missing")


# `kinship report case` and `kinship find --report`: the CLI side ---------------------


class FakeEmbedder:
    """Answers Embed with one face box in the middle of each image (as the embedder's box)."""

    def __init__(self, channel=None) -> None:
        self.calls = 0

    def Embed(self, request, timeout=None):  # noqa: N802 - gRPC method name
        from kinship.v1 import embedder_pb2

        self.calls += 1
        pixels = cv2.imdecode(np.frombuffer(request.image, np.uint8), cv2.IMREAD_COLOR)
        h, w = pixels.shape[:2]
        face = embedder_pb2.Face(detection_score=0.9)
        face.box.x_min, face.box.y_min, face.box.x_max, face.box.y_max = w / 4, h / 4, 3 * w / 4, 3 * h / 4
        return embedder_pb2.EmbedResponse(faces=[face], image_width=w, image_height=h)


def test_report_case_renders_a_saved_response(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from kinship.cli import client_commands as cc
    from kinship.cli.main import main

    monkeypatch.setattr(cc.embedder_pb2_grpc, "EmbedderStub", FakeEmbedder)
    (tmp_path / "dad.jpg").write_bytes(_jpeg(120, 120))
    (tmp_path / "anna.jpg").write_bytes(_jpeg(100, 140))
    gallery = tmp_path / "gallery"
    (gallery / "p-123").mkdir(parents=True)
    (gallery / "p-123" / "a.jpg").write_bytes(_jpeg())
    saved = tmp_path / "saved.json"
    saved.write_text(cc.to_json(build_response()))
    out = tmp_path / "case.html"
    argv = ["report", "case", "--response", str(saved), "--relative", f"father@1985:{HOSTILE}={tmp_path / 'dad.jpg'}"]
    argv += ["--relative", f"sister:sister-anna={tmp_path / 'anna.jpg'}", "--born-from", "1990", "--born-to", "1994"]
    argv += ["--gallery-photos", str(gallery), "--case-id", "C-1", "--output", str(out), "--embedder", "127.0.0.1:9"]
    assert main(argv) == 0
    page = parse(out.read_text())
    assert [r["person"] for r in page.rows] == ["p-007", "p-123", "p-042"]
    images = [a for t, a in page.tags if t == "img"]
    assert len(images) == 3  # two relative crops and p-123's photo
    text = " ".join(page.text)
    assert "C-1" in text and "1990 to 1994" in text and HOSTILE in text and "taken 1985" in text


def test_report_case_refuses_a_mismatched_family_and_bad_json(tmp_path: Path, capsys) -> None:
    from kinship.cli import client_commands as cc
    from kinship.cli.main import main

    (tmp_path / "dad.jpg").write_bytes(_jpeg())
    saved = tmp_path / "saved.json"
    saved.write_text(cc.to_json(build_response()))
    one = ["--relative", f"father={tmp_path / 'dad.jpg'}", "--output", str(tmp_path / "c.html")]
    assert main(["report", "case", "--response", str(saved), *one]) == 1
    assert "give the same relatives" in capsys.readouterr().err
    (tmp_path / "bad.json").write_text('{"candidates": 7}')
    assert main(["report", "case", "--response", str(tmp_path / "bad.json"), *one]) == 1
    assert "is not a `kinship find --json` response" in capsys.readouterr().err
    assert main(["report", "case", "--response", str(saved), "--relative", f"father={tmp_path / 'dad.jpg'}"]) == 2
    assert "give --output" in capsys.readouterr().err


def test_pdf_without_chromium_does_not_stop_the_search(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    """Without Chromium the search still runs (here: to an unreachable ranker, exit 3) and says the report will be
    HTML; that the HTML is kept and the exit code is 4 is tested against a real suite (tests/e2e/test_cli_errors.py)."""
    from kinship.cli import client_commands as cc
    from kinship.cli.main import main

    monkeypatch.setattr(cc, "chromium_path", lambda: None)
    (tmp_path / "dad.jpg").write_bytes(_jpeg())
    argv = ["find", "--relative", f"father={tmp_path / 'dad.jpg'}", "--pdf", str(tmp_path / "c.pdf")]
    assert main([*argv, "--ranker", "127.0.0.1:9"]) == 3
    err = capsys.readouterr().err
    assert f"no headless Chromium found: the report will be written as HTML ({tmp_path / 'c.html'})" in err
    assert "UNAVAILABLE" in err


def test_every_relation_has_its_name() -> None:
    assert relation_name(common_pb2.RELATION_GRANDFATHER) == "grandfather"
    assert relation_name(common_pb2.RELATION_GRANDMOTHER) == "grandmother"
    assert relation_name(common_pb2.RELATION_SISTER) == "sister"
    assert relation_name(99) == "relation 99"
