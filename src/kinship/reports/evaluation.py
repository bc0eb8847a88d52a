"""The evaluation report: `kinship eval --json` drawn for an evaluator, the baseline beside the model.

The summary and the tables under each figure show the numbers of the result itself
(averaged over test folds, as `kinship eval` computes them). The curves are drawn from
`held_out` (every held-out pair's log10 LR and each probe's true rank), pooled over the
held-out folds, so a number read off a curve (a pooled AUC, say) agrees with the
result's only approximately; tables say which is which.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from .page import LEAD_NOT_IDENTIFICATION, PALETTE, esc, now_utc, render_page
from .svg import Axis, Chart, Series, Style, linear_axis, nice_range, probit_axis

#: Relation codes of the data sets (KinFaceW's four, FIW's eleven) as the report names them.
RELATIONS = {
    "fd": "father–daughter",
    "fs": "father–son",
    "md": "mother–daughter",
    "ms": "mother–son",
    "bb": "brother–brother",
    "ss": "sister–sister",
    "sibs": "brother–sister",
    "gfgd": "grandfather–granddaughter",
    "gfgs": "grandfather–grandson",
    "gmgd": "grandmother–granddaughter",
    "gmgs": "grandmother–grandson",
}
LIMITS = (
    "Measured on a research data set (KinFaceW-style pairs of cropped faces), not on casework: figures on "
    "other photos, ages and populations will differ. " + LEAD_NOT_IDENTIFICATION
)

MODEL = Style(PALETTE["blue"], "solid", "circle")
BASELINE = Style(PALETTE["orange"], "dashed", "square")
KIN = Style(PALETTE["green"], "solid", "circle")
NON_KIN = Style(PALETTE["vermillion"], "dashed", "triangle")
CMC_MAX = 50
POOLED = "pooled over the held-out folds"


# -- curves from scores -------------------------------------------------------------------------------


def roc_points(kin: Sequence[float], non_kin: Sequence[float]) -> list[tuple[float, float]]:
    """(FAR, TAR) at every threshold, from (0, 0) to (1, 1); tied scores move both rates at once."""
    if not kin or not non_kin:
        return []
    scored = sorted([(s, True) for s in kin] + [(s, False) for s in non_kin], key=lambda p: -p[0])
    points = [(0.0, 0.0)]
    tp = fp = 0
    i = 0
    while i < len(scored):
        score = scored[i][0]
        while i < len(scored) and scored[i][0] == score:
            tp, fp = tp + scored[i][1], fp + (not scored[i][1])
            i += 1
        points.append((fp / len(non_kin), tp / len(kin)))
    return points


def area(points: Sequence[tuple[float, float]]) -> float:
    """Trapezoid area under a curve of increasing x (the AUC of an ROC)."""
    return sum((x1 - x0) * (y0 + y1) / 2 for (x0, y0), (x1, y1) in zip(points, points[1:], strict=False))


def equal_error_rate(points: Sequence[tuple[float, float]]) -> float:
    """Where the miss rate (1 - TAR) meets the false-alarm rate, interpolated along the ROC."""
    for (f0, t0), (f1, t1) in zip(points, points[1:], strict=False):
        m0, m1 = 1 - t0, 1 - t1
        if f0 <= m0 and f1 >= m1:
            d0, d1 = m0 - f0, m1 - f1
            share = d0 / (d0 - d1) if d0 != d1 else 0.0
            return f0 + share * (f1 - f0)
    return float("nan")


def share_above(values: Sequence[float], x: float) -> float:
    """The proportion of `values` strictly above x (a Tippett curve at x)."""
    return sum(v > x for v in values) / len(values) if values else float("nan")


def tippett_points(values: Sequence[float], lo: float, hi: float) -> list[tuple[float, float]]:
    """A post-step curve of the share of values above x, from lo to hi: it drops just after each value."""
    if not values:
        return []
    points = [(lo, share_above(values, lo))]
    for v in sorted(set(values)):
        if lo < v < hi:
            points.append((v, share_above(values, v)))
    points.append((hi, share_above(values, hi)))
    return points


def posterior(log10_lr: float) -> float:
    """P(kin) at even prior odds."""
    return 1.0 / (1.0 + 10.0 ** (-log10_lr))


def reliability(log10_lrs: Sequence[float], kin: Sequence[bool], bins: int = 10) -> list[dict]:
    """Per equal-width posterior bin: its range, count, mean posterior and observed share of kin pairs."""
    rows = [{"lo": b / bins, "hi": (b + 1) / bins, "count": 0, "p": 0.0, "kin": 0} for b in range(bins)]
    for llr, is_kin in zip(log10_lrs, kin, strict=True):
        p = posterior(llr)
        row = rows[min(bins - 1, int(p * bins))]
        row["count"] += 1
        row["p"] += p
        row["kin"] += bool(is_kin)
    for row in rows:
        n = row["count"]
        row["mean_posterior"] = row.pop("p") / n if n else float("nan")
        row["observed"] = row["kin"] / n if n else float("nan")
    return rows


def pooled_ece(rows: Sequence[dict]) -> float:
    total = sum(r["count"] for r in rows)
    return sum(r["count"] * abs(r["mean_posterior"] - r["observed"]) for r in rows if r["count"]) / total


def cmc(ranks: Sequence[int], k_max: int = CMC_MAX) -> list[tuple[int, float]]:
    """Share of probes whose true child is within rank k, k = 1..k_max."""
    if not ranks:
        return []
    return [(k, sum(r <= k for r in ranks) / len(ranks)) for k in range(1, k_max + 1)]


def histogram(values: Sequence[float], edges: Sequence[float]) -> list[int]:
    counts = [0] * (len(edges) - 1)
    for v in values:
        i = int((v - edges[0]) / (edges[-1] - edges[0]) * len(counts)) if edges[-1] > edges[0] else 0
        counts[min(len(counts) - 1, max(0, i))] += 1
    return counts


# -- HTML pieces --------------------------------------------------------------------------------------


def _num(value, digits: int = 3) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "–"
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    return f"{value:.{digits}f}"


def _cell(value, key: str | None = None, digits: int = 3) -> str:
    attrs = f' data-key="{esc(key)}" data-value="{esc(repr(value))}"' if key else ""
    return f'<td class="num"{attrs}>{_num(value, digits)}</td>'


def _table(caption: str, head: Sequence[str], rows: Sequence[tuple[str, Sequence[str]]], cls: str = "") -> str:
    """rows: (row header text, [already-rendered <td> cells])."""
    th = "".join(f'<th scope="col" class="num">{esc(h)}</th>' for h in head[1:])
    body = "".join(f'<tr><th scope="row">{esc(name)}</th>{"".join(cells)}</tr>' for name, cells in rows)
    return (
        f'<table class="{cls}"><caption>{esc(caption)}</caption>'
        f'<thead><tr><th scope="col">{esc(head[0])}</th>{th}</tr></thead><tbody>{body}</tbody></table>'
    )


def _figure(kind: str, svg: str, caption: str, table: str) -> str:
    return f'<figure data-figure="{esc(kind)}">{svg}<figcaption>{esc(caption)}</figcaption></figure>\n{table}'


def _rate_axis(label: str) -> Axis:
    return linear_axis(label, 0.0, 1.0, 0.2)


class _Scores:
    def __init__(self, pairs: Sequence[dict]) -> None:
        self.kin = [p["log10_lr"] for p in pairs if p["kin"]]
        self.non = [p["log10_lr"] for p in pairs if not p["kin"]]
        self.b_kin = [p["baseline_log10_lr"] for p in pairs if p["kin"]]
        self.b_non = [p["baseline_log10_lr"] for p in pairs if not p["kin"]]
        self.llr = [p["log10_lr"] for p in pairs]
        self.b_llr = [p["baseline_log10_lr"] for p in pairs]
        self.labels = [bool(p["kin"]) for p in pairs]


def _section(result: dict, code: str, pairs: Sequence[dict]) -> str:
    name = "all relations" if code == "mean" else f"{RELATIONS.get(code, code)} ({code})"
    mean_note = " (mean over relations)" if code == "mean" else ""
    v, c = result["verification"][code], result["calibration"][code]
    bv, bc = result["baseline"]["verification"][code], result["baseline"]["calibration"][code]
    key = f"verification.{code}"
    s = _Scores(pairs)
    out = [f'<section data-relation="{esc(code)}"><h2>{esc(name.capitalize())}</h2>']
    out.append(
        f'<p class="note">{len(s.kin)} kin and {len(s.non)} non-kin held-out pairs; curves {POOLED}, '
        f"numbers in the tables from the result{esc(mean_note)} unless marked pooled.</p>"
    )

    # ROC
    roc_m, roc_b = roc_points(s.kin, s.non), roc_points(s.b_kin, s.b_non)
    chart = Chart(
        f"ROC, {name}",
        f"True acceptance rate against false acceptance rate for the model and the baseline, {name}, {POOLED}.",
        _rate_axis("false acceptance rate (FAR)"),
        _rate_axis("true acceptance rate (TAR)"),
    )
    chart.reference([(0, 0), (1, 1)], "chance")
    chart.line(Series("kinship model", roc_m, MODEL))
    chart.line(Series("baseline (identity cosine)", roc_b, BASELINE))
    rows = [
        ("AUC" + mean_note, [_cell(v["auc"], f"{key}.auc"), _cell(bv["auc"], f"baseline.{key}.auc")]),
        (f"AUC, {POOLED}", [_cell(area(roc_m)), _cell(area(roc_b))]),
        ("TAR at FAR 1%" + mean_note, [_cell(v["tar_at_far_1pct"]), _cell(bv["tar_at_far_1pct"])]),
        ("accuracy" + mean_note, [_cell(v["accuracy"]), _cell(bv["accuracy"])]),
    ]
    out.append(
        _figure(
            "roc",
            chart.render(),
            f"ROC curves, {name}: the higher and further left, the better; the dotted diagonal is chance.",
            _table(f"ROC figures, {name}", ["figure", "kinship model", "baseline"], rows),
        )
    )

    # DET
    chart = Chart(
        f"DET, {name}",
        f"Miss rate against false-alarm rate on probit (normal deviate) axes, {name}, {POOLED}.",
        probit_axis("false-alarm rate (probit scale)"),
        probit_axis("miss rate (probit scale)"),
    )
    chart.reference([(0.002, 0.002), (0.8, 0.8)], "equal error rate line")
    chart.line(Series("kinship model", [(f, 1 - t) for f, t in roc_m], MODEL))
    chart.line(Series("baseline (identity cosine)", [(f, 1 - t) for f, t in roc_b], BASELINE))
    rows = [(f"equal error rate, {POOLED}", [_cell(equal_error_rate(roc_m)), _cell(equal_error_rate(roc_b))])]
    out.append(
        _figure(
            "det",
            chart.render(),
            f"DET curves, {name}, on probit axes (rates below 0.2% are drawn at 0.2%): the closer to the lower "
            "left, the better.",
            _table(f"DET figures, {name}", ["figure", "kinship model", "baseline"], rows),
        )
    )

    # Histograms
    everything = s.llr + s.b_llr
    lo, hi, step = nice_range(min(everything, default=-1), max(everything, default=1), 6)
    bins = 20
    edges = [lo + (hi - lo) * i / bins for i in range(bins + 1)]
    for system, kin, non, label in (
        ("model", s.kin, s.non, "kinship model"),
        ("baseline", s.b_kin, s.b_non, "baseline"),
    ):
        k_counts, n_counts = histogram(kin, edges), histogram(non, edges)
        top = max(k_counts + n_counts + [1])
        y_lo, y_hi, y_step = nice_range(0, top, 5)
        chart = Chart(
            f"Score histogram, {label}, {name}",
            f"Counts of kin and non-kin held-out pairs by log10 likelihood ratio, {label}, {name}, {POOLED}.",
            linear_axis("log10 likelihood ratio", lo, hi, step),
            linear_axis("pairs", 0, y_hi, y_step),
        )
        chart.reference([(0, 0), (0, y_hi)], "LR = 1 (no evidence either way)")
        chart.bars("kin pairs", edges, k_counts, KIN)
        chart.bars("non-kin pairs", edges, n_counts, NON_KIN)
        rows = [
            ("pairs", [_cell(len(kin)), _cell(len(non))]),
            ("mean log10 LR", [_cell(_mean(kin)), _cell(_mean(non))]),
            ("share with LR > 1", [_cell(share_above(kin, 0.0)), _cell(share_above(non, 0.0))]),
        ]
        out.append(
            _figure(
                f"histogram-{system}",
                chart.render(),
                f"Score histogram, {label}, {name}: kin pairs (solid, circles) should sit right of LR = 1, "
                "non-kin pairs (dashed, triangles) left of it.",
                _table(f"Score distribution, {label}, {name} ({POOLED})", ["figure", "kin", "non-kin"], rows),
            )
        )

    # Reliability
    rel_m, rel_b = reliability(s.llr, s.labels), reliability(s.b_llr, s.labels)
    chart = Chart(
        f"Reliability diagram, {name}",
        f"Observed share of kin pairs against the posterior at even prior odds, 10 bins, {name}, {POOLED}.",
        _rate_axis("posterior P(kin) at even prior odds"),
        _rate_axis("observed share of kin pairs"),
    )
    chart.reference([(0, 0), (1, 1)], "perfect calibration")
    for rows_, label, style in ((rel_m, "kinship model", MODEL), (rel_b, "baseline (identity cosine)", BASELINE)):
        pts = [(r["mean_posterior"], r["observed"]) for r in rows_ if r["count"]]
        chart.line(Series(label, pts, style, markers=len(pts)))
    rows = [
        (
            f"{r['lo']:.1f}–{r['hi']:.1f}",
            [_cell(r["count"]), _cell(r["observed"]), _cell(b["count"]), _cell(b["observed"])],
        )
        for r, b in zip(rel_m, rel_b, strict=True)
    ]
    rows.append(("ECE" + mean_note, ["<td></td>", _cell(c["ece"]), "<td></td>", _cell(bc["ece"])]))
    rows.append((f"ECE, {POOLED}", ["<td></td>", _cell(pooled_ece(rel_m)), "<td></td>", _cell(pooled_ece(rel_b))]))
    out.append(
        _figure(
            "reliability",
            chart.render(),
            f"Reliability diagram, {name}: each point is one posterior bin (count in the table); on the dotted "
            "diagonal the posteriors mean what they say.",
            _table(
                f"Reliability by posterior bin, {name} ({POOLED})",
                ["posterior bin", "model pairs", "model observed kin", "baseline pairs", "baseline observed kin"],
                rows,
            ),
        )
    )

    # Tippett
    t_lo, t_hi, t_step = nice_range(min(everything, default=-1), max(everything, default=1), 6)
    chart = Chart(
        f"Tippett plot, {name}",
        f"Proportion of kin and of non-kin pairs whose log10 LR exceeds x, model and baseline, {name}, {POOLED}.",
        linear_axis("log10 likelihood ratio x", t_lo, t_hi, t_step),
        _rate_axis("proportion with log10 LR > x"),
    )
    chart.reference([(0, 0), (0, 1)], "LR = 1")
    for values, label, style in (
        (s.kin, "model, kin pairs", MODEL),
        (s.non, "model, non-kin pairs", Style(MODEL.colour, "dotted", MODEL.marker)),
        (s.b_kin, "baseline, kin pairs", Style(BASELINE.colour, "solid", BASELINE.marker)),
        (s.b_non, "baseline, non-kin pairs", Style(BASELINE.colour, "dotted", BASELINE.marker)),
    ):
        chart.line(Series(label, tippett_points(values, t_lo, t_hi), style, step=True))
    rows = [
        ("kin pairs with LR > 1", [_cell(share_above(s.kin, 0.0)), _cell(share_above(s.b_kin, 0.0))]),
        ("non-kin pairs with LR > 1 (misleading)", [_cell(share_above(s.non, 0.0)), _cell(share_above(s.b_non, 0.0))]),
        ("Cllr" + mean_note, [_cell(c["cllr"]), _cell(bc["cllr"])]),
        ("Cllr min" + mean_note, [_cell(c["cllr_min"]), _cell(bc["cllr_min"])]),
    ]
    out.append(
        _figure(
            "tippett",
            chart.render(),
            f"Tippett plot, {name}: model in blue with circles, baseline in orange with squares; kin pairs solid, "
            "non-kin pairs dotted. Kin curves far right and non-kin curves far left mean strong, rarely misleading "
            "evidence.",
            _table(
                f"Tippett figures, {name} (shares {POOLED})",
                ["figure", "kinship model", "baseline"],
                rows,
            ),
        )
    )
    out.append("</section>")
    return "\n".join(out)


def _mean(values: Sequence[float]) -> float:
    return sum(values) / len(values) if values else float("nan")


def _retrieval(result: dict) -> str:
    r, br = result["retrieval"], result["baseline"]["retrieval"]
    ranks = result.get("held_out", {}).get("retrieval_ranks", {})
    m, b = cmc(ranks.get("model", [])), cmc(ranks.get("baseline", []))
    chart = Chart(
        "CMC curve, retrieval",
        f"Share of probes whose true child is within rank k, k = 1 to {CMC_MAX}, model and baseline, {POOLED}.",
        Axis("rank k", 1, CMC_MAX, [(k, str(k)) for k in (1, 10, 20, 30, 40, 50)]),
        _rate_axis("share of probes with the true child within rank k"),
    )
    chart.line(Series("kinship model", m, MODEL, step=True))
    chart.line(Series("baseline (identity cosine)", b, BASELINE, step=True))

    def at(curve, k):
        return curve[k - 1][1] if len(curve) >= k else None

    rows = [
        ("mAP", [_cell(r["map"], "retrieval.map"), _cell(br["map"], "baseline.retrieval.map")]),
        ("probes", [_cell(r.get("probes")), _cell(br.get("probes"))]),
    ]
    for k in (1, 5, 10):
        rows.append((f"rank-{k}", [_cell(r[f"rank{k}"]), _cell(br[f"rank{k}"])]))
    for k in (1, 10, 20, 50):
        rows.append((f"within rank {k}, {POOLED}", [_cell(at(m, k)), _cell(at(b, k))]))
    return (
        '<section data-relation="retrieval"><h2>Retrieval</h2>'
        f'<p class="note">{esc(result["protocol"].get("retrieval", ""))}.</p>'
        + _figure(
            "cmc",
            chart.render(),
            "CMC curves: the higher, the sooner an investigator reaches the true child in the candidate list.",
            _table("Retrieval figures", ["figure", "kinship model", "baseline"], rows),
        )
        + "</section>"
    )


def _summary(result: dict) -> str:
    codes = [c for c in result["verification"] if c != "mean"] + ["mean"]
    groups = (
        (
            "Verification (from the result: mean over test folds)",
            (
                ("verification", "auc", "AUC"),
                ("verification", "accuracy", "accuracy"),
                ("verification", "tar_at_far_1pct", "TAR@FAR1%"),
            ),
        ),
        (
            "Calibration (from the result: mean over test folds)",
            (("calibration", "cllr", "Cllr"), ("calibration", "cllr_min", "Cllr min"), ("calibration", "ece", "ECE")),
        ),
    )
    verification = ""
    for caption, metrics in groups:
        head = ["relation"]
        for _, _, label in metrics:
            head += [f"{label} model", f"{label} baseline"]
        rows = []
        for code in codes:
            cells = []
            for part, metric, _ in metrics:
                cells.append(_cell(result[part][code][metric], f"{part}.{code}.{metric}"))
                cells.append(_cell(result["baseline"][part][code][metric], f"baseline.{part}.{code}.{metric}"))
            label = "mean over relations" if code == "mean" else f"{RELATIONS.get(code, code)} ({code})"
            rows.append((label, cells))
        verification += _table(caption, head, rows, "summary")
    r, br = result["retrieval"], result["baseline"]["retrieval"]
    rows = [
        (
            name,
            [
                _cell(part[m], f"{prefix}retrieval.{m}")
                for m in ("map", "rank1", "rank5", "rank10")
                for part, prefix in ((r, ""), (br, "baseline."))
            ]
            + [_cell(part.get("probes"), None) for part in (r, br)],
        )
        for name in ("retrieval",)
    ]
    head = ["task"] + [f"{m} {who}" for m in ("mAP", "rank-1", "rank-5", "rank-10") for who in ("model", "baseline")]
    head += ["probes model", "probes baseline"]
    retrieval = _table("Retrieval (from the result)", head, rows, "summary")
    recall = r.get("candidate_recall_top100_by_space") or {}
    if recall:
        rows = [
            (
                f"{int(size):,}-face gallery",
                [
                    _cell(spaces.get(s), f"retrieval.candidate_recall_top100_by_space.{size}.{s}")
                    for s in ("identity", "kinship", "union")
                ],
            )
            for size, spaces in recall.items()
        ]
        retrieval += _table(
            "Candidate recall: true child in the top 100 by each vector space",
            ["gallery", "identity", "kinship", "both"],
            rows,
        )
    return f'<section id="summary"><h2>Summary</h2>{verification}{retrieval}</section>'


def _protocol(result: dict) -> str:
    d, p = result.get("dataset", {}), result.get("protocol", {})
    training = p.get("training", {})
    rows = [
        (
            "data set",
            f"{d.get('name', '?')}: {d.get('images', '?')} images, {d.get('pairs', '?')} pairs, "
            f"{d.get('undetected_faces', '?')} faces not detected",
        ),
        ("test folds", f"{p.get('test_folds')} of {p.get('all_folds')}"),
        ("training", ", ".join(f"{k} {v}" for k, v in training.items())),
        ("augmented views", p.get("augmented_views")),
        ("seed", p.get("seed")),
        ("calibration", p.get("calibration")),
        ("threshold", p.get("threshold")),
        ("retrieval", p.get("retrieval")),
        ("baseline", result.get("baseline", {}).get("method")),
        ("time", ", ".join(f"{k} {v} s" for k, v in result.get("seconds", {}).items())),
    ]
    body = "".join(f'<tr><th scope="row">{esc(k)}</th><td>{esc(v)}</td></tr>' for k, v in rows)
    return f'<section id="protocol"><h2>Protocol and data set</h2><table><caption>How it was measured</caption>{body}</table></section>'


def render_evaluation_report(result: dict, *, software_version: str) -> str:
    """One self-contained HTML page for a `kinship eval` result (the dict `kinship eval --json` prints)."""
    pairs = result.get("held_out", {}).get("pairs", [])
    name = result.get("dataset", {}).get("name", "data set")
    title = f"Kinship model evaluation: {name}"
    codes = [c for c in result["verification"] if c != "mean"]
    parts = [
        f"<h1>{esc(title)}</h1>",
        f'<p class="notice" id="limits">{esc(LIMITS)}</p>',
        f"<p>Test folds {esc(result.get('protocol', {}).get('test_folds'))}; the kinship model beside the baseline, "
        f"{esc(result.get('baseline', {}).get('method', ''))}. Tables show the result's numbers (mean over test "
        f"folds); curves are {POOLED}, so numbers read off them agree only approximately.</p>",
        _summary(result),
        _protocol(result),
        _section(result, "mean", pairs),
    ]
    parts += [_section(result, code, [p for p in pairs if p["relation"] == code]) for code in codes]
    parts.append(_retrieval(result))
    footer = f"kinship-search {esc(software_version)} · generated {esc(now_utc())} · {esc(LIMITS)}"
    return render_page(title, "\n".join(parts), footer)
