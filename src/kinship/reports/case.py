"""The investigator's case report: one self-contained HTML page for a FindRelatives answer.

It shows the family (each relative's face crops, relation and photo dates), the
question asked, and the candidates in rank order with their fused evidence (log10
likelihood ratio, its verbal equivalent, the posterior under the stated prior, and
whether it is strong) and one signed bar per relative showing that relative's log10
likelihood ratio, with the number beside it. Every caller-supplied string is escaped;
nothing is fetched (images are data: URIs, bars are inline SVG).
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from kinship.domain.verbal import verbal_scale
from kinship.reports.page import LEAD_NOT_IDENTIFICATION, PALETTE, data_uri, esc, now_utc, render_page
from kinship.v1 import common_pb2, ranker_pb2

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png"}
UNCALIBRATED_NOTICE = (
    "UNCALIBRATED: no trained kinship artifact scored these candidates. Scores are identity cosine "
    "similarities, not evidence; every likelihood ratio is 0 and no candidate can be strong."
)
BAR_WIDTH = 240
BAR_HEIGHT = 16


# face crops and photos -------------------------------------------------------------


def crop_face(image: bytes, box, *, margin: float = 0.3, max_side: int = 192, quality: int = 90) -> bytes:
    """A JPEG of the face in `box` (x_min, y_min, x_max, y_max in pixels) with `margin` of its size around it.

    The crop is clipped to the image and scaled down so its longer side is at most
    `max_side`. Raises ValueError for bytes that do not decode or a box outside the image.
    """
    pixels = cv2.imdecode(np.frombuffer(image, np.uint8), cv2.IMREAD_COLOR)
    if pixels is None:
        raise ValueError("the image cannot be decoded (JPEG or PNG expected)")
    height, width = pixels.shape[:2]
    bw, bh = box.x_max - box.x_min, box.y_max - box.y_min
    if bw <= 0 or bh <= 0:
        raise ValueError(f"empty face box ({box.x_min}, {box.y_min})-({box.x_max}, {box.y_max})")
    x0 = max(0, int(round(box.x_min - margin * bw)))
    y0 = max(0, int(round(box.y_min - margin * bh)))
    x1 = min(width, int(round(box.x_max + margin * bw)))
    y1 = min(height, int(round(box.y_max + margin * bh)))
    if x1 <= x0 or y1 <= y0:
        raise ValueError(f"the face box lies outside the {width}x{height} image")
    crop = pixels[y0:y1, x0:x1]
    scale = max_side / max(crop.shape[:2])
    if scale < 1:
        crop = cv2.resize(crop, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
    ok, encoded = cv2.imencode(".jpg", crop, [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:
        raise ValueError("the face crop cannot be encoded as JPEG")
    return encoded.tobytes()


def image_mime(data: bytes) -> str:
    """image/png or image/jpeg from the bytes' signature; ValueError for anything else."""
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        return "image/png"
    if data.startswith(b"\xff\xd8\xff"):
        return "image/jpeg"
    raise ValueError("not a JPEG or PNG image")


def load_gallery_photos(folder: Path) -> dict[str, bytes]:
    """Person id -> one photo, from a folder laid out as `kinship enroll` reads it.

    Loose images belong to the person named by the file's stem; images in a
    sub-folder to the person named by the sub-folder (the first image, by name, is used).
    """
    if not folder.is_dir():
        raise ValueError(f"{folder} is not a folder")
    photos: dict[str, bytes] = {}
    for path in sorted(folder.iterdir()):
        if path.is_file() and path.suffix.lower() in IMAGE_SUFFIXES:
            photos.setdefault(path.stem, path.read_bytes())
        elif path.is_dir():
            images = sorted(p for p in path.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
            if images:
                photos.setdefault(path.name, images[0].read_bytes())
    return photos


def _img(data: bytes, alt: str) -> str:
    try:
        mime = image_mime(data)
    except ValueError:
        return f'<span class="muted">({esc(alt)}: not a JPEG or PNG image)</span>'
    return f'<img class="face" src="{data_uri(data, mime)}" alt="{esc(alt)}">'


# formatting ------------------------------------------------------------------------


def relation_name(relation: int) -> str:
    try:
        return common_pb2.Relation.Name(relation).removeprefix("RELATION_").lower()
    except ValueError:
        return f"relation {relation}"


def sex_name(sex: int) -> str:
    if not sex:
        return "unknown"
    try:
        return common_pb2.Sex.Name(sex).removeprefix("SEX_").lower()
    except ValueError:
        return f"sex {sex}"


def fmt_lr(value: float) -> str:
    return f"{value:+.2f}"


def fmt_posterior(value: float) -> str:
    return f"{value:.3g}"


def _birth_window(missing: ranker_pb2.MissingPerson) -> str:
    years = missing.birth_year
    low = years.min if years.HasField("min") else None
    high = years.max if years.HasField("max") else None
    if low is None and high is None:
        return "unknown"
    if low == high:
        return str(low)
    return f"{low if low is not None else '…'} to {high if high is not None else '…'}"


def _photo_date(photo: ranker_pb2.Photo) -> str:
    parts = []
    if photo.HasField("capture_year"):
        parts.append(f"taken {photo.capture_year}")
    if photo.HasField("age_at_photo"):
        parts.append(f"age {photo.age_at_photo:g}")
    return ", ".join(parts) or "date unknown"


def _facts(attrs: common_pb2.PersonAttributes) -> str:
    facts = []
    if attrs.HasField("birth_year"):
        facts.append(f"born {attrs.birth_year}")
    if attrs.sex:
        facts.append(sex_name(attrs.sex))
    if attrs.region:
        facts.append(attrs.region)
    return ", ".join(facts) or "—"


def evidence_bar(value: float, scale: float, label: str) -> str:
    """A signed horizontal bar as inline SVG: right of the centre line for support, left for against."""
    half = BAR_WIDTH / 2
    length = 0.0 if scale <= 0 else min(abs(value) / scale, 1.0) * (half - 2)
    x = half if value >= 0 else half - length
    colour = PALETTE["blue"] if value >= 0 else PALETTE["vermillion"]
    direction = "for" if value > 0 else "against" if value < 0 else "neither for nor against"
    return (
        f'<svg class="bar" width="{BAR_WIDTH}" height="{BAR_HEIGHT}" viewBox="0 0 {BAR_WIDTH} {BAR_HEIGHT}" '
        f'role="img" aria-label="{esc(label)}: log10 LR {fmt_lr(value)}, {direction}" '
        f'data-log10-lr="{value:.6g}" data-direction="{"right" if value > 0 else "left" if value < 0 else "none"}">'
        f'<rect x="0" y="0" width="{BAR_WIDTH}" height="{BAR_HEIGHT}" fill="#f3f3f3"/>'
        f'<rect class="value" x="{x:.1f}" y="2" width="{length:.1f}" height="{BAR_HEIGHT - 4}" fill="{colour}"/>'
        f'<line x1="{half}" y1="0" x2="{half}" y2="{BAR_HEIGHT}" stroke="#222" stroke-width="1"/>'
        "</svg>"
    )


# the report ------------------------------------------------------------------------


def _question(request: ranker_pb2.FindRelativesRequest, case_id: str, scoring: ranker_pb2.ScoringInfo) -> str:
    missing = request.missing_person
    rows = [
        ("Case id", case_id or "—"),
        ("Sex of the missing person", sex_name(missing.sex)),
        ("Birth year", _birth_window(missing)),
        ("Regions searched", ", ".join(missing.regions) or "everywhere"),
        ("Candidates asked for", str(request.top_n or 20)),
        ("Prior probability (per candidate)", f"{scoring.prior_probability:g}"),
    ]
    body = "".join(f'<tr><th scope="row">{esc(k)}</th><td>{esc(v)}</td></tr>' for k, v in rows)
    return (
        '<section aria-labelledby="question"><h2 id="question">The question asked</h2>'
        f'<table class="question"><caption>What is known of the missing person</caption>{body}</table></section>'
    )


def _family(request: ranker_pb2.FindRelativesRequest, relative_crops: dict[int, list[bytes]] | None) -> str:
    rows = []
    for i, rel in enumerate(request.relatives):
        label = rel.label or relation_name(rel.relation)
        crops = (relative_crops or {}).get(i, [])
        photos = []
        for j, photo in enumerate(rel.photos):
            crop = crops[j] if j < len(crops) else b""
            image = _img(crop, f"{label}, photo {j + 1}") if crop else '<span class="muted">(no face crop)</span>'
            photos.append(
                f'<figure class="photo">{image}<figcaption>photo {j + 1}: {esc(_photo_date(photo))}</figcaption></figure>'
            )
        rows.append(
            f'<tr data-relative="{i}"><th scope="row">{esc(label)}</th><td>{esc(relation_name(rel.relation))}</td>'
            f"<td>{esc(rel.person_id or '—')}</td><td>{''.join(photos)}</td></tr>"
        )
    return (
        '<section aria-labelledby="family"><h2 id="family">The family</h2>'
        '<table class="family"><caption>Relatives whose photos were searched with</caption>'
        '<thead><tr><th scope="col">Relative</th><th scope="col">Relation</th>'
        '<th scope="col">Gallery id</th><th scope="col">Photos</th></tr></thead>'
        f"<tbody>{''.join(rows)}</tbody></table></section>"
    )


def _strong_line(response: ranker_pb2.FindRelativesResponse) -> str:
    scoring = response.scoring
    strong = sum(1 for c in response.candidates if c.strong_candidate)
    if not scoring.calibrated:
        return '<p class="strong-line" data-strong="0">No candidate can be strong: the ranker is uncalibrated.</p>'
    if strong == 0:
        return (
            f'<p class="strong-line notice" data-strong="0">No strong candidate: no one reaches log10 LR '
            f"{scoring.strong_candidate_log10_lr:g}. The list shows the likeliest people, not a likely match.</p>"
        )
    return (
        f'<p class="strong-line" data-strong="{strong}">{strong} strong candidate(s) '
        f"(log10 LR at least {scoring.strong_candidate_log10_lr:g}): leads to verify first.</p>"
    )


def _candidates(response: ranker_pb2.FindRelativesResponse, gallery_photos: dict[str, bytes] | None) -> str:
    cands = sorted(response.candidates, key=lambda c: c.rank)
    values = [abs(e.log10_likelihood_ratio) for c in cands for e in c.evidence]
    scale = max([1.0, *values])
    rows = []
    details = []
    for cand in cands:
        pid = cand.person_id or "(candidate photos)"
        photo = (gallery_photos or {}).get(cand.person_id)
        image = _img(photo, f"candidate {pid}") if photo else '<span class="muted">(no photo supplied)</span>'
        strong = "STRONG" if cand.strong_candidate else "no"
        lr = cand.log10_likelihood_ratio
        rows.append(
            f'<tr class="candidate" data-rank="{cand.rank}" data-person-id="{esc(cand.person_id)}">'
            f'<td class="num">{cand.rank}</td><th scope="row">{esc(pid)}</th><td>{image}</td>'
            f"<td>{esc(_facts(cand.attributes))}</td>"
            f'<td class="num" data-field="log10-lr">{fmt_lr(lr)}</td>'
            f'<td data-field="verbal">{esc(verbal_scale(lr))}</td>'
            f'<td class="num" data-field="posterior">{fmt_posterior(cand.posterior_probability)}</td>'
            f'<td data-field="strong" class="{"strong" if cand.strong_candidate else ""}">{strong}</td>'
            f'<td class="num" data-field="score">{cand.score:+.3f}</td></tr>'
        )
        ev_rows = []
        for e in cand.evidence:
            label = e.label or relation_name(e.relation)
            weight = "1" if e.fusion_weight == 1 else f"{e.fusion_weight:.2g}"
            ev_rows.append(
                f'<tr class="evidence" data-label="{esc(label)}"><th scope="row">{esc(label)}</th>'
                f"<td>{esc(relation_name(e.relation))}</td>"
                f"<td>{evidence_bar(e.log10_likelihood_ratio, scale, label)}</td>"
                f'<td class="num" data-field="log10-lr">{fmt_lr(e.log10_likelihood_ratio)}</td>'
                f'<td class="num">{weight}</td><td class="num">{e.similarity:+.3f}{"" if e.retrieved else "*"}</td>'
                f"<td>{esc(e.calibration or '—')}</td></tr>"
            )
        details.append(
            f'<section class="candidate-evidence" data-rank="{cand.rank}" aria-labelledby="cand-{cand.rank}">'
            f'<h3 id="cand-{cand.rank}">Rank {cand.rank}: {esc(pid)}, log10 LR {fmt_lr(lr)} '
            f"({esc(verbal_scale(lr))}){' — STRONG' if cand.strong_candidate else ''}</h3>"
            f'<table class="evidence"><caption>What each relative says about {esc(pid)} '
            "(bar right of the line: support for kin; left: against; the number is the log10 LR)</caption>"
            '<thead><tr><th scope="col">Relative</th><th scope="col">Relation</th><th scope="col">Evidence bar</th>'
            '<th scope="col" class="num">log10 LR</th><th scope="col" class="num">Fusion weight</th>'
            '<th scope="col" class="num">Similarity</th><th scope="col">Calibration</th></tr></thead>'
            f"<tbody>{''.join(ev_rows)}</tbody></table></section>"
        )
    table = (
        '<table class="candidates"><caption>Candidates in rank order (best first)</caption>'
        '<thead><tr><th scope="col" class="num">Rank</th><th scope="col">Person id</th><th scope="col">Photo</th>'
        '<th scope="col">On record</th><th scope="col" class="num">log10 LR</th><th scope="col">In words</th>'
        '<th scope="col" class="num">Posterior</th><th scope="col">Strong</th>'
        '<th scope="col" class="num">Score</th></tr></thead>'
        f"<tbody>{''.join(rows)}</tbody></table>"
    )
    if not cands:
        table = "<p>No candidate passed the known facts.</p>"
    return (
        '<section aria-labelledby="candidates"><h2 id="candidates">Candidates</h2>'
        f"{_strong_line(response)}"
        f'<p class="note">{len(cands)} candidate(s) of {response.candidates_considered} considered; '
        f"posterior under a prior of {response.scoring.prior_probability:g} per candidate. "
        "* similarity computed for fusion, not retrieved by that relative's own search.</p>"
        f'{table}<h2 id="evidence">Evidence per relative</h2>{"".join(details)}</section>'
    )


def _footer(response: ranker_pb2.FindRelativesResponse, software_version: str) -> str:
    s = response.scoring
    items = [
        ("Artifact", s.artifact_id or "none (uncalibrated)"),
        ("Calibration", s.calibration_id or "none"),
        ("Identity model", s.identity_model_id or response.model_id or "—"),
        ("Kinship model", s.kinship_model_id or "none"),
        ("Fusion", s.fusion_method or response.fusion_method or "—"),
        ("Strong at log10 LR", f"{s.strong_candidate_log10_lr:g}"),
        ("Generated", now_utc()),
        ("Software", f"kinship-search {software_version}"),
    ]
    facts = "".join(f'<span data-field="{esc(k.lower())}">{esc(k)}: {esc(v)}</span>. ' for k, v in items)
    return f"<p>{facts}</p><p><strong>{esc(LEAD_NOT_IDENTIFICATION)}</strong></p>"


def render_case_report(
    response: ranker_pb2.FindRelativesResponse,
    request: ranker_pb2.FindRelativesRequest,
    *,
    relative_crops: dict[int, list[bytes]] | None,
    gallery_photos: dict[str, bytes] | None,
    case_id: str = "",
    software_version: str,
) -> str:
    """The whole case report as one HTML document.

    `relative_crops` maps a relative's index in `request.relatives` to one face crop
    (JPEG or PNG bytes) per photo; `gallery_photos` maps a candidate's person id to a photo.
    """
    title = f"Case report {case_id}".strip()
    top = [f"<h1>{esc(title)}</h1>", f'<p class="notice lead">{esc(LEAD_NOT_IDENTIFICATION)}</p>']
    if not response.scoring.calibrated:
        top.append(f'<p class="notice uncalibrated" role="alert">{esc(UNCALIBRATED_NOTICE)}</p>')
    body = "\n".join(
        [
            *top,
            _question(request, case_id, response.scoring),
            _family(request, relative_crops),
            _candidates(response, gallery_photos),
        ]
    )
    return render_page(title, body, _footer(response, software_version))
