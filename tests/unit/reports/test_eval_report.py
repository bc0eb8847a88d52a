"""The evaluation report from a small synthetic `kinship eval --json` result (same shape as a real one)."""

from __future__ import annotations

import json
import random
import re
from html.parser import HTMLParser

import pytest

from kinship.cli.main import main
from kinship.reports import evaluation as ev

RELATIONS = ("fd", "fs", "md", "ms")
FIGURES = ("roc", "det", "histogram-model", "histogram-baseline", "reliability", "tippett")


def _metrics(rng: random.Random) -> tuple[dict, dict]:
    v = {
        r: {"auc": rng.random(), "accuracy": rng.random(), "tar_at_far_1pct": rng.random(), "pairs": 20}
        for r in RELATIONS
    }
    c = {r: {"cllr": rng.random(), "cllr_min": rng.random(), "ece": rng.random()} for r in RELATIONS}
    v["mean"] = {k: sum(v[r][k] for r in RELATIONS) / 4 for k in ("auc", "accuracy", "tar_at_far_1pct")}
    c["mean"] = {k: sum(c[r][k] for r in RELATIONS) / 4 for k in ("cllr", "cllr_min", "ece")}
    return v, c


def synthetic_result(seed: int = 3) -> dict:
    rng = random.Random(seed)
    v, c = _metrics(rng)
    bv, bc = _metrics(rng)
    pairs = [
        {
            "relation": r,
            "fold": 1 + i % 2,
            "kin": i % 2 == 0,
            "log10_lr": round(rng.gauss(0.8 if i % 2 == 0 else -0.8, 0.7), 6),
            "baseline_log10_lr": round(rng.gauss(0.4 if i % 2 == 0 else -0.4, 0.7), 6),
        }
        for r in RELATIONS
        for i in range(40)
    ]
    retrieval = {"map": 0.31234567, "probes": 30, "rank1": 0.2, "rank5": 0.4666666, "rank10": 0.6333333}
    return {
        "dataset": {"name": "synthetic", "path": "/nowhere", "images": 160, "pairs": 160, "undetected_faces": 0},
        "protocol": {
            "test_folds": [1, 2],
            "all_folds": [1, 2, 3],
            "training": {"dimension": 8, "epochs": 2},
            "augmented_views": 0,
            "seed": 0,
            "calibration": "linear logistic per relation",
            "threshold": "best accuracy",
            "retrieval": "each parent vs all children",
        },
        "verification": v,
        "calibration": c,
        "retrieval": {
            **retrieval,
            "candidate_recall_top100": {"1000": 0.7},
            "candidate_recall_top100_by_space": {"1000": {"identity": 0.4, "kinship": 0.6, "union": 0.7}},
        },
        "baseline": {
            "method": "zero-shot cosine of some-model",
            "verification": bv,
            "calibration": bc,
            "retrieval": {"map": 0.2111, "probes": 30, "rank1": 0.1, "rank5": 0.3, "rank10": 0.4},
        },
        "held_out": {
            "pairs": pairs,
            "retrieval_ranks": {
                "model": [rng.randint(1, 60) for _ in range(30)],
                "baseline": [rng.randint(1, 60) for _ in range(30)],
            },
        },
        "seconds": {"features": 1.0, "evaluation": 2.0},
    }


class _Cells(HTMLParser):
    """data-key -> (data-value, shown text) for every keyed table cell; <svg> titles."""

    def __init__(self) -> None:
        super().__init__()
        self.cells: dict[str, tuple[str, str]] = {}
        self._key: tuple[str, str] | None = None
        self._text = ""

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "td" and "data-key" in a:
            self._key, self._text = (a["data-key"], a["data-value"]), ""

    def handle_data(self, data):
        if self._key:
            self._text += data

    def handle_endtag(self, tag):
        if tag == "td" and self._key:
            key, value = self._key
            self.cells.setdefault(key, (value, self._text.strip()))
            self._key = None


@pytest.fixture(scope="module")
def result() -> dict:
    return synthetic_result()


@pytest.fixture(scope="module")
def page(result) -> str:
    return ev.render_evaluation_report(result, software_version="9.9.9")


def _sections(page: str) -> dict[str, str]:
    parts = re.split(r'<section data-relation="', page)[1:]
    return {p.split('"', 1)[0]: p.split("</section>", 1)[0] for p in parts}


def test_every_named_figure_is_an_svg_with_a_title_and_desc_per_relation_and_overall(page):
    sections = _sections(page)
    assert set(sections) == {"mean", *RELATIONS, "retrieval"}
    for code in ("mean", *RELATIONS):
        for kind in FIGURES:
            figure = re.search(rf'<figure data-figure="{kind}">(.*?)</figure>', sections[code], re.S)
            assert figure, f"{kind} missing in {code}"
            svg = figure.group(1)
            assert svg.startswith("<svg") and "</svg>" in svg
            assert re.search(r"<title[^>]*>[^<]+</title>", svg) and re.search(r"<desc[^>]*>[^<]+</desc>", svg)
            assert "<figcaption>" in figure.group(0)
            # the model and the baseline are both drawn (or kin and non-kin, for histograms)
            assert svg.count('class="series"') + svg.count('class="bars"') >= 2
    cmc = re.search(r'<figure data-figure="cmc">(.*?)</figure>', sections["retrieval"], re.S)
    assert cmc and "<title" in cmc.group(1)
    assert page.count("<svg") == page.count("<title id=") == 5 * len(FIGURES) + 1


def test_summary_numbers_are_the_results(result, page):
    summary = page.split('<section id="summary">', 1)[1].split("</section>", 1)[0]
    parser = _Cells()
    parser.feed(summary)
    expected = {}
    for system, part in (("", result), ("baseline.", result["baseline"])):
        for code in (*RELATIONS, "mean"):
            for metric in ("auc", "accuracy", "tar_at_far_1pct"):
                expected[f"{system}verification.{code}.{metric}"] = part["verification"][code][metric]
            for metric in ("cllr", "cllr_min", "ece"):
                expected[f"{system}calibration.{code}.{metric}"] = part["calibration"][code][metric]
        for metric in ("map", "rank1", "rank5", "rank10"):
            expected[f"{system}retrieval.{metric}"] = part["retrieval"][metric]
    assert len(expected) == 2 * (5 * 6 + 4)
    for key, value in expected.items():
        assert key in parser.cells, key
        shown_value, text = parser.cells[key]
        assert float(shown_value) == value, key
        assert text == f"{value:.3f}", key


def test_tables_are_accessible_and_nothing_is_fetched(page):
    assert not re.search(r"https?://(?!www\.w3\.org/2000/svg\")", page)
    assert page.count("<table") == page.count("<caption>")
    assert '<th scope="col"' in page and '<th scope="row"' in page
    assert "never an identification" in page
    assert "synthetic" in page and "9.9.9" in page
    assert "<title>Kinship model evaluation: synthetic</title>" in page


def test_roc_of_perfectly_separated_scores_passes_through_0_1():
    points = ev.roc_points([2.0, 3.0, 1.5], [-1.0, 0.0, 1.0, -2.0])
    assert (0.0, 1.0) in points
    assert points[0] == (0.0, 0.0) and points[-1] == (1.0, 1.0)
    assert ev.area(points) == 1.0
    assert ev.equal_error_rate(points) == 0.0
    # inverted scores: the curve hugs the other corner
    assert ev.area(ev.roc_points([-1.0, -2.0], [1.0, 2.0])) == 0.0


def test_roc_with_ties_moves_both_rates_at_once():
    points = ev.roc_points([1.0, 1.0], [1.0, 0.0])
    assert points == [(0.0, 0.0), (0.5, 1.0), (1.0, 1.0)]
    assert ev.area(points) == 0.75


def test_tippett_crosses_on_a_hand_made_case():
    kin = [-0.5, 0.5, 1.5, 2.5]
    non_kin = [-2.5, -1.5, -0.5, 0.5]
    # at LR = 1: 3 of 4 kin pairs support kinship, 1 of 4 non-kin pairs misleads
    assert ev.share_above(kin, 0.0) == 0.75 and ev.share_above(non_kin, 0.0) == 0.25
    k_curve, n_curve = ev.tippett_points(kin, -3, 3), ev.tippett_points(non_kin, -3, 3)
    assert k_curve[0] == (-3, 1.0) and k_curve[-1] == (3, 0.0)
    # each curve drops by one quarter just after each of its values
    assert [y for _, y in k_curve] == [1.0, 0.75, 0.5, 0.25, 0.0, 0.0]
    assert [x for x, _ in n_curve] == [-3, -2.5, -1.5, -0.5, 0.5, 3]
    # the kin curve lies above the non-kin curve everywhere and they meet only at the ends (both 1, then 0)
    for x in [i / 10 for i in range(-30, 31)]:
        k, n = ev.share_above(kin, x), ev.share_above(non_kin, x)
        assert k >= n
        assert (k == n) == (x < -2.5 or x >= 2.5)
    # the kin curve falls through one half exactly between 0.5 and 1.5
    assert ev.share_above(kin, 0.49) == 0.75 and ev.share_above(kin, 0.5) == 0.5 and ev.share_above(kin, 1.5) == 0.25


def test_reliability_and_cmc_on_hand_made_cases():
    rows = ev.reliability([0.0, 0.0, 3.0, -3.0], [True, False, True, False])
    assert [r["count"] for r in rows] == [1, 0, 0, 0, 0, 2, 0, 0, 0, 1]
    assert rows[5]["observed"] == 0.5 and rows[5]["mean_posterior"] == 0.5
    assert ev.pooled_ece(rows) == pytest.approx((1 / (1 + 10**3)) * 2 / 4)
    curve = ev.cmc([1, 2, 2, 60], k_max=50)
    assert curve[0] == (1, 0.25) and curve[1] == (2, 0.75) and curve[-1] == (50, 0.75)


def test_cli_report_eval_renders_a_saved_result_and_a_train_summary(tmp_path, result):
    saved = tmp_path / "eval.json"
    saved.write_text(json.dumps(result))
    out = tmp_path / "eval.html"
    assert main(["report", "eval", "--from", str(saved), "--output", str(out)]) == 0
    html = out.read_text()
    assert html.startswith("<!DOCTYPE html>") and html.count("<svg") == 5 * len(FIGURES) + 1
    saved.write_text(json.dumps({"artifact_id": "x", "evaluation": result}))
    assert main(["report", "eval", "--from", str(saved), "--output", str(out)]) == 0
    saved.write_text(json.dumps({"artifact_id": "x", "evaluation": None}))
    assert main(["report", "eval", "--from", str(saved), "--output", str(out)]) == 2


def test_eval_and_train_accept_report():
    from kinship.cli.main import build_parser

    parser = build_parser()
    args = parser.parse_args(["eval", "--dataset", "d", "--report", "e.html"])
    assert str(args.report) == "e.html"
    args = parser.parse_args(["train", "--dataset", "d", "--report", "e.html"])
    assert str(args.report) == "e.html"


def test_fiw_relation_codes_have_names():
    # FIW's eleven relation codes (and KinFaceW's four among them) are named, not shown as bare codes.
    for code in ("fd", "fs", "md", "ms", "bb", "ss", "sibs", "gfgd", "gfgs", "gmgd", "gmgs"):
        assert code in ev.RELATIONS
    assert ev.RELATIONS["sibs"] == "brother–sister" and ev.RELATIONS["gmgs"] == "grandmother–grandson"
